"""Inbound pipeline: persist, dedupe, process one conversation at a time, queue replies.

A message is committed to ``inbound_messages`` before anything else happens, so a crash or a
core outage leaves it waiting, not lost; the recovery loop picks up whatever is still
``received``. Messages of one conversation are processed strictly in arrival order.

Hot-path economy (each transaction on the single SQLite connection, or a pooled PostgreSQL
connection, is the scarce resource):

- inbound rows of concurrent requests are inserted by one group-commit writer (one multi-row
  ``INSERT .. ON CONFLICT DO NOTHING RETURNING``); duplicates are the keys that did not return;
- in one process without leases (SQLite) the pipeline remembers, per conversation, which of
  its own rows still wait; when it knows the conversation has no other backlog it processes
  the row it just inserted without selecting it again (``_ConvState``);
- with leases (PostgreSQL), taking the lease and selecting the oldest waiting row is one
  transaction, and the reply transaction also selects the next row and, when there is none,
  releases the lease;
- replies are inserted with one statement; inline deliveries are marked by a group-commit
  writer too; the outbox worker is woken only for rows that are due now;
- on SQLite in one process, the replies of a turn a channel waits for are not queued in the
  outbox at all: the turn's events record them and its inbound row is left ``held`` until
  the end of the inline grace. The channel's inline answer marks the row done; a row still
  held after the grace (no answer, a crash) goes back to ``received``, and its turn, found
  recorded, replays the replies into the outbox — the crash-recovery path. Two row writes
  a reply less (the outbox insert and its index entries), the same guarantee: delivered
  inline or by the outbox, twice only if a crash falls between the answer and its mark;
- a handler can commit its turn with the replies and the inbound status (``turn_commit``); on
  SQLite in one process, a handler whose turn is only pre-built statements hands them over
  (``turn_write``) and concurrent turns are written in one transaction, one executemany per
  statement (a failed group is retried turn by turn);
- hot statements are pre-built once (``bot.db.prebuilt`` for the ON CONFLICT inserts, which
  SQLAlchemy would otherwise compile on every execution);
- at most ``max_active`` conversations run the dialogue at the same time per process, so a
  burst queues in memory instead of exhausting the connection pool.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import logging
import os
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import outbox
from bot.db import each_committed, in_transaction, sql_const
from bot.inbound_store import (
    DELIVERED_HELD_P, EXPIRE_HELD, FINISH_NEXT_OR_RELEASE_PG, FINISH_ROW, FINISH_ROW_P, HOLD_ROW_P,
    INSERT_RETURNING, LEASE_AND_NEXT_PG, MARK_INLINE_P, NEXT_OR_RELEASE_PG, NEXT_ROW, RELEASE_LEASE, WAITING_IN,
    dialect_name, insert_stmt, lease_stmt,
)
from bot.precompiled import Precompiled
from bot.langs import detect_language
from bot.texts import TextService
from bot.models import ConversationLease, InboundMessage, OutboxMessage
from bot.dialogue.tracker_store import StatementPlan, TrackerStore
from bot.dialogue.turn import Committed, Snapshot, TurnResult
from channels.base import InvalidMessage, Message, Receipt, Reply, SideWrite, clean_json, clean_text, is_clean
from common.clock import utcnow
from common.metrics import MESSAGES_IN, MESSAGES_OUT, QUEUE_WAIT, TURN_SECONDS
from common.logs import REQUEST_ID
from common.observe import bind_request_id, current_request_id

log = logging.getLogger("powerbot.pipeline")
_turn_log = structlog.get_logger("powerbot.turn")

MAX_PROCESS_ATTEMPTS = 20
RECOVERY_INTERVAL = 2.0
RECOVERY_MIN_AGE = timedelta(seconds=5)
# A lease is renewed every third of its life while its conversation drains (a long turn keeps
# it); a crashed owner's conversations are taken over once it expires.
LEASE_TTL = timedelta(seconds=20)
LEASE_WAIT_SECONDS = 30.0
INSERT_CHUNK = 500
MAX_REMEMBERED_CONVERSATIONS = 50_000
# Inline deliveries announced with ``delivered_inline`` are marked in the next grouped turn
# write, or by a flush this many seconds later: far inside ``inline_grace``.
MARK_FLUSH_SECONDS = 0.2
# A prefetched read older than this is not handed to the turn (say the row waited for a retry).
PREFETCH_FRESH_SECONDS = 1.0

async def _let_others_join() -> None:
    """Before a group commit takes its batch: two turns of the event loop, so the requests and
    turns that are ready in them (already read, already answered) join this transaction
    instead of the next one: fewer commits and fewer pages written per message (about a
    third fewer of each in the WeChat benchmark), for two loop iterations of wait."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def _settled(fut: asyncio.Future[Any], timeout: float | None = None) -> bool:
    """Wait until ``fut`` is done (True) or ``timeout`` seconds pass (False), never cancelling
    it: what ``wait_for(shield(fut), timeout)`` does, with one future and one timer instead of
    three futures, a timer and their callbacks — paid two or three times per message."""
    if fut.done():
        return True
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: Any = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    fut.add_done_callback(wake)
    timer = loop.call_later(timeout, wake) if timeout is not None else None
    try:
        await waiter
    finally:
        fut.remove_done_callback(wake)
        if timer is not None:
            timer.cancel()
    return fut.done()


TurnPrefetch = Callable[[Any, str, str], Any]
# prefetched reads by inbound row id: (loop time, the conversation's last finished row, value)
_Fetched = dict[int, tuple[float, int, Any]]


class _RowcountMismatch(Exception):
    """A guarded statement of a grouped turn write changed other than the expected rows."""


@dataclass
class _TurnWrite:
    stmts: list[tuple[Any, list[dict[str, Any]], int | None]]
    replies: list[Reply]
    row: Any
    waiting: bool
    fut: asyncio.Future[bool]
    queued: list[tuple[int, Reply]] = field(default_factory=list)
    prepare: Callable[[Any], None] | None = None  # runs first in the transaction (sync connection)
    held: bool = False  # written: the replies held on the inbound row, not queued


class TurnHandler(Protocol):
    """What the pipeline runs for each message: load → decide → commit.

    ``store`` reads the turn's ``Snapshot`` and plans the writes of its ``TurnResult`` (None: a
    handler without a tracker, whose results are replies only); ``probe`` is a scalar SQL
    expression the snapshot also reads for a wrapper (see ``bot.console.hooks``);
    ``after_commit`` runs once the turn is committed and may add replies (queued right behind)."""

    store: TrackerStore | None
    probe: Any

    async def decide(self, message: Message, snapshot: Snapshot | None) -> TurnResult: ...

    async def after_commit(self, result: TurnResult, committed: Committed) -> list[Reply]: ...


class DialogueHandler(Protocol):
    """A handler that only answers (no tracker): wrapped into a ``TurnHandler``."""

    async def handle(self, message: Message) -> list[Reply]: ...


class RepliesOnly:
    """A ``TurnHandler`` around a handler that only answers (``handle(message) -> replies``)."""

    store = None
    probe = None

    def __init__(self, inner: DialogueHandler) -> None:
        self.inner = inner

    async def decide(self, message: Message, snapshot: Snapshot | None) -> TurnResult:
        return TurnResult(message=message, replies=list(await self.inner.handle(message)))

    async def after_commit(self, result: TurnResult, committed: Committed) -> list[Reply]:
        return []


def as_turn_handler(handler: Any) -> TurnHandler:
    return handler if hasattr(handler, "decide") else RepliesOnly(handler)


class TransientError(Exception):
    """Raised by the handler when a dependency (the core) is down: retry later."""


class ConversationLocks:
    """One lock per conversation inside this process (cross-process locks wrap this)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def __call__(self, conversation_id: str) -> asyncio.Lock:
        return self._locks[conversation_id]

    def busy(self, conversation_id: str) -> bool:
        lock = self._locks.get(conversation_id)
        return lock is not None and lock.locked()

    def discard(self, conversation_id: str) -> None:
        lock = self._locks.get(conversation_id)
        if lock is not None and not lock.locked() and not getattr(lock, "_waiters", None):
            del self._locks[conversation_id]


# a queued inbound row: values, its id's future, the replies' future (None: nobody waits), side writes
_Inbound = tuple[dict[str, Any], "asyncio.Future[int | None]", "asyncio.Future[Any] | None", Sequence[SideWrite]]


@dataclass
class _Row:
    """An inbound row as this process inserted it (same attributes as ``InboundMessage``)."""

    id: int
    channel: str
    dedupe_key: str
    sender_id: str
    conversation_id: str
    kind: str
    text: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime
    received_at: datetime


@dataclass
class _ConvState:
    """What this process knows about one conversation's waiting rows (single-process mode).

    ``clean``: no row of the conversation is waiting except those in ``pending`` (rows this
    process inserted); learnt when a select found nothing, lost on any postponement.
    ``inflight``: inserts started but not yet registered — while > 0 the order is not known
    locally and the drain selects from the store.
    """

    pending: list[int] = field(default_factory=list)
    rows: dict[int, _Row] = field(default_factory=dict)
    inflight: int = 0
    clean: bool = False
    last_done: int = 0

    @property
    def idle(self) -> bool:
        return not self.pending and self.inflight == 0


class Pipeline:
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
        self._active = asyncio.Semaphore(self.max_active)
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
        self._group_turns = not self.cross_process and dialect == "sqlite"

    # ------------------------------------------------------------------ local knowledge
    def _conv(self, conversation_id: str) -> _ConvState:
        st = self._convs.get(conversation_id)
        if st is None:
            st = self._convs[conversation_id] = _ConvState()
            if len(self._convs) > MAX_REMEMBERED_CONVERSATIONS:
                self._forget_some()
        else:
            self._convs.move_to_end(conversation_id)
        return st

    def _forget_some(self) -> None:
        for cid in list(self._convs)[: len(self._convs) // 10]:
            st = self._convs[cid]
            if st.idle and not self.locks(cid).locked():
                del self._convs[cid]
                self.locks.discard(cid)

    # ------------------------------------------------------------------ receive
    async def receive(self, message: Message, *, wait: float | None = None, also: Sequence[SideWrite] = ()) -> Receipt:
        """Persist the message (and the channel's side writes ``also``, in the same
        transaction); process it; return replies if ready within ``wait`` seconds.

        Replies not returned inline are delivered by the outbox after ``inline_grace``.

        Whatever a channel hands over is stored only as clean text: the message's text and
        metadata are cleaned (``clean_text``); a sender or message id that is not clean text
        raises ``InvalidMessage`` (the channel answers 4xx) and nothing is stored.
        """
        if not (is_clean(message.sender_id) and is_clean(message.message_id)):
            MESSAGES_IN.labels(message.channel, "invalid").inc()
            raise InvalidMessage("sender and message ids must be text without control characters")
        payload = clean_json(dict(message.metadata))
        # the HTTP request's id travels with the row (and on to the replies' outbox rows), so
        # the turn and the send log it whichever task or process runs them
        request_id = current_request_id()
        payload.pop("request_id", None)  # only the gateway's own id goes there (logged unmasked)
        if request_id is not None:
            payload["request_id"] = request_id
        values = dict(
            channel=message.channel,
            dedupe_key=message.message_id,
            sender_id=message.sender_id,
            conversation_id=message.conversation_id,
            kind=message.kind,
            text=clean_text(message.text or ""),
            payload=payload,
            status="received",
            attempts=0,
            next_attempt_at=utcnow(),
            received_at=message.received_at,
        )
        loop = asyncio.get_running_loop()
        inserted: asyncio.Future[int | None] = loop.create_future()
        # no waiter when the channel will not wait: its replies are due at once (no inline grace)
        fut: asyncio.Future[Receipt] | None = loop.create_future() if wait is None or wait > 0 else None
        self._conv(message.conversation_id).inflight += 1
        self._insert_q.append((values, inserted, fut, also))
        if self._insert_task is None or self._insert_task.done():
            self._insert_task = _task_of_no_request(self._insert_loop())
        # awaited directly (one loop callback, not two): a cancelled request cancels the future
        # too, which the insert loop allows for (it sets only futures not yet done)
        try:
            inbound_id = await inserted
        except asyncio.CancelledError:
            if fut is not None:
                fut.cancel()  # nobody waits for this answer any more: the outbox delivers it
            raise
        if inbound_id is None:
            MESSAGES_IN.labels(message.channel, "duplicate").inc()
            log.info("duplicate inbound channel=%s message_id=%s", message.channel, message.message_id)
            return Receipt(duplicate=True, replies=None)
        MESSAGES_IN.labels(message.channel, "accepted").inc()
        if fut is None:
            return Receipt(duplicate=False, replies=None)
        try:
            done = await self._await_result(inbound_id, fut, wait, message.conversation_id)
        finally:
            self._waiters.pop(inbound_id, None)
        return done if done is not None else Receipt(duplicate=False, replies=None)

    async def _insert_loop(self) -> None:
        """Group commit of inbound rows: everything queued while a batch was written goes next."""
        await _let_others_join()
        while self._insert_q:
            batch, self._insert_q = self._insert_q[:INSERT_CHUNK], self._insert_q[INSERT_CHUNK:]
            # conversations this process knows nothing waiting for: learn in the same transaction
            # whether the store has older rows of theirs (a crash, another run) or only the new ones
            probe = set()
            if not self.cross_process:
                for values, _, _, _ in batch:
                    st = self._conv(values["conversation_id"])
                    if not st.clean and not st.pending:
                        probe.add(values["conversation_id"])
            await self._insert_group(batch, probe)

    async def _insert_group(self, batch: list[Any], probe: set[str]) -> None:
        """Write one group of queued inbound rows; a group that fails is split in halves and
        each written again, so one row the store refuses fails only its own sender."""
        side = [w for _, _, _, also in batch for w in also]
        try:
            ids, clean = await self._insert_batch([v for v, _, _, _ in batch], probe, side)
        except asyncio.CancelledError:
            self._fail_inserts(batch, None)
            raise
        except Exception as exc:  # noqa: BLE001 - isolated below, else its caller hears about it
            if len(batch) == 1:
                log.warning("inbound row refused by the store channel=%s: %r", batch[0][0]["channel"], exc)
                self._fail_inserts(batch, exc)
                return
            half = len(batch) // 2
            for part in (batch[:half], batch[half:]):
                await self._insert_group(part, {v["conversation_id"] for v, _, _, _ in part} & probe)
            return
        for cid in clean:
            self._conv(cid).clean = True
        for w in side:
            if w.done is not None:
                w.done()
        for (values, inserted, fut, _), inbound_id in zip(batch, ids):
            cid = values["conversation_id"]
            st = self._conv(cid)
            st.inflight -= 1
            if inbound_id is not None:
                if fut is not None and not fut.done():
                    self._waiters[inbound_id] = fut
                if not self.cross_process:
                    bisect.insort(st.pending, inbound_id)
                    st.rows[inbound_id] = _Row(id=inbound_id, **{k: values[k] for k in _ROW_FIELDS})
                self._spawn(self.drain(cid))
            if not inserted.done():
                inserted.set_result(inbound_id)

    def _fail_inserts(self, batch: list[Any], exc: BaseException | None) -> None:
        """Tell the callers of rows that were not stored (``exc`` None: cancelled)."""
        for values, inserted, _, _ in batch:
            self._conv(values["conversation_id"]).inflight -= 1
            if not inserted.done():
                if exc is None:
                    inserted.cancel()
                else:
                    inserted.set_exception(exc)

    async def _insert_batch(
        self, rows: list[dict[str, Any]], probe: set[str], side: Sequence[SideWrite] = ()
    ) -> tuple[list[int | None], set[str]]:
        """Insert rows in one statement; ``None`` for a duplicate (also within the batch). The
        side writes run first, in the same transaction, one executemany per statement.

        Also returns the conversations of ``probe`` whose only waiting rows are the new ones."""
        out: list[int | None] = [None] * len(rows)
        first: dict[tuple[str, str, str], int] = {}
        unique: list[dict[str, Any]] = []
        for n, values in enumerate(rows):
            key = (values["channel"], values["sender_id"], values["dedupe_key"])
            if key not in first:
                first[key] = n
                unique.append(values)
        table = InboundMessage.__table__
        by_statement: dict[int, tuple[Any, list[dict[str, Any]]]] = {}
        for w in side:
            by_statement.setdefault(id(w.statement), (w.statement, []))[1].append(dict(w.params))

        def write(conn: Any) -> tuple[list[Any], dict[str, int]]:
            for statement, params in by_statement.values():
                statement.run(conn, params)
            got = INSERT_RETURNING[table.name].run(conn, unique).all()
            waiting: dict[str, int] = {}
            if probe:
                waiting = dict(WAITING_IN.run(conn, {"b_cids": sorted(probe)}).all())
            if self._prefetch is not None and not self.cross_process:
                self._prefetch_new(conn, got, unique, waiting, fetched)
            return got, waiting

        fetched: _Fetched = {}
        got, waiting = await in_transaction(self.sessionmaker.kw["bind"], write)
        self._keep_prefetched(fetched)  # only what a committed transaction read
        new: dict[str, int] = defaultdict(int)
        for row_id, channel, sender, key in got:
            n = first[(channel, sender, key)]
            out[n] = row_id
            new[rows[n]["conversation_id"]] += 1
        return out, {cid for cid in probe if new.get(cid, 0) and waiting.get(cid, 0) == new[cid]}

    @property
    def handler(self) -> TurnHandler:
        return self._handler

    @handler.setter
    def handler(self, handler: Any) -> None:  # the console wraps it after construction
        self._handler = as_turn_handler(handler)

    @property
    def _prefetch(self) -> TurnPrefetch | None:
        store, probe = self._handler.store, self._handler.probe
        if store is None:
            return None
        return lambda conn, cid, key: store.prefetch(conn, cid, key, probe)

    def _prefetch_new(self, conn: Any, got: list[Any], unique: list[dict[str, Any]], waiting: dict[str, int],
                      fetched: _Fetched) -> None:
        """Single process, inside the insert transaction: read the starting state of the turns
        that will run next on idle conversations — the only new row of a conversation with
        nothing else waiting (known, or just counted: ``waiting``), no insert of its own in
        flight and no turn running. Recorded with the conversation's last finished row, so a
        turn finishing in between voids it."""
        by_key = {(v["channel"], v["sender_id"], v["dedupe_key"]): v for v in unique}
        per_conv: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for row_id, channel, sender, key in got:
            per_conv[by_key[(channel, sender, key)]["conversation_id"]].append((row_id, key))
        now = asyncio.get_running_loop().time()
        for cid, new in per_conv.items():
            st = self._convs.get(cid)
            if (len(new) != 1 or st is None or not (st.clean or waiting.get(cid) == 1) or st.pending
                    or st.inflight != 1 or self.locks.busy(cid)):
                continue
            row_id, key = new[0]
            try:
                fetched[row_id] = (now, st.last_done, self._prefetch(conn, cid, key))  # type: ignore[misc]
            except Exception:  # noqa: BLE001 - the turn reads it itself
                log.warning("prefetch failed for inbound %s", row_id, exc_info=True)

    def _keep_prefetched(self, fetched: _Fetched) -> None:
        if fetched:
            if len(self._prefetched) > 10_000:  # rows that never ran soon enough
                self._prefetched.clear()
            self._prefetched.update(fetched)

    def _take_prefetched(self, row: Any) -> Any:
        hit = self._prefetched.pop(row.id, None)
        if hit is None:
            return None
        at, last_done, value = hit
        if asyncio.get_running_loop().time() - at > PREFETCH_FRESH_SECONDS:
            return None
        if not self.cross_process and self._conv(row.conversation_id).last_done != last_done:
            return None
        return value

    async def _await_result(
        self,
        inbound_id: int,
        fut: asyncio.Future[Receipt],
        wait: float | None,
        conversation_id: str | None = None,
    ) -> Receipt | None:
        """Wait for this process's drain; with other processes around, also watch the store.

        The store is polled only while this process is not itself working on the
        conversation (its own drain resolves the future), with a growing interval, so a
        thousand waiting requests do not turn into a thousand queries every half second.
        """
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        interval = 0.5
        while True:
            if fut.done():
                return fut.result()
            slice_ = interval if self.cross_process else None
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                slice_ = remaining if slice_ is None else min(slice_, remaining)
            if await _settled(fut, slice_):
                return fut.result()
            if self.cross_process:
                if conversation_id is not None and self.locks(conversation_id).locked():
                    continue  # our own drain is on it and will resolve the future
                found = await self._result_from_store(inbound_id)
                if found is not None:
                    return found
                interval = min(interval * 2, 4.0)

    async def _result_from_store(self, inbound_id: int) -> Receipt | None:
        """Replies of a message that another process processed (its outbox rows)."""
        async with self.sessionmaker() as session:
            status = (
                await session.execute(select(InboundMessage.status).where(InboundMessage.id == inbound_id))
            ).scalar_one_or_none()
            if status == "received":
                return None
            rows = (
                await session.execute(
                    select(OutboxMessage)
                    .where(OutboxMessage.dedupe_key.like(f"in:{inbound_id}:%"))
                    .order_by(OutboxMessage.id)
                )
            ).scalars().all()
        return _answer([(r.id, Reply.from_dict(r.payload)) for r in rows])

    async def mark_delivered_inline(self, receipt: Receipt) -> bool:
        """The channel returned the receipt's replies in its HTTP answer: the outbox must not
        send them. True when every one was still waiting for the mark.

        Marks of concurrent requests are written together (one UPDATE per group)."""
        for reply in receipt.replies or ():
            MESSAGES_OUT.labels(reply.channel, "inline").inc()
        return await self._mark(list(receipt.outbox_ids), [receipt.held] if receipt.held is not None else [])

    async def _mark(self, outbox_ids: list[int], held: list[int]) -> bool:
        if not outbox_ids and not held:
            return True
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._mark_q.append((outbox_ids, held, fut))
        if self._mark_task is None or self._mark_task.done():
            self._mark_task = asyncio.ensure_future(self._mark_loop())
        return await asyncio.shield(fut)

    def delivered_inline(self, receipt: Receipt) -> None:
        """The channel answers with these replies in its HTTP response; the outbox must not send
        them. Not awaited: the marks ride on the next grouped turn write (no transaction of
        their own) or are flushed ``MARK_FLUSH_SECONDS`` later — long before the replies'
        ``inline_grace`` ends. A crash in between makes the outbox send a reply that was also
        answered inline (twice, never lost); a reply the outbox took first is left to it."""
        if not receipt.outbox_ids and receipt.held is None:
            return
        for reply in receipt.replies or ():
            MESSAGES_OUT.labels(reply.channel, "inline").inc()
        self._late_marks.extend(receipt.outbox_ids)
        if receipt.held is not None:
            self._late_held.append(receipt.held)
        if self._late_task is None or self._late_task.done():
            self._late_task = asyncio.ensure_future(self._flush_marks_later())

    async def _flush_marks_later(self) -> None:
        while self._late_marks or self._late_held:
            await asyncio.sleep(MARK_FLUSH_SECONDS)
            await self._flush_marks()

    async def _flush_marks(self) -> None:
        (ids, self._late_marks), (held, self._late_held) = (self._late_marks, []), (self._late_held, [])
        if not ids and not held:
            return
        try:
            await self._mark(ids, held)
        except Exception:  # noqa: BLE001 - the outbox sends them after the grace: twice, not lost
            log.warning("marking %d inline replies failed; the outbox may send them again", len(ids), exc_info=True)

    async def _mark_loop(self) -> None:
        while self._mark_q:
            batch, self._mark_q = self._mark_q[:INSERT_CHUNK], self._mark_q[INSERT_CHUNK:]
            ids = [i for group, _, _ in batch for i in group]
            held = [i for _, group, _ in batch for i in group]
            now = utcnow()

            def write(conn: Any) -> tuple[set[int], set[int]]:
                outbox_won = ({r[0] for r in MARK_INLINE_P.run(conn, {"b_ids": ids, "b_now": now}).all()}
                              if ids else set())
                held_won = {r[0] for r in DELIVERED_HELD_P.run(conn, {"b_ids": held}).all()} if held else set()
                return outbox_won, held_won

            try:
                outbox_won, held_won = await in_transaction(self.sessionmaker.kw["bind"], write)
            except BaseException as exc:  # noqa: BLE001
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for group, held_group, fut in batch:
                if not fut.done():
                    fut.set_result(all(i in outbox_won for i in group) and all(i in held_won for i in held_group))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = _task_of_no_request(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ processing
    async def drain(self, conversation_id: str) -> None:
        """Process every waiting message of one conversation, oldest first."""
        if self.cross_process:
            await self._drain_shared(conversation_id)
            return
        async with self.locks(conversation_id):
            st = self._conv(conversation_id)
            while True:
                row: Any = None
                if st.clean and st.inflight == 0:
                    while st.pending and st.pending[0] <= st.last_done:
                        st.rows.pop(st.pending.pop(0), None)
                    if not st.pending:
                        return
                    row = st.rows.get(st.pending[0])
                if row is None:
                    row = await self._oldest(conversation_id)
                    if row is None:
                        st.clean = True
                        return
                    if row.next_attempt_at and outbox.as_aware(row.next_attempt_at) > utcnow():
                        st.clean = False
                        return  # the oldest is backing off; later ones must wait for it (ordering)
                ok, _ = await self._process_one(row)
                if not ok:
                    st.clean = False
                    return

    async def _oldest(self, conversation_id: str) -> Any:
        async with self.sessionmaker() as session:
            return (await session.execute(NEXT_ROW, {"b_cid": conversation_id})).first()

    async def _drain_shared(self, conversation_id: str) -> None:
        """Drain under the cross-process lease (PostgreSQL: several gateway processes)."""
        async with self.locks(conversation_id):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LEASE_WAIT_SECONDS
            delay = 0.02
            while True:
                owned, row = await self._lease_and_oldest(conversation_id)
                if owned:
                    break
                if loop.time() > deadline:
                    return  # the recovery loop will come back for it
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
            held = row is not None  # with nothing to do the lease was released in the same transaction
            renewal = asyncio.create_task(self._keep_lease(conversation_id), name="lease-renewal") if held else None
            try:
                while row is not None:
                    if row.next_attempt_at and outbox.as_aware(row.next_attempt_at) > utcnow():
                        return  # the oldest is backing off; later ones must wait for it (ordering)
                    ok, row = await self._process_one(row, shared=True)
                    if not ok:
                        return
                    held = row is not None
            finally:
                if renewal is not None:
                    renewal.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await renewal
                if held:
                    await self._release(conversation_id)

    async def _keep_lease(self, conversation_id: str) -> None:
        """Push the lease's expiry forward while this process drains the conversation; stops
        when the lease is gone (released at the end of the drain, or lost)."""
        table = ConversationLease.__table__
        while True:
            await asyncio.sleep(LEASE_TTL.total_seconds() / 3)
            try:
                async with self.sessionmaker() as session, session.begin():
                    res = await session.execute(
                        update(table)
                        .where(table.c.conversation_id == conversation_id, table.c.owner == self.owner)
                        .values(expires_at=utcnow() + LEASE_TTL)
                    )
            except Exception:  # noqa: BLE001 - a blip: the next beat tries again before expiry
                log.warning("lease renewal failed for %s", conversation_id, exc_info=True)  # PII filter masks it
                continue
            if res.rowcount == 0:
                return

    async def _lease_and_oldest(self, conversation_id: str) -> tuple[bool, Any]:
        """Take (or take over an expired) lease and select the oldest waiting row (on PostgreSQL
        one statement, committed by itself, then the row's snapshot read under the lease)."""
        now = utcnow()
        params = {"conversation_id": conversation_id, "owner": self.owner, "expires_at": now + LEASE_TTL,
                  "b_now": now, "b_owner": self.owner}

        def take(conn: Any) -> tuple[bool, Any]:
            if conn.dialect.name == "postgresql":
                got = conn.execute(LEASE_AND_NEXT_PG, {
                    "b_cid": conversation_id, "b_owner": self.owner, "b_expires": params["expires_at"],
                    "b_now": now, "b_limit": 1}).one()
                if got.lease_owner is None:
                    return got.id is None, None  # nothing waiting (nothing to do), or another owner's
                taken.append(True)
                try:  # the lease is committed already: a failed read must not strand it
                    self._prefetch_next(conn, conversation_id, got, fetched)
                except Exception:  # noqa: BLE001 - the turn reads its snapshot itself
                    log.warning("prefetch failed for inbound %s", got.id, exc_info=True)
                return True, got
            if conn.execute(lease_stmt(conn), params).first() is None:
                return False, None
            return True, self._next_or_release(conn, conversation_id, fetched)

        fetched: _Fetched = {}
        taken: list[bool] = []
        try:
            # each statement stands alone: the lease statement takes the lease and reads the
            # oldest row at once, and the snapshot read after it runs under the lease
            result = await each_committed(self.sessionmaker.kw["bind"], take)
        except asyncio.CancelledError:
            if taken:  # committed before the cancellation (a stopping process): give it back
                self._spawn(self._release(conversation_id))
            raise
        self._keep_prefetched(fetched)
        return result

    def _release_params(self, conversation_id: str) -> dict[str, str]:
        return {"b_cid": conversation_id, "b_owner": self.owner}

    def _next_or_release(
        self, conn: Any, conversation_id: str, fetched: _Fetched, *, finish: dict[str, Any] | None = None
    ) -> Any:
        """Under the lease, in the caller's transaction (a synchronous connection): the
        conversation's oldest waiting row, or — nothing waiting — release the lease; with
        ``finish`` first mark that turn's row done. The next turn's starting state goes into
        ``fetched`` (the caller keeps it once committed): read under the lease, after this
        transaction's own writes, nothing else can run a turn of the conversation before it."""
        dialect = conn.dialect.name
        if finish is None:
            nxt = self._next_row_or_release(conn, dialect, conversation_id)
        else:
            nxt = self._finish_and_next(conn, dialect, finish, conversation_id)
        if nxt is not None:
            self._prefetch_next(conn, conversation_id, nxt, fetched)
        return nxt

    def _finish_and_next(self, db: Any, dialect: str, finish: dict[str, Any], conversation_id: str) -> Any:
        """Mark the turn's row done, then the next waiting row or the lease released (``db``: a
        synchronous ``Connection`` or ``Session`` in the caller's transaction); one statement
        on PostgreSQL."""
        if dialect == "postgresql":
            return db.execute(FINISH_NEXT_OR_RELEASE_PG, {**finish, **self._release_params(conversation_id)}).first()
        db.execute(FINISH_ROW, finish)
        return self._next_row_or_release(db, dialect, conversation_id)

    def _next_row_or_release(self, db: Any, dialect: str, conversation_id: str) -> Any:
        """The oldest waiting row, or the lease released (``db``: a synchronous ``Connection``
        or ``Session`` in the caller's transaction); one statement on PostgreSQL."""
        params = self._release_params(conversation_id)
        if dialect == "postgresql":
            return db.execute(NEXT_OR_RELEASE_PG, params).first()
        nxt = db.execute(NEXT_ROW, {"b_cid": conversation_id}).first()
        if nxt is None:
            db.execute(RELEASE_LEASE, params)
        return nxt

    def _prefetch_next(self, conn: Any, conversation_id: str, nxt: Any, fetched: _Fetched) -> None:
        if self._prefetch is not None:
            fetched[nxt.id] = (asyncio.get_running_loop().time(), 0,
                               self._prefetch(conn, conversation_id, nxt.dedupe_key))  # type: ignore[misc]

    async def _release(self, conversation_id: str) -> None:
        release = self._release_params(conversation_id)
        await in_transaction(self.sessionmaker.kw["bind"], lambda conn: conn.execute(RELEASE_LEASE, release))

    async def _process_one(self, row: Any, *, shared: bool = False) -> tuple[bool, InboundMessage | None]:
        """Run the dialogue on one row and write its replies. With ``shared`` (lease held) the
        reply transaction also selects the conversation's next row and, when there is none,
        releases the lease; returns (processed, next row)."""
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
            return await self._process_turn(row, message, request_id, shared)
        finally:
            REQUEST_ID.reset(token)

    async def _process_turn(self, row: Any, message: Message, request_id: str | None,
                            shared: bool) -> tuple[bool, InboundMessage | None]:
        """Load → decide → commit → after-commit, for one row."""
        if not row.attempts:
            QUEUE_WAIT.labels(row.channel).observe(max(0.0, (utcnow() - message.received_at).total_seconds()))
        async with self._active:
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
                TURN_SECONDS.labels(row.channel).observe(elapsed)
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
        _turn_log.info("turn", inbound_id=row.id, channel=row.channel, replies=len(queued),
                       duration_ms=round(elapsed * 1000, 2))
        if queued and not committed.waiting:
            self.on_enqueued()  # due now: wake the worker (inline candidates wait for the grace period)
        fut = self._waiters.get(row.id)
        if fut is not None and not fut.done():
            fut.set_result(_answer(queued, held, row.id if held else None))
        return True, committed.next_row

    async def _commit(self, row: Any, message: Message, result: TurnResult, store: TrackerStore | None,
                      shared: bool, request_id: str | None) -> Committed:
        """Write the turn, its replies and the inbound row's close in one transaction: the
        store's plans in order (a statement plan that misses gives way to the next); a turn
        with nothing of the tracker to write commits its replies alone."""
        for plan in store.plans(result) if store is not None else ():
            if isinstance(plan, StatementPlan):
                done = await self._commit_statements(row, message, plan, result.replies, shared)
                if done is not None:
                    return done
                continue
            for attempt in range(3):
                try:
                    return await self._commit_in_session(row, message, plan.write, result.replies, shared, request_id)
                except IntegrityError:
                    if attempt == 2:
                        raise
        return await self._commit_in_session(row, message, None, result.replies, shared, request_id)

    async def _commit_statements(self, row: Any, message: Message, plan: StatementPlan, replies: list[Reply],
                                 shared: bool) -> Committed | None:
        """A statement plan with the replies: under a lease this turn alone, whose transaction
        also selects the conversation's next row or releases the lease; in one process (SQLite)
        grouped with the turns of concurrent conversations. None: the plan missed."""
        item = _TurnWrite(stmts=plan.stmts, replies=list(replies), row=row, waiting=row.id in self._waiters,
                          fut=asyncio.get_running_loop().create_future(), prepare=plan.prepare)
        missed: tuple[type[BaseException], ...] = (_RowcountMismatch, IntegrityError) if plan.miss_on_integrity \
            else (_RowcountMismatch,)
        nxt = None
        try:
            if shared:
                nxt = await self._write_turns([item], lease_of=message.conversation_id)
            elif self._group_turns:
                self._turn_q.append(item)
                if self._turn_task is None or self._turn_task.done():
                    self._turn_task = _task_of_no_request(self._turn_loop())
                # awaited directly: the turn loop sets only futures not yet done
                if not await item.fut:
                    return None
            else:
                await self._write_turns([item])
        except missed:
            return None
        return Committed(replies=item.replies, queued=item.queued, waiting=item.waiting, held=item.held,
                         next_row=nxt)

    async def _commit_in_session(self, row: Any, message: Message, write: Any, replies: list[Reply],
                                 shared: bool, request_id: str | None) -> Committed:
        """A session plan (or none) with the replies, in one ORM transaction."""
        waiting = row.id in self._waiters
        async with self.sessionmaker() as session, session.begin():
            opened = await write(session) if write is not None else None
            queued = await self._enqueue_replies(
                session, list(replies), row.id, message.conversation_id,
                delay=self.inline_grace if waiting else 0.0, request_id=request_id,
            )
            nxt = await self._finish_row(session, row, message.conversation_id, shared)
        return Committed(replies=list(replies), queued=queued, waiting=waiting, handoff_opened=opened, next_row=nxt)

    async def _turn_loop(self) -> None:
        """Group commit of turn write-sets: everything queued while a batch was written goes
        next, in one transaction; a batch that fails is retried turn by turn."""
        await _let_others_join()
        while self._turn_q:
            batch, self._turn_q = self._turn_q[:INSERT_CHUNK], self._turn_q[INSERT_CHUNK:]
            if len(batch) > 1:
                try:
                    await self._write_turns(batch)
                except asyncio.CancelledError:
                    _cancel_waiting(batch)
                    raise
                except Exception as exc:  # noqa: BLE001 - each turn is retried alone below
                    log.info("grouped turn write of %d turns failed (%s): writing them one by one",
                             len(batch), type(exc).__name__)
                else:
                    for item in batch:
                        if not item.fut.done():
                            item.fut.set_result(True)
                    continue
            for item in batch:
                try:
                    await self._write_turns([item])
                except _RowcountMismatch:
                    result: Any = False
                except asyncio.CancelledError:
                    _cancel_waiting(batch)
                    raise
                except Exception as exc:  # noqa: BLE001 - the turn's own failure, to its caller
                    if not item.fut.done():
                        item.fut.set_exception(exc)
                    continue
                else:
                    result = True
                if not item.fut.done():
                    item.fut.set_result(result)

    async def _write_turns(self, items: list[_TurnWrite], *, lease_of: str | None = None) -> Any:
        """Write the turns in one transaction: each statement once with every turn's rows
        (executemany), all replies in one INSERT, all inbound rows closed; raises
        ``_RowcountMismatch`` (nothing written) when a guarded statement missed.

        With ``lease_of`` (one turn, lease held) also select that conversation's next waiting
        row, or release the lease when there is none; returns the row."""
        engine = self.sessionmaker.kw["bind"]
        groups: dict[int, tuple[Any, list[dict[str, Any]], list[int | None]]] = {}
        for item in items:
            for stmt, params, expect in item.stmts:
                g = groups.setdefault(id(stmt), (stmt, [], []))
                g[1].extend(params)
                g[2].append(expect)
        now = utcnow()
        # one process, no lease: a waited-for turn's replies are held on its row (module docstring)
        hold = lease_of is None and not self.cross_process
        due = now + timedelta(seconds=self.inline_grace)
        out_values: list[dict[str, Any]] = []
        keys: list[list[str]] = []
        finish: list[dict[str, Any]] = []
        held_rows: list[dict[str, Any]] = []
        for item in items:
            item.held = hold and item.waiting and bool(item.replies)
            row_values = {"b_id": item.row.id, "b_now": now, "b_attempts": item.row.attempts + 1}
            if item.held:
                keys.append([])
                held_rows.append({**row_values, "b_due": due})
                continue
            delay = self.inline_grace if item.waiting else 0.0
            k, v = _reply_values(item.replies, item.row.id, item.row.conversation_id, delay=delay, now=now,
                                 request_id=_request_id_of(item.row))
            keys.append(k)
            out_values += v
            finish.append(row_values)
        # inline answers of earlier turns
        (marks, self._late_marks), (held_marks, self._late_held) = (self._late_marks, []), (self._late_held, [])

        def write(conn: Any) -> tuple[dict[tuple[str, str], int], Any]:
            for item in items:
                if item.prepare is not None:
                    item.prepare(conn)
            if marks:
                MARK_INLINE_P.run(conn, {"b_ids": marks, "b_now": now})
            if held_marks:
                DELIVERED_HELD_P.run(conn, {"b_ids": held_marks})
            for stmt, params, expects in groups.values():
                if not params:
                    continue
                res = stmt.run(conn, params) if isinstance(stmt, Precompiled) else conn.execute(stmt, params)
                if all(e is not None for e in expects) and res.rowcount != sum(e or 0 for e in expects):
                    raise _RowcountMismatch()
            got: dict[tuple[str, str], int] = {}
            if out_values:
                got = {(ch, key): oid for oid, ch, key in
                       INSERT_RETURNING[OutboxMessage.__tablename__].run(conn, out_values).all()}
            if lease_of is None:
                if finish:
                    FINISH_ROW_P.run(conn, finish)
                if held_rows:
                    HOLD_ROW_P.run(conn, held_rows)
                return got, None
            (one,) = finish  # under a lease the write is one turn's
            return got, self._next_or_release(conn, lease_of, fetched, finish=one)

        fetched: _Fetched = {}
        try:
            got, nxt = await in_transaction(engine, write)
        except BaseException:
            self._late_marks[:0] = marks
            self._late_held[:0] = held_marks
            raise
        self._keep_prefetched(fetched)
        for item, k in zip(items, keys):
            item.queued = [(got[(r.channel, key)], r) for r, key in zip(item.replies, k) if (r.channel, key) in got]
        return nxt

    async def _finish_row(self, session: Any, row: Any, conversation_id: str, shared: bool) -> Any:
        """Mark the row done; with the lease held also fetch the next row (or release the lease).

        ``session`` is the turn's ``AsyncSession`` or ``AsyncConnection`` (pre-built Core
        statements, so either works)."""
        finish = {"b_id": row.id, "b_now": utcnow(), "b_attempts": row.attempts + 1}
        if not shared:
            await session.execute(FINISH_ROW, finish)
            return None
        dialect = dialect_name(session)
        return await session.run_sync(lambda db: self._finish_and_next(db, dialect, finish, conversation_id))

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

    @staticmethod
    async def _enqueue_replies(
        session: Any, replies: list[Reply], inbound_id: int, conversation_id: str, *, delay: float,
        start: int = 0, request_id: str | None = None,
    ) -> list[tuple[int, Reply]]:
        """All replies of one message in one INSERT; a dedupe key already present (a replay
        after a crash between the reply and the status update) is skipped like ``enqueue``."""
        if not replies:
            return []
        keys, values = _reply_values(replies, inbound_id, conversation_id, delay=delay, start=start, now=utcnow(),
                                     request_id=request_id)
        table = OutboxMessage.__table__
        got = {(ch, key): oid for oid, ch, key in (await session.execute(insert_stmt(session, table), values)).all()}
        return [(got[(r.channel, key)], r) for r, key in zip(replies, keys) if (r.channel, key) in got]

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

    # ------------------------------------------------------------------ recovery
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


def _retry_may_help(exc: BaseException) -> bool:
    """Whether running a failed turn again may succeed. The store, the network or a race
    (any error of those kinds) may be gone next time; a bug or data the turn cannot handle
    (a TypeError on a malformed payload, a date that does not exist) fails the same way every
    time, so it is answered at once instead of blocking the conversation through retries."""
    return not isinstance(exc, _PERMANENT)


_PERMANENT = (TypeError, ValueError, LookupError, AttributeError, ArithmeticError, RecursionError,
              AssertionError, NotImplementedError)


def _answer(queued: list[tuple[int, Reply]], held: Sequence[Reply] = (), held_id: int | None = None) -> Receipt:
    """What a waiting channel gets: the held replies (the turn's, ``held_id`` is their row),
    then those queued in the outbox."""
    return Receipt(duplicate=False, replies=[*held, *(r for _, r in queued)], outbox_ids=[i for i, _ in queued],
                   held=held_id)


def _cancel_waiting(items: list[_TurnWrite]) -> None:
    for item in items:
        if not item.fut.done():
            item.fut.cancel()


def _task_of_no_request(coro: Any) -> asyncio.Task[Any]:
    """A task for work shared by many requests (group writers, drains): started from one
    request's handler, it must not log with that request's id."""
    ctx = contextvars.copy_context()
    ctx.run(_forget_request_id)
    return asyncio.get_running_loop().create_task(coro, context=ctx)


def _forget_request_id() -> None:
    bind_request_id(None)


def _request_id_of(row: Any) -> str | None:
    payload = row.payload
    return payload.get("request_id") if isinstance(payload, dict) else None


def _with_request_id(payload: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    """A reply's payload carrying the request id in its metadata (the outbox logs it on send)."""
    if request_id is not None:
        payload["metadata"] = {**(payload.get("metadata") or {}), "request_id": request_id}
    return payload


def _reply_values(
    replies: list[Reply], inbound_id: int, conversation_id: str, *, delay: float, now: datetime, start: int = 0,
    request_id: str | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Outbox rows of one message's replies (dedupe keys ``in:<inbound id>:<n>``)."""
    keys = [f"in:{inbound_id}:{n}" for n in range(start, start + len(replies))]
    due = now + timedelta(seconds=delay)
    values = [
        {
            "channel": r.channel,
            "recipient_id": r.recipient_id,
            "conversation_id": conversation_id,
            "kind": "reply",
            "payload": _with_request_id(r.to_dict(), request_id),
            "dedupe_key": key,
            "urgent": r.urgent,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": due,
            "created_at": now,
        }
        for r, key in zip(replies, keys)
    ]
    return keys, values


_ROW_FIELDS = ("channel", "dedupe_key", "sender_id", "conversation_id", "kind", "text", "payload", "attempts",
               "next_attempt_at", "received_at")


def _default_max_active(bind: Any) -> int:
    """Conversations running the dialogue at once: the pool minus room for the other writers
    (inbound inserts, inline marks, outbox, console). On SQLite a turn holds no connection
    while it runs (its write joins the next grouped one), so the bound is about batching: a
    turn keeps its slot until its group write commits, and the slots bound how many turns
    one commit carries. WeChat benchmark, c=200, interleaved (with group writes compiling a
    few statement sizes, ``bot.precompiled``): 48 slots 0.78-0.79 ms CPU a message, 96 slots
    0.76, 160 slots 0.76-0.77; 16 slots (before) 0.86-0.90 ms with every batch size compiled."""
    if bind is None:
        return 16
    if bind.dialect.name == "sqlite":
        return 96
    pool = bind.pool
    try:
        size = pool.size() + max(0, getattr(pool, "_max_overflow", 0))
    except Exception:  # noqa: BLE001
        return 16
    return max(2, size - 4)
