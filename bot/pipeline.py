"""Inbound pipeline: persist, dedupe, process one conversation at a time, queue replies.

A message is committed to ``inbound_messages`` before anything else happens, so a crash or a
core outage leaves it waiting, not lost; the recovery loop picks up whatever is still
``received``. Messages of one conversation are processed strictly in arrival order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections import defaultdict
from contextlib import asynccontextmanager
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import outbox
from bot.langs import detect_language
from bot.models import ConversationLease, InboundMessage, OutboxMessage
from channels.base import Message, Receipt, Reply

log = logging.getLogger("powerbot.pipeline")

MAX_PROCESS_ATTEMPTS = 20
RECOVERY_INTERVAL = 2.0
RECOVERY_MIN_AGE = timedelta(seconds=5)
LEASE_TTL = timedelta(seconds=60)
LEASE_WAIT_SECONDS = 30.0

BUSY_TEXT = {
    "zh": "系统繁忙，您的消息已收到并排队处理，恢复后我们会第一时间回复您。如遇停电、电线断落等紧急情况，请远离危险并拨打95598。",
    "en": "Our system is busy right now. Your message is queued and we will answer as soon as it recovers. "
    "For emergencies (fallen wires, sparks) keep away and call 95598.",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class DialogueHandler(Protocol):
    """The conversation engine as seen by the pipeline."""

    async def handle(self, message: Message) -> list[Reply]: ...


class TransientError(Exception):
    """Raised by the handler when a dependency (the core) is down: retry later."""


class ConversationLocks:
    """One lock per conversation inside this process (cross-process locks wrap this)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def __call__(self, conversation_id: str) -> asyncio.Lock:
        return self._locks[conversation_id]


class Pipeline:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        handler: DialogueHandler,
        *,
        transient_errors: tuple[type[BaseException], ...] = (TransientError,),
        on_enqueued: Callable[[], None] | None = None,
        inline_grace: float = 10.0,
        cross_process: bool | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.handler = handler
        self.transient_errors = transient_errors
        self.on_enqueued = on_enqueued or (lambda: None)
        self.inline_grace = inline_grace
        self.locks = ConversationLocks()
        # Several gateway processes on one database: a conversation is owned by one at a time.
        dialect = sessionmaker.kw["bind"].dialect.name if sessionmaker.kw.get("bind") is not None else ""
        self.cross_process = cross_process if cross_process is not None else dialect == "postgresql"
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._waiters: dict[int, asyncio.Future[list[tuple[int, Reply]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._recovery: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ receive
    async def receive(self, message: Message, *, wait: float | None = None) -> Receipt:
        """Persist the message; process it; return replies if ready within ``wait`` seconds.

        Replies not returned inline are delivered by the outbox after ``inline_grace``.
        """
        row = InboundMessage(
            channel=message.channel,
            dedupe_key=message.message_id,
            sender_id=message.sender_id,
            conversation_id=message.conversation_id,
            kind=message.kind,
            text=message.text,
            payload=dict(message.metadata),
            status="received",
            attempts=0,
            next_attempt_at=utcnow(),
            received_at=message.received_at,
        )
        try:
            async with self.sessionmaker() as session, session.begin():
                session.add(row)
        except IntegrityError:
            log.info("duplicate inbound channel=%s message_id=%s", message.channel, message.message_id)
            return Receipt(duplicate=True, replies=None)
        inbound_id = row.id
        fut: asyncio.Future[list[tuple[int, Reply]]] = asyncio.get_running_loop().create_future()
        self._waiters[inbound_id] = fut
        self._spawn(self.drain(message.conversation_id))
        try:
            done = await self._await_result(inbound_id, fut, wait)
        finally:
            self._waiters.pop(inbound_id, None)
        if done is None:
            return Receipt(duplicate=False, replies=None)
        return Receipt(duplicate=False, replies=[r for _, r in done], outbox_ids=[i for i, _ in done])

    async def _await_result(
        self, inbound_id: int, fut: asyncio.Future[list[tuple[int, Reply]]], wait: float | None
    ) -> list[tuple[int, Reply]] | None:
        """Wait for this process's drain; with other processes around, also watch the store."""
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        while True:
            slice_ = 0.5 if self.cross_process else None
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                slice_ = remaining if slice_ is None else min(slice_, remaining)
            try:
                return await asyncio.wait_for(asyncio.shield(fut), timeout=slice_)
            except asyncio.TimeoutError:
                if self.cross_process:
                    found = await self._result_from_store(inbound_id)
                    if found is not None:
                        return found

    async def _result_from_store(self, inbound_id: int) -> list[tuple[int, Reply]] | None:
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
        return [(r.id, Reply.from_dict(r.payload)) for r in rows]

    async def mark_delivered_inline(self, outbox_ids: list[int]) -> bool:
        """The channel returned these replies in its HTTP answer: the outbox must not send them."""
        if not outbox_ids:
            return True
        async with self.sessionmaker() as session, session.begin():
            res = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(outbox_ids), OutboxMessage.status == "pending")
                .values(status="sent", sent_at=utcnow(), provider_id="inline")
            )
        return res.rowcount == len(outbox_ids)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ processing
    @asynccontextmanager
    async def _lease(self, conversation_id: str):  # type: ignore[no-untyped-def]
        """Hold the cross-process lease of a conversation (no-op for a single process)."""
        if not self.cross_process:
            yield True
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LEASE_WAIT_SECONDS
        delay = 0.02
        while not await self._try_lease(conversation_id):
            if loop.time() > deadline:
                yield False  # the recovery loop will come back for it
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        try:
            yield True
        finally:
            async with self.sessionmaker() as session, session.begin():
                await session.execute(
                    delete(ConversationLease).where(
                        ConversationLease.conversation_id == conversation_id, ConversationLease.owner == self.owner
                    )
                )

    async def _try_lease(self, conversation_id: str) -> bool:
        now = utcnow()
        try:
            async with self.sessionmaker() as session, session.begin():
                session.add(
                    ConversationLease(conversation_id=conversation_id, owner=self.owner, expires_at=now + LEASE_TTL)
                )
            return True
        except IntegrityError:
            pass
        async with self.sessionmaker() as session, session.begin():
            res = await session.execute(
                update(ConversationLease)
                .where(ConversationLease.conversation_id == conversation_id, ConversationLease.expires_at < now)
                .values(owner=self.owner, expires_at=now + LEASE_TTL)
            )
        return res.rowcount == 1

    async def drain(self, conversation_id: str) -> None:
        """Process every waiting message of one conversation, oldest first."""
        async with self.locks(conversation_id), self._lease(conversation_id) as owned:
            while owned:
                async with self.sessionmaker() as session:
                    row = (
                        await session.execute(
                            select(InboundMessage)
                            .where(
                                InboundMessage.conversation_id == conversation_id,
                                InboundMessage.status == "received",
                            )
                            .order_by(InboundMessage.id)
                            .limit(1)
                        )
                    ).scalar_one_or_none()
                if row is None:
                    return
                if row.next_attempt_at and outbox.as_aware(row.next_attempt_at) > utcnow():
                    return  # the oldest is backing off; later ones must wait for it (ordering)
                ok = await self._process_one(row)
                if not ok:
                    return

    async def _process_one(self, row: InboundMessage) -> bool:
        message = Message(
            channel=row.channel,
            sender_id=row.sender_id,
            text=row.text,
            message_id=row.dedupe_key,
            kind=row.kind,
            metadata=row.payload or {},
            received_at=outbox.as_aware(row.received_at),
        )
        try:
            replies = await self.handler.handle(message)
        except self.transient_errors as exc:
            await self._postpone(row, message, exc, busy=True)
            return False
        except Exception as exc:  # noqa: BLE001
            log.exception("handler failed on inbound_id=%s", row.id)
            await self._postpone(row, message, exc, busy=row.attempts == 0)
            return False
        queued: list[tuple[int, Reply]] = []
        async with self.sessionmaker() as session, session.begin():
            for n, reply in enumerate(replies):
                oid = await outbox.enqueue(
                    session,
                    reply,
                    conversation_id=message.conversation_id,
                    dedupe_key=f"in:{row.id}:{n}",
                    delay=self.inline_grace if row.id in self._waiters else 0.0,
                )
                if oid is not None:
                    queued.append((oid, reply))
            await session.execute(
                update(InboundMessage)
                .where(InboundMessage.id == row.id)
                .values(status="done", processed_at=utcnow(), attempts=row.attempts + 1, error=None)
            )
        self.on_enqueued()
        fut = self._waiters.get(row.id)
        if fut is not None and not fut.done():
            fut.set_result(queued)
        return True

    async def _postpone(self, row: InboundMessage, message: Message, exc: BaseException, *, busy: bool) -> None:
        attempts = row.attempts + 1
        failed = attempts >= MAX_PROCESS_ATTEMPTS
        log.warning("inbound_id=%s postponed attempt=%s: %s", row.id, attempts, type(exc).__name__)
        queued: list[tuple[int, Reply]] = []
        async with self.sessionmaker() as session, session.begin():
            if busy and row.attempts == 0:
                lang = detect_language(message.text)
                notice = Reply(channel=message.channel, recipient_id=message.sender_id, text=BUSY_TEXT[lang])
                oid = await outbox.enqueue(
                    session,
                    notice,
                    conversation_id=message.conversation_id,
                    dedupe_key=f"busy:{row.id}",
                    delay=self.inline_grace if row.id in self._waiters else 0.0,
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
            )
        self.on_enqueued()
        fut = self._waiters.get(row.id)
        if fut is not None and not fut.done():
            fut.set_result(queued)  # the customer hears "busy" now; the real answer follows

    # ------------------------------------------------------------------ recovery
    async def recover_once(self) -> int:
        """Drain conversations that have messages left ``received`` (crash, outage)."""
        cutoff = utcnow() - RECOVERY_MIN_AGE
        async with self.sessionmaker() as session:
            ids = (
                await session.execute(
                    select(InboundMessage.conversation_id)
                    .where(
                        InboundMessage.status == "received",
                        InboundMessage.next_attempt_at <= utcnow(),
                        InboundMessage.received_at <= cutoff,
                    )
                    .distinct()
                    .limit(200)
                )
            ).scalars().all()
        for cid in ids:
            if not self.locks(cid).locked():
                self._spawn(self.drain(cid))
        return len(ids)

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
        if self._recovery:
            self._recovery.cancel()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, *( [self._recovery] if self._recovery else []), return_exceptions=True)
