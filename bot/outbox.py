"""Persisted outbound queue: every reply and notice is stored, then delivered with retries.

Rows are claimed one batch at a time (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a guarded
status update on SQLite) so several workers or processes never send the same row twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.models import OutboxMessage
from channels.base import Channel, DeliveryError, Reply

log = logging.getLogger("powerbot.outbox")

MAX_ATTEMPTS = 8
BASE_BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 600.0
SENDING_LEASE = timedelta(minutes=2)  # a 'sending' row older than this was orphaned by a crash


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter: 2 s, 4 s, 8 s... capped at 10 minutes."""
    seconds = min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * (2 ** max(0, attempts - 1)))
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


def as_aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


async def enqueue(
    session: AsyncSession,
    reply: Reply,
    *,
    kind: str = "reply",
    conversation_id: str | None = None,
    dedupe_key: str | None = None,
    delay: float = 0.0,
    status: str = "pending",
) -> int | None:
    """Add one row inside the caller's transaction. Returns its id, or None for a duplicate.

    A duplicate ``dedupe_key`` on the same channel is silently ignored: one event, one notice.
    """
    row = OutboxMessage(
        channel=reply.channel,
        recipient_id=reply.recipient_id,
        conversation_id=conversation_id,
        kind=kind,
        payload=reply.to_dict(),
        dedupe_key=dedupe_key,
        urgent=reply.urgent,
        status=status,
        attempts=0,
        next_attempt_at=utcnow() + timedelta(seconds=delay),
        created_at=utcnow(),
    )
    if dedupe_key is None:
        session.add(row)
        await session.flush()
        return row.id
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        return None
    return row.id


HoldPolicy = Callable[[OutboxMessage, datetime], datetime | None]
"""Returns a later time to postpone a row to (quiet hours...), or None to send now."""


class OutboxWorker:
    """Delivers due outbox rows through their channel; one instance per gateway process."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        channels: Mapping[str, Channel],
        *,
        batch_size: int = 50,
        poll_interval: float = 0.5,
        concurrency: int = 20,
        hold_policies: Iterable[HoldPolicy] = (),
    ) -> None:
        self.sessionmaker = sessionmaker
        self.channels = dict(channels)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.hold_policies = list(hold_policies)
        self._wake = asyncio.Event()
        self._sem = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox-worker")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while not self._stopping:
            try:
                n = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the worker must survive a database blip
                log.exception("outbox pass failed")
                n = 0
            if n == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
                except asyncio.TimeoutError:
                    pass

    async def _claim(self) -> list[OutboxMessage]:
        now = utcnow()
        names = list(self.channels)
        async with self.sessionmaker() as session, session.begin():
            # Rows orphaned in 'sending' by a crashed process go back to the queue.
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == "sending", OutboxMessage.next_attempt_at < now - SENDING_LEASE)
                .values(status="pending")
            )
            stmt = (
                select(OutboxMessage)
                .where(
                    OutboxMessage.status == "pending",
                    OutboxMessage.next_attempt_at <= now,
                    OutboxMessage.channel.in_(names),
                )
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                .limit(self.batch_size)
            )
            if session.bind.dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            rows = list((await session.execute(stmt)).scalars())
            claimed = []
            for row in rows:
                res = await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == row.id, OutboxMessage.status == "pending")
                    .values(status="sending", next_attempt_at=now)
                )
                if res.rowcount == 1:
                    claimed.append(row)
            return claimed

    async def run_once(self) -> int:
        """Claim and deliver one batch; returns how many rows were handled."""
        rows = await self._claim()
        if rows:
            await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    async def _deliver(self, row: OutboxMessage) -> None:
        async with self._sem:
            now = utcnow()
            for policy in self.hold_policies:
                later = policy(row, now)
                if later is not None:
                    await self._finish(row.id, status="pending", next_attempt_at=later)
                    return
            channel = self.channels[row.channel]
            reply = Reply.from_dict(row.payload)
            try:
                provider_id = await channel.send(reply)
            except DeliveryError as exc:
                attempts = row.attempts + 1
                dead = not exc.retryable or attempts >= MAX_ATTEMPTS
                log.warning(
                    "delivery failed channel=%s outbox_id=%s attempt=%s retryable=%s error=%s",
                    row.channel, row.id, attempts, exc.retryable, exc,
                )
                await self._finish(
                    row.id,
                    status="dead" if dead else "pending",
                    attempts=attempts,
                    last_error=str(exc)[:2000],
                    next_attempt_at=utcnow() + backoff(attempts),
                )
                return
            except Exception as exc:  # noqa: BLE001 - an unexpected bug must not kill the worker
                log.exception("channel %s crashed sending outbox_id=%s", row.channel, row.id)
                attempts = row.attempts + 1
                await self._finish(
                    row.id,
                    status="dead" if attempts >= MAX_ATTEMPTS else "pending",
                    attempts=attempts,
                    last_error=repr(exc)[:2000],
                    next_attempt_at=utcnow() + backoff(attempts),
                )
                return
            await self._finish(
                row.id, status="sent", attempts=row.attempts + 1, provider_id=provider_id, sent_at=utcnow()
            )

    async def _finish(self, row_id: int, **values: object) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id, OutboxMessage.status == "sending")
                .values(**values)
            )
