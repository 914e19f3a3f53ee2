"""Retention: finished messages and old conversation history are deleted, not kept forever.

Every customer message leaves an inbound row, every answer and notice an outbox row, every
turn about five dialogue events. Nothing else ever deletes them: at a utility's volume the
store grows by millions of rows a month, and on SQLite every index page the hot path touches
gets colder. What is deleted:

- ``inbound_messages`` that are finished (``done``/``failed``) and older than
  ``retention_days`` (by ``received_at``). Platform retries come within seconds (WeChat),
  hours (Alipay) or a few days (mail servers), so the dedupe key is long past use.
- ``outbox`` rows that are finished (``sent``/``delivered``/``dead``/``cancelled``) and older
  than ``retention_days`` (by ``created_at``). Rows still ``pending`` or ``sending`` stay,
  however old (a notice held for quiet hours, a channel down for a week).
- ``dlg_events`` (the conversation history the console shows) older than
  ``history_retention_days``. Tracker state, bindings, handoffs and the console's audit log
  are not touched.
- the tables a channel owns, as the channel declares (``channels.base.Purge`` on its
  ``Channel.purges``, collected by the app wiring: ``bot.app.channel_purges``) — the SMS
  channel's ``sms_parts``, kept for delivery reports, go after ``retention_days``.

Each table's owner says how its rows go: a ``Purge`` (name, which policy field keeps the rows,
and the coroutine that deletes them) registered here (``register``) or declared by a channel.
The bot's tables are walked in primary-key order from the oldest, a batch per transaction,
and the walk stops at the first row newer than the cutoff: a run costs what it deletes, not
the table's size (none of these tables has an index on its time column, and none is needed). Between
batches the event loop serves other work, so the hot path's writes are not held up behind a
large first purge. Running it in several gateway processes at once is harmless (a row is
deleted once; the others find it gone).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web
from sqlalchemy import Table, and_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.db import in_transaction
from bot.dialogue.store import Event
from bot.models import InboundMessage, OutboxMessage

log = logging.getLogger(__name__)

INBOUND_FINISHED = ("done", "failed")
OUTBOX_FINISHED = ("sent", "delivered", "dead", "cancelled")


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep (0 = keep forever) and rows per delete transaction."""

    finished_days: int = 30
    history_days: int = 365
    batch_size: int = 1000


@dataclass(frozen=True)
class Purge:
    """How the old rows of one table go (the same shape as ``channels.base.Purge``, which a
    channel declares for its own tables).

    ``keep``: ``"finished"`` (kept ``RetentionPolicy.finished_days``) or ``"history"``
    (``history_days``). ``run(engine, cutoff, batch_size, dry_run)`` deletes (or counts) the
    rows older than ``cutoff`` and returns how many."""

    name: str
    keep: str
    run: Callable[[AsyncEngine, datetime, int, bool], Awaitable[int]]


_KEEP_FIELDS = {"finished": "finished_days", "history": "history_days"}
_REGISTERED: dict[str, Any] = {}


def register(purge: Any) -> None:
    """Register a table owner's purge (a ``Purge``, or anything of its shape); a later one
    with the same name replaces it."""
    if purge.keep not in _KEEP_FIELDS:
        raise ValueError(f"purge {purge.name!r}: keep must be one of {sorted(_KEEP_FIELDS)}")
    _REGISTERED[purge.name] = purge


def purges() -> list[Any]:
    """The registered purges, then the channels' (as the app wiring collects them)."""
    from bot.app import channel_purges

    found = dict(_REGISTERED)
    for p in channel_purges():
        found.setdefault(p.name, p)
    return list(found.values())


def walk_by_id(table: Table, time_column: str, finished: tuple[str, ...] | None
               ) -> Callable[[AsyncEngine, datetime, int, bool], Awaitable[int]]:
    """A purge of a table with an increasing integer ``id`` (ids follow insertion time): rows
    older than the cutoff whose ``status`` is one of ``finished`` (None: every old row)."""

    async def run(engine: AsyncEngine, cutoff: datetime, batch_size: int, dry_run: bool) -> int:
        return await _purge_table(engine, table, time_column, finished, cutoff, batch_size, dry_run)

    return run


register(Purge("inbound_messages", "finished", walk_by_id(InboundMessage.__table__, "received_at", INBOUND_FINISHED)))
register(Purge("outbox", "finished", walk_by_id(OutboxMessage.__table__, "created_at", OUTBOX_FINISHED)))
register(Purge("dlg_events", "history", walk_by_id(Event.__table__, "created_at", None)))


async def purge(
    sessionmaker: async_sessionmaker[AsyncSession],
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
) -> dict[str, int]:
    """Delete (or, with ``dry_run``, count) what the policy lets go; rows per table."""
    now = now or datetime.now(timezone.utc)
    engine = sessionmaker.kw["bind"]
    out: dict[str, int] = {}
    for p in purges():
        days = getattr(policy, _KEEP_FIELDS[p.keep])
        if days <= 0:
            continue
        out[p.name] = await p.run(engine, now - timedelta(days=days), policy.batch_size, dry_run)
    return out


async def _purge_table(engine: Any, t: Table, time_column: str, finished: tuple[str, ...] | None,
                       cutoff: datetime, batch_size: int, dry_run: bool) -> int:
    id_col, time_col = t.c.id, t.c[time_column]
    old = time_col < cutoff
    doomed_if = old if finished is None else and_(old, t.c.status.in_(finished))
    page = (
        select(id_col, doomed_if.label("doomed"), old.label("old"))
        .order_by(id_col)
        .limit(batch_size)
    )
    deleted = 0
    after = 0
    while True:
        stmt = page.where(id_col > after)

        def batch(conn: Any, stmt: Any = stmt) -> tuple[int, int, bool]:
            rows = conn.execute(stmt).all()
            if not rows:
                return 0, after, True
            ids = [r.id for r in rows if r.doomed]
            if ids and not dry_run:
                # the same test again in the DELETE: a row that changed since is kept
                conn.execute(t.delete().where(id_col.in_(ids), doomed_if))
            # stop at the first row newer than the cutoff: the rest are newer still
            return len(ids), rows[-1].id, not all(r.old for r in rows)

        n, last, done = await in_transaction(engine, batch)
        deleted += n
        if done:
            return deleted
        after = last
        await asyncio.sleep(0)  # let the hot path's transactions in between batches


class RetentionTask:
    """Runs ``purge`` in the background: first a few seconds after start, then every
    ``interval`` seconds (with some jitter, so several processes do not run in step).

    ``clock`` gives the "now" each run's cutoffs are measured from (an aware datetime; the
    wall clock by default). Tests pass a fixed one so the ages of their rows do not depend on
    the day they run; the timer itself always runs on the event loop's clock."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], policy: RetentionPolicy,
                 interval: float, *, first_delay: float = 30.0,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.sessionmaker, self.policy, self.interval, self.first_delay = sessionmaker, policy, interval, first_delay
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.runs = 0
        self.last: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and (self.policy.finished_days > 0 or self.policy.history_days > 0):
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        delay = self.first_delay
        while True:
            await asyncio.sleep(delay)
            delay = self.interval * random.uniform(0.9, 1.1)
            try:
                self.last = await purge(self.sessionmaker, self.policy, now=self.clock())
                self.runs += 1
                if any(self.last.values()):
                    log.info("retention purge: %s", ", ".join(f"{k} {v}" for k, v in self.last.items()))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed purge is tried again next round
                log.warning("retention purge failed", exc_info=True)


RETENTION = web.AppKey("retention", RetentionTask)


def policy_from(settings: Any) -> RetentionPolicy:
    return RetentionPolicy(finished_days=settings.retention_days, history_days=settings.history_retention_days)


def setup(app: web.Application) -> None:
    """Gateway feature: the background purge (after ``resources``: the store exists)."""
    from bot.app import SESSIONMAKER, SETTINGS

    async def ctx(app: web.Application):  # type: ignore[no-untyped-def]
        settings = app[SETTINGS]
        task = RetentionTask(app[SESSIONMAKER], policy_from(settings), settings.retention_interval_seconds,
                             first_delay=min(30.0, settings.retention_interval_seconds))
        app[RETENTION] = task
        task.start()
        yield
        await task.stop()

    app.cleanup_ctx.append(ctx)
