"""The pipeline: persist a message, then run its turn — load → decide → commit — in order.

A message is committed to ``inbound_messages`` before anything else happens, so a crash or a
core outage leaves it waiting, not lost; the recovery loop picks up whatever is still
``received``. Messages of one conversation are processed strictly in arrival order, at most
``max_active`` conversations at once per process (a burst queues in memory instead of
exhausting the connection pool).

Each turn is a straight line (``_process_turn``): the handler's tracker store reads the
``Snapshot`` (often already read inside a transaction the pipeline ran anyway), the handler
decides a ``TurnResult``, and the commit writes the store's plans with the replies and the
inbound row's close in one transaction (``bot.pipeline.commit``: grouped on SQLite, under the
conversation's lease on PostgreSQL). The parts of the class live in their own modules:
``inbound`` (the group-commit insert), ``inline`` (answers a channel waits for), ``drain``
(one conversation at a time, leases) and ``commit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import bisect
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import outbox
from bot.db import in_transaction, sql_const
from bot.inbound_store import (
    EXPIRE_HELD,
)
from bot.langs import detect_language
from bot.texts import TextService
from bot.models import InboundMessage
from bot.dialogue.turn import Committed
from channels.base import Message, Receipt, Reply
from common.clock import utcnow
from common.metrics import QUEUE_WAIT, TURN_SECONDS, labelled
from common.logs import REQUEST_ID
from bot.pipeline.shared import (
    _Fetched, ConversationLocks, _Inbound, _Row, _ConvState, _retry_may_help, _answer, _request_id_of, _default_max_active,
)
from bot.pipeline.handler import (
    TurnHandler, DialogueHandler, as_turn_handler, TransientError,
)
from bot.pipeline.commit import (
    _TurnWrite,
)
from bot.pipeline.inbound import InboundQueue
from bot.pipeline.inline import InlineAnswers
from bot.pipeline.drain import ConversationDrain
from bot.pipeline.slots import TurnSlots, deadline_after
from bot.pipeline.commit import TurnCommits

log = logging.getLogger("powerbot.pipeline")
_turn_log = structlog.get_logger("powerbot.turn")
_turn_log_std = logging.getLogger("powerbot.turn")  # its level: a filtered line costs one check


MAX_PROCESS_ATTEMPTS = 20

RECOVERY_INTERVAL = 2.0

RECOVERY_MIN_AGE = timedelta(seconds=5)


class Pipeline(InboundQueue, InlineAnswers, ConversationDrain, TurnCommits):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        handler: DialogueHandler,
        *,
        transient_errors: tuple[type[BaseException], ...] = (TransientError,),
        unprocessable_text: Callable[[str], str] | None = None,
        texts: TextService | None = None,
        on_enqueued: Callable[[], None] | None = None,
        inline_grace: float = 10.0,
        cross_process: bool | None = None,
        max_active: int | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.handler = handler  # a ``TurnHandler``, or a replies-only handler wrapped into one
        self.transient_errors = transient_errors
        # customer texts (training_data/domain.yml): "busy" and "cannot be handled at all"
        self.texts = texts if texts is not None else TextService()
        self.busy_text = self.texts.by_lang("utter_busy")
        self.unprocessable_text = unprocessable_text or (
            lambda lang: self.texts.text("utter_message_unprocessable", lang=lang))
        self.on_enqueued = on_enqueued or (lambda: None)
        self.inline_grace = inline_grace
        self.locks = ConversationLocks()
        # Several gateway processes on one database: a conversation is owned by one at a time.
        bind = sessionmaker.kw.get("bind")
        dialect = bind.dialect.name if bind is not None else ""
        self.cross_process = cross_process if cross_process is not None else dialect == "postgresql"
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if max_active is None:
            max_active = _default_max_active(bind)
        self.max_active = max(1, max_active)
        self._active = TurnSlots(self.max_active)
        self._waiters: dict[int, asyncio.Future[Receipt]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._recovery: asyncio.Task[None] | None = None
        self._convs: OrderedDict[str, _ConvState] = OrderedDict()
        # group-commit queues: inbound rows (``_Inbound``), (ids, future) for inline marks
        self._insert_q: list[_Inbound] = []
        self._insert_task: asyncio.Task[None] | None = None
        self._mark_q: list[tuple[list[int], list[int], asyncio.Future[bool]]] = []
        self._mark_task: asyncio.Task[None] | None = None
        self._turn_q: list[_TurnWrite] = []
        self._turn_task: asyncio.Task[None] | None = None
        # the handler's reads of turns' starting state, done inside transactions the pipeline
        # runs anyway
        self._prefetched: _Fetched = {}
        # outbox ids and held inbound ids answered inline, not yet marked (``delivered_inline``)
        self._late_marks: list[int] = []
        self._late_held: list[int] = []
        self._late_task: asyncio.Task[None] | None = None
        # concurrent turns' writes go in one transaction (``bot.pipeline.commit``)
        self._group_turns = dialect in ("sqlite", "postgresql")

    @property
    def handler(self) -> TurnHandler:
        return self._handler

    @handler.setter
    def handler(self, handler: Any) -> None:  # the console wraps it after construction
        self._handler = as_turn_handler(handler)

    async def _process_one(self, row: Any, *, shared: bool = False,
                           deadline: float | None = None) -> tuple[bool, InboundMessage | None]:
        """Run the dialogue on one row and write its replies. With ``shared`` (lease held) the
        reply transaction also selects the conversation's next row and, when there is none,
        releases the lease; returns (processed, next row). Without, the turn takes a slot by
        ``deadline`` (``bot.pipeline.slots``)."""
        message = Message(
            channel=row.channel,
            sender_id=row.sender_id,
            text=row.text,
            message_id=row.dedupe_key,
            kind=row.kind,
            metadata=row.payload or {},
            received_at=outbox.as_aware(row.received_at),
        )
        request_id = _request_id_of(row)
        token = REQUEST_ID.set(request_id)
        try:
            return await self._process_turn(row, message, request_id, shared,
                                            deadline_after(None) if deadline is None else deadline)
        finally:
            REQUEST_ID.reset(token)

    async def _process_turn(self, row: Any, message: Message, request_id: str | None,
                            shared: bool, deadline: float) -> tuple[bool, InboundMessage | None]:
        """Load → decide → commit → after-commit, for one row. Under a lease (``shared``) the
        drain holds the turn slot already (it took the slot before the lease)."""
        if not row.attempts:
            labelled(QUEUE_WAIT, row.channel).observe(max(0.0, (utcnow() - message.received_at).total_seconds()))
        async with contextlib.nullcontext() if shared else self._active.held(deadline):
            handler = self.handler
            committed: Committed | None = None
            started = time.perf_counter()
            try:
                snapshot = None
                if handler.store is not None:
                    snapshot = await handler.store.retrieve(message, probe=handler.probe,
                                                            prefetched=self._take_prefetched(row))
                result = await handler.decide(message, snapshot)
                committed = await self._commit(row, message, result, handler.store, shared, request_id)
                extra = await handler.after_commit(result, committed)
            except Exception as exc:  # noqa: BLE001
                if committed is not None:  # the turn is written; only what follows it failed
                    log.exception("after the turn of inbound_id=%s", row.id)
                    extra = []
                elif isinstance(exc, self.transient_errors):
                    await self._postpone(row, message, exc, busy=True)
                    return False, None
                else:
                    log.exception("handler failed on inbound_id=%s", row.id)
                    if _retry_may_help(exc):
                        await self._postpone(row, message, exc, busy=row.attempts == 0)
                    else:  # the same turn would fail the same way: answer now, free the conversation
                        await self._postpone(row, message, exc, busy=True, give_up=True)
                    return False, None
            finally:
                elapsed = time.perf_counter() - started
                labelled(TURN_SECONDS, row.channel).observe(elapsed)
            queued = committed.queued
            held = list(committed.replies) if committed.held else []
            if extra:  # replies a wrapper added after the turn: queued right behind
                async with self.sessionmaker() as session, session.begin():
                    queued += await self._enqueue_replies(
                        session, extra, row.id, message.conversation_id,
                        delay=self.inline_grace if committed.waiting else 0.0, start=len(committed.replies),
                        request_id=request_id,
                    )
        self._done(row)
        if _turn_log_std.isEnabledFor(logging.INFO):  # one line per message: built only when written
            _turn_log.info("turn", inbound_id=row.id, channel=row.channel, replies=len(queued),
                           duration_ms=round(elapsed * 1000, 2))
        if queued and not committed.waiting:
            self.on_enqueued()  # due now: wake the worker (inline candidates wait for the grace period)
        fut = self._waiters.get(row.id)
        if fut is not None and not fut.done():
            fut.set_result(_answer(queued, held, row.id if held else None))
        return True, committed.next_row

    async def _is_done(self, inbound_id: int) -> bool:
        async with self.sessionmaker() as session:
            status = (
                await session.execute(select(InboundMessage.status).where(InboundMessage.id == inbound_id))
            ).scalar_one_or_none()
        return status == "done"

    def _done(self, row: Any) -> None:
        if self.cross_process:
            return
        st = self._conv(row.conversation_id)
        st.last_done = max(st.last_done, row.id)
        st.rows.pop(row.id, None)
        i = bisect.bisect_left(st.pending, row.id)
        if i < len(st.pending) and st.pending[i] == row.id:
            st.pending.pop(i)

    async def _postpone(self, row: Any, message: Message, exc: BaseException, *, busy: bool,
                        give_up: bool = False) -> None:
        """Try the row again later (the customer hears "busy" once), or, ``give_up``, never:
        the row is failed at once and the customer told the message could not be handled."""
        attempts = row.attempts + 1
        failed = give_up or attempts >= MAX_PROCESS_ATTEMPTS
        log.warning("inbound_id=%s %s attempt=%s: %s", row.id, "given up" if give_up else "postponed", attempts,
                    type(exc).__name__)
        queued: list[tuple[int, Reply]] = []
        waiting = row.id in self._waiters
        async with self.sessionmaker() as session, session.begin():
            if busy and (row.attempts == 0 or give_up):
                lang = detect_language(message.text)
                text = self.unprocessable_text(lang) if give_up else self.busy_text[lang]
                notice = Reply(channel=message.channel, recipient_id=message.sender_id, text=text)
                oid = await outbox.enqueue(
                    session,
                    notice,
                    conversation_id=message.conversation_id,
                    dedupe_key=f"{'failed' if give_up else 'busy'}:{row.id}",
                    delay=self.inline_grace if waiting else 0.0,
                )
                if oid is not None:
                    queued.append((oid, notice))
            await session.execute(
                update(InboundMessage)
                .where(InboundMessage.id == row.id)
                .values(
                    status="failed" if failed else "received",
                    attempts=attempts,
                    error=f"{type(exc).__name__}: {exc}"[:2000],
                    next_attempt_at=utcnow() + outbox.backoff(min(attempts, 5)),
                )
                .execution_options(synchronize_session=False)
            )
        if failed:
            self._done(row)
        elif isinstance(row, _Row):
            row.attempts = attempts  # the local copy follows the store
        if queued and not waiting:
            self.on_enqueued()
        fut = self._waiters.get(row.id)
        if fut is not None and not fut.done():
            fut.set_result(_answer(queued))  # the customer hears "busy" now; the real answer follows

    async def recover_once(self) -> int:
        """Drain conversations that have messages left ``received`` (crash, outage), and those
        whose held replies were not answered inline within the grace (see the module docstring).
        Returns how many rows were released plus how many conversations were drained."""
        released = await self._release_held()
        cutoff = utcnow() - RECOVERY_MIN_AGE
        async with self.sessionmaker() as session:
            ids = (
                await session.execute(
                    select(InboundMessage.conversation_id)
                    .where(
                        InboundMessage.status == sql_const("received"),  # ix_inbound_conv_waiting
                        InboundMessage.next_attempt_at <= utcnow(),
                        InboundMessage.received_at <= cutoff,
                    )
                    .distinct()
                    .limit(200)
                )
            ).scalars().all()
        for cid in ids:
            if not self.locks(cid).locked():
                if not self.cross_process:
                    self._conv(cid).clean = False  # the store knows better: select from it
                self._spawn(self.drain(cid))
        return released + len(ids)

    async def _release_held(self) -> int:
        """Rows held past the inline grace go back to ``received``: their turns are recorded, so
        running them again replays the replies into the outbox, due at once."""
        now = utcnow()
        released = await in_transaction(
            self.sessionmaker.kw["bind"], lambda conn: [r[0] for r in conn.execute(EXPIRE_HELD, {"b_now": now})])
        if released:
            log.info("%d held replies had no inline answer within the grace: released to the outbox", len(released))
        for cid in dict.fromkeys(released):
            if not self.cross_process:
                self._conv(cid).clean = False  # a row older than what this process has done waits
            if not self.locks(cid).locked():
                self._spawn(self.drain(cid))
        return len(released)

    async def start(self) -> None:
        async def loop() -> None:
            while True:
                try:
                    await self.recover_once()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001
                    log.exception("recovery pass failed")
                await asyncio.sleep(RECOVERY_INTERVAL)

        self._recovery = asyncio.create_task(loop(), name="inbound-recovery")

    async def stop(self) -> None:
        if self._late_task is not None:
            self._late_task.cancel()
        await self._flush_marks()
        if self._recovery:
            self._recovery.cancel()
        for t in list(self._tasks):
            t.cancel()
        extra = [t for t in (self._recovery, self._insert_task, self._mark_task, self._turn_task, self._late_task)
                 if t is not None]
        await asyncio.gather(*self._tasks, *extra, return_exceptions=True)
