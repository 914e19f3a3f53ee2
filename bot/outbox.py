"""Persisted outbound queue: every reply and notice is stored, then delivered with retries.

Rows are claimed one batch at a time with one ``UPDATE ... RETURNING`` (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, a guarded status update on SQLite) so several workers or processes never
send the same row twice. A channel with a batch API (``Channel.max_batch`` > 1, e.g. SMS) gets
the claimed rows in groups through ``send_batch`` and each row still gets its own outcome
(sent with the provider id / retried with backoff / dead with the dead-letter hooks); outcomes
are written in groups (one statement per group of rows with the same columns).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import structlog
from sqlalchemy import and_, any_, bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db import sql_const, unnest_rows
from bot.models import OutboxMessage
from channels.base import DELIVERY_KEY, Channel, DeliveryError, Reply
from common.clock import utcnow
from common.metrics import DEAD_LETTERS, MESSAGES_OUT, NOTICES_SENT, OUTBOX_RETRIES, PLATFORM_ERRORS, labelled

log = logging.getLogger("powerbot.outbox")
_send_log = structlog.get_logger("powerbot.outbox")
_send_log_std = logging.getLogger("powerbot.outbox")  # its level: a filtered line costs one check

MAX_ATTEMPTS = 8
BASE_BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 600.0
ANALYZE_AFTER_ROWS = 20_000  # enqueue_many of this many rows refreshes the planner statistics (PostgreSQL)
SENDING_LEASE = timedelta(minutes=2)  # a 'sending' row older than this was orphaned by a crash

# Under load replies become due one or two at a time (each a turn whose caller stopped
# waiting); a pass that found fewer rows than a batch waits this long before the next claim so
# that the next one carries more. At 1,000 customers a pass carried ~2 rows for 5 round trips.
CLAIM_LINGER_SECONDS = 0.05


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter: 2 s, 4 s, 8 s... capped at 10 minutes."""
    seconds = min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * (2 ** max(0, attempts - 1)))
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


def as_aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def delivery_key(row: Any) -> str:
    """A key of one outbox row, the same on every attempt and (row id, creation time and dedupe
    key together) practically unique across installations, handed to the channel in the
    reply's metadata under ``DELIVERY_KEY``. Channels whose provider
    deduplicates by a client reference (SMS ``client_ref``) build it from this key, so a request
    the provider accepted but whose answer was lost is not delivered twice by the retry."""
    raw = f"{row.id}|{as_aware(row.created_at).isoformat()}|{row.dedupe_key or ''}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _request_id_of(row: Any) -> str | None:
    """The id of the HTTP request whose turn queued this row (``bot.pipeline`` stores it in
    the reply's metadata), for the send's log line."""
    meta = row.payload.get("metadata") if isinstance(row.payload, dict) else None
    return meta.get("request_id") if isinstance(meta, dict) else None


def _reply_of(row: Any) -> Reply:
    reply = Reply.from_dict(row.payload)
    reply.metadata[DELIVERY_KEY] = delivery_key(row)
    return reply


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


async def enqueue_many(session: AsyncSession, rows: Sequence[Mapping[str, Any]], *, chunk: int = 2000) -> int:
    """Insert many rows in the caller's transaction with multi-row INSERTs; duplicates skipped.

    Each item: ``reply`` (a Reply) and optional ``kind``, ``conversation_id``, ``dedupe_key``,
    ``delay``. Rows whose (channel, dedupe_key) already exists are silently ignored (ON CONFLICT
    DO NOTHING), like :func:`enqueue`. Returns how many rows were offered (not how many were new).
    """
    dialect = session.bind.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:  # pragma: no cover - other backends: one row at a time
        for item in rows:
            await enqueue(session, item["reply"], kind=item.get("kind", "reply"),
                          conversation_id=item.get("conversation_id"), dedupe_key=item.get("dedupe_key"),
                          delay=item.get("delay", 0.0))
        return len(rows)
    now = utcnow()
    table = OutboxMessage.__table__
    stmt = dialect_insert(table).on_conflict_do_nothing(index_elements=["channel", "dedupe_key"])
    for start in range(0, len(rows), chunk):
        values = []
        for item in rows[start : start + chunk]:
            reply: Reply = item["reply"]
            values.append({
                "channel": reply.channel,
                "recipient_id": reply.recipient_id,
                "conversation_id": item.get("conversation_id"),
                "kind": item.get("kind", "reply"),
                "payload": reply.to_dict(),
                "dedupe_key": item.get("dedupe_key"),
                "urgent": reply.urgent,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now + timedelta(seconds=item.get("delay", 0.0)),
                "created_at": now,
            })
        if values:
            await session.execute(stmt, values)
    if dialect == "postgresql" and len(rows) >= ANALYZE_AFTER_ROWS:
        # A mass fan-out (a planned outage for a district) is dispatched right away, long
        # before autovacuum notices the new rows: without fresh statistics the claim query
        # sorts every pending row on each pass instead of walking ix_outbox_pending_due.
        await session.execute(text("ANALYZE outbox"))
    return len(rows)


HoldPolicy = Callable[[OutboxMessage, datetime], datetime | None]
"""Returns a later time to postpone a row to (quiet hours...), or None to send now.

The worker hands policies and dead-letter hooks the claimed row as a read-only Core row with
the model's attributes (``id``, ``channel``, ``kind``, ``urgent``, ``payload``, ``attempts``...)."""

DeadLetterHook = Callable[[AsyncSession, OutboxMessage, BaseException], Awaitable[None]]
"""Called inside the transaction that marks a row dead (channel fallback...)."""


class OutboxWorker:
    """Delivers due outbox rows through their channel; one instance per gateway process.

    A pass claims up to ``batch_size`` due rows with one UPDATE (``FOR UPDATE SKIP LOCKED`` on
    PostgreSQL), sends them concurrently (``concurrency`` sends, or groups for a channel with a
    batch API: see ``_pass``), and records each outcome as soon as
    its send returns: outcomes are written in small groups by a single flusher task (one
    transaction per group), so a crash in the middle of a batch re-sends only the rows whose
    send had not returned yet. A row failing ``max_attempts`` times, or refused for good, goes
    to the ``dead`` state; ``dead_letter_hooks`` run in the transaction that marks it dead.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        channels: Mapping[str, Channel],
        *,
        batch_size: int = 50,
        poll_interval: float = 0.5,
        concurrency: int = 20,
        hold_policies: Iterable[HoldPolicy] = (),
        max_attempts: int = MAX_ATTEMPTS,
        sending_lease: timedelta = SENDING_LEASE,
        pipelines: int = 1,
        stop_grace: float = 5.0,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.channels = dict(channels)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.hold_policies = list(hold_policies)
        self.dead_letter_hooks: list[DeadLetterHook] = []
        self.max_attempts = max_attempts
        self.sending_lease = sending_lease
        self.pipelines = max(1, pipelines)  # claim loops: the next batch is claimed while one is sending
        self._extra: list[asyncio.Task[None]] = []
        self.stop_grace = stop_grace  # seconds in-flight sends get to finish on stop
        self._wake = asyncio.Event()
        self.concurrency = max(1, concurrency)
        self._sem = asyncio.Semaphore(self.concurrency)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._outcomes: list[tuple[Any, dict[str, Any], BaseException | None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.linger = CLAIM_LINGER_SECONDS
        # the orphan sweep and the notice lane need not run on every claim (see ``_claim``)
        self._swept_at = float("-inf")
        self._notices_at = float("-inf")
        self._notices_found = True

    def configure(
        self,
        *,
        batch_size: int | None = None,
        concurrency: int | None = None,
        max_attempts: int | None = None,
        sending_lease: timedelta | None = None,
        pipelines: int | None = None,
    ) -> None:
        """Tune a worker built by the app wiring (before ``start``)."""
        if pipelines is not None:
            self.pipelines = max(1, pipelines)
            if self._task is not None and not self._task.done():  # already running: add loops
                while len(self._extra) < self.pipelines - 1:
                    self._extra.append(asyncio.create_task(self._run(), name=f"outbox-worker-{len(self._extra) + 1}"))
        if batch_size is not None:
            self.batch_size = batch_size
        if concurrency is not None:
            self.concurrency = max(1, concurrency)
            self._sem = asyncio.Semaphore(self.concurrency)
        if max_attempts is not None:
            self.max_attempts = max_attempts
        if sending_lease is not None:
            self.sending_lease = sending_lease

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox-worker")
        self._extra = [asyncio.create_task(self._run(), name=f"outbox-worker-{i}") for i in range(1, self.pipelines)]

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        # Sends already in flight may finish (a cancelled send may have reached the platform
        # and would be sent again after the lease); after the grace period they are cancelled.
        tasks = [t for t in (self._task, *self._extra) if t is not None and not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.stop_grace)
            for task in pending:
                task.cancel()
            for task in tasks:
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:  # noqa: BLE001
                    log.exception("outbox worker loop ended with an error")
        self._extra = []
        # Outcomes of sends that did return are written even when the pass was cut short.
        await self._drain()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                n = await self._pass(paced=True)
                # The next claim need not wait for this batch's outcomes to be written (its rows
                # stay 'sending' until then, no other pass can take them); only a backlog of
                # unwritten outcomes larger than a few batches holds the loop back.
                while len(self._outcomes) > self.batch_size * self.pipelines and not self._stopping:
                    await self._flushed()
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
            elif n < self.batch_size and self.linger and not self._stopping:
                await asyncio.sleep(self.linger)

    async def _claim(self, paced: bool = False) -> list[Any]:
        """Claim up to ``batch_size`` due rows with one UPDATE ... RETURNING (Core rows).

        ``UPDATE outbox SET status='sending' WHERE id IN (SELECT id ... LIMIT n FOR UPDATE SKIP
        LOCKED) RETURNING *`` on PostgreSQL (SQLite serialises writers: the same statement
        without the lock clause). The rows have the model's attributes (``id``, ``channel``,
        ``payload``, ``attempts``...) as read-only fields.

        Replies are claimed on every pass. ``paced`` (the worker's own loop): the sweep of rows
        orphaned by a crash runs at most every quarter of the sending lease (they are a lease
        old anyway), and the notice lane while it finds rows or once per ``poll_interval`` (a
        notice is not a turn's answer); ``run_once`` does both every time.
        """
        now = utcnow()
        clock = time.monotonic()
        table = OutboxMessage.__table__
        c = table.c
        async with self.sessionmaker() as session, session.begin():
            if not paced or clock - self._swept_at >= min(10.0, self.sending_lease.total_seconds() / 4):
                self._swept_at = clock
                await session.execute(
                    update(table)
                    .where(c.status == sql_const("sending"), c.next_attempt_at < now - self.sending_lease)
                    .values(status="pending")
                )
            # Replies to customers first (their own partial index), then notices: an answer
            # must not queue behind a 100,000-notice fan-out.
            rows = await self._claim_lane(session, c.kind == sql_const("reply"), now, self.batch_size)
            if len(rows) < self.batch_size and (not paced or self._notices_found
                                                or clock - self._notices_at >= self.poll_interval):
                self._notices_at = clock
                notices = await self._claim_lane(session, c.kind != sql_const("reply"), now,
                                                 self.batch_size - len(rows))
                self._notices_found = bool(notices)
                rows += notices
        rows.sort(key=lambda r: r.id)
        return rows

    async def _claim_lane(self, session: AsyncSession, lane: Any, now: datetime, limit: int) -> list[Any]:
        """One lane's claim: up to ``limit`` due rows matching ``lane``, marked ``sending``."""
        table = OutboxMessage.__table__
        c = table.c
        postgres = session.bind.dialect.name == "postgresql"
        # On SQLite the claim must walk its partial index, in due order. Without statistics
        # the planner prefers an index led by ``channel`` (it walked ``ix_outbox_provider``,
        # every row the channel ever sent, then sorted); ``channel || ''`` rules those out.
        channel = c.channel if postgres else c.channel.concat("")
        due = (
            select(c.id)
            .where(c.status == sql_const("pending"), lane, c.next_attempt_at <= now, channel.in_(list(self.channels)))
            .order_by(c.next_attempt_at, c.id)
            .limit(limit)
        )
        if postgres:
            # ``id = ANY(ARRAY(subquery))``: the subquery runs once (an InitPlan). With a
            # plain ``IN (subquery)`` the planner may rescan it in a nested loop, and a rescan
            # skips the rows this very statement has just updated — claiming past the LIMIT.
            # No second ``status = 'pending'`` test outside: the subquery locked the rows
            # and rechecked it, and with it the planner may pick the partial claim index
            # for the id lookup instead of the primary key (a full index scan per claim).
            picked = c.id == any_(func.array(due.with_for_update(skip_locked=True).scalar_subquery()))
        else:
            picked = and_(c.id.in_(due), c.status == sql_const("pending"))
        res = await session.execute(
            update(table)
            .where(picked)
            .values(status="sending", next_attempt_at=now)
            .returning(*table.c)
        )
        return list(res.all())

    async def run_once(self) -> int:
        """Claim and deliver one batch; returns how many rows were handled.

        When it returns, every outcome of the batch is written to the database.
        """
        n = await self._pass()
        if n:
            await self._drain()
        return n

    async def _pass(self, paced: bool = False) -> int:
        """Claim and deliver one batch; outcomes are left to the flusher (``run_once`` waits).

        Rows of a channel with a batch API (``max_batch`` > 1) go out in groups of at most
        ``max_batch`` rows through ``send_batch`` (as few provider calls as possible: providers
        limit calls per second), up to ``concurrency`` groups in flight at once; other rows are
        sent one by one with ``send``, ``concurrency`` at a time.
        """
        rows = await self._claim(paced)
        if rows:
            single: list[Any] = []
            grouped: dict[str, list[Any]] = {}
            for row in rows:
                if getattr(self.channels[row.channel], "max_batch", 0) > 1:
                    grouped.setdefault(row.channel, []).append(row)
                else:
                    single.append(row)
            jobs = [self._deliver(row) for row in single]
            for name, group in grouped.items():
                size = int(self.channels[name].max_batch)
                jobs.extend(self._deliver_batch(name, group[i : i + size]) for i in range(0, len(group), size))
            await asyncio.gather(*jobs)
        return len(rows)

    def _hold(self, row: Any, now: datetime) -> bool:
        for policy in self.hold_policies:
            later = policy(row, now)
            if later is not None:
                self._record(row, {"status": "pending", "next_attempt_at": later})
                return True
        return False

    async def _deliver(self, row: Any) -> None:
        async with self._sem:
            if self._stopping:  # not started yet: hand the row back instead of sending it late
                self._record(row, {"status": "pending", "next_attempt_at": utcnow()})
                return
            if self._hold(row, utcnow()):
                return
            channel = self.channels[row.channel]
            try:
                provider_id = await channel.send(_reply_of(row))
            except Exception as exc:  # noqa: BLE001 - DeliveryError, or a bug that must not kill the worker
                self._failed(row, exc)
                return
            self._sent(row, provider_id)

    async def _deliver_batch(self, name: str, rows: list[Any]) -> None:
        """Send a group of rows of one channel with one ``send_batch`` call; outcomes per row."""
        async with self._sem:
            now = utcnow()
            if self._stopping:  # not started yet: hand the rows back
                for row in rows:
                    self._record(row, {"status": "pending", "next_attempt_at": now})
                return
            channel = self.channels[name]
            todo: list[Any] = []
            replies: list[Reply] = []
            for row in rows:
                if self._hold(row, now):
                    continue
                try:
                    reply = _reply_of(row)
                except Exception as exc:  # noqa: BLE001 - a broken payload fails alone
                    self._failed(row, exc)
                    continue
                todo.append(row)
                replies.append(reply)
            if not replies:
                return
            try:
                results = list(await channel.send_batch(replies))
                if len(results) != len(replies):
                    raise RuntimeError(f"send_batch returned {len(results)} results for {len(replies)} replies")
            except Exception as exc:  # noqa: BLE001 - the whole call failed: every row gets that outcome
                log.warning("batch delivery failed channel=%s rows=%d first_outbox_id=%s error=%r",
                            name, len(replies), todo[0].id, exc)
                results = [exc] * len(replies)
            whole = len(results) > 1 and all(r is results[0] for r in results)  # logged once above
            for row, result in zip(todo, results):
                if isinstance(result, BaseException):
                    self._failed(row, result, quiet=whole)
                else:
                    self._sent(row, result)

    def _sent(self, row: Any, provider_id: str | None) -> None:
        labelled(MESSAGES_OUT, row.channel, "sent").inc()
        if row.kind != "reply":
            labelled(NOTICES_SENT, row.channel, row.kind).inc()
        if _send_log_std.isEnabledFor(logging.INFO):  # one line per send: built only when written
            _send_log.info("sent", outbox_id=row.id, channel=row.channel, kind=row.kind, attempt=row.attempts + 1,
                           request_id=_request_id_of(row))
        self._record(row, {"status": "sent", "attempts": row.attempts + 1, "provider_id": provider_id, "sent_at": utcnow()})

    def _failed(self, row: Any, exc: BaseException, *, quiet: bool = False) -> None:
        attempts = row.attempts + 1
        if isinstance(exc, DeliveryError):
            dead = not exc.retryable or attempts >= self.max_attempts
            if not quiet:
                log.warning(
                    "delivery failed channel=%s outbox_id=%s attempt=%s retryable=%s error=%s",
                    row.channel, row.id, attempts, exc.retryable, exc,
                )
            error = str(exc)
        else:
            if not quiet:
                log.error("channel %s crashed sending outbox_id=%s: %r", row.channel, row.id, exc, exc_info=exc)
            dead = attempts >= self.max_attempts
            error = repr(exc)
        code = getattr(exc, "code", None)
        if code:
            PLATFORM_ERRORS.labels(row.channel, str(code)[:40]).inc()
        MESSAGES_OUT.labels(row.channel, "dead" if dead else "retry").inc()
        (DEAD_LETTERS if dead else OUTBOX_RETRIES).labels(row.channel).inc()
        self._record(
            row,
            {
                "status": "dead" if dead else "pending",
                "attempts": attempts,
                "last_error": error[:2000],
                "next_attempt_at": utcnow() + backoff(attempts),
            },
            exc if dead else None,
        )

    # --- outcome recording ---------------------------------------------------------------
    def _record(self, row: Any, values: dict[str, Any], dead_error: BaseException | None = None) -> None:
        self._outcomes.append((row, values, dead_error))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="outbox-flush")

    async def _flush_loop(self) -> None:
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            try:
                await self._write(batch)
            except Exception:  # noqa: BLE001 - rows stay 'sending' and are retried after the lease
                log.exception("outbox: recording %d outcome(s) failed", len(batch))

    async def _flushed(self) -> None:
        """Wait for the flush in progress (or start one)."""
        if self._flusher is None or self._flusher.done():
            if not self._outcomes:
                return
            self._flusher = asyncio.create_task(self._flush_loop(), name="outbox-flush")
        await asyncio.shield(self._flusher)

    async def _drain(self) -> None:
        """Wait until every recorded outcome is written."""
        while self._outcomes or (self._flusher is not None and not self._flusher.done()):
            await self._flushed()

    async def _write(self, batch: list[tuple[Any, dict[str, Any], BaseException | None]]) -> None:
        table = OutboxMessage.__table__
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row, values, _ in batch:
            keys = tuple(sorted(values))
            groups.setdefault(keys, []).append({"b_id": row.id, **{f"b_{k}": v for k, v in values.items()}})
        async with self.sessionmaker() as session, session.begin():
            postgres = session.bind.dialect.name == "postgresql"
            for keys, params in groups.items():
                if postgres and len(params) > 1:
                    await session.execute(_unnest_update(table, keys, params))
                    continue
                stmt = (
                    update(table)
                    .where(table.c.id == bindparam("b_id"), table.c.status == "sending")
                    .values({k: bindparam(f"b_{k}") for k in keys})
                )
                await session.execute(stmt, params)
            for row, values, error in batch:
                if error is None or values.get("status") != "dead":
                    continue
                for hook in self.dead_letter_hooks:
                    try:
                        async with session.begin_nested():
                            await hook(session, row, error)
                    except Exception:  # noqa: BLE001 - a broken hook must not lose the outcomes
                        log.exception("dead-letter hook failed for outbox_id=%s", row.id)

    async def _finish(self, row_id: int, **values: object) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id, OutboxMessage.status == "sending")
                .values(**values)
            )


def _unnest_update(table: Any, keys: tuple[str, ...], params: list[dict[str, Any]]) -> Any:
    """One PostgreSQL statement for a group of outcomes with the same columns:

    ``UPDATE outbox SET k = v.k ... FROM (SELECT unnest(:ids) AS id, unnest(:ks) AS k ...) v
    WHERE outbox.id = v.id AND outbox.status = 'sending'`` — arrays bound once instead of one
    execution per row (same effect as the executemany used elsewhere).
    """
    v = unnest_rows(table, {k: [p[f"b_{k}"] for p in params] for k in ("id", *keys)}).subquery("v")
    return (
        update(table)
        .where(table.c.id == v.c.id, table.c.status == "sending")
        .values({k: v.c[k] for k in keys})
    )
