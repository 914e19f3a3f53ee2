"""Commit a decided turn: the tracker store's plans, the replies and the inbound row, in one transaction.

The statement plans of concurrent conversations are written together (``_commit_statements``):
one transaction, one executemany per statement, one INSERT of every reply. A failed group is
retried turn by turn, so a failure fails only its own turn. Under leases (PostgreSQL, several
processes) the same transaction also closes each turn's row and picks its conversation's next
row or releases its lease, one statement for the group; one process on SQLite closes the rows
in one statement. A grouped
write costs a fraction of a turn written alone: the BEGIN, the COMMIT and each statement's
round trip are shared. Session plans (a new identity, a handoff) take one ORM transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from bot.db import in_transaction
from bot.inbound_store import (
    DELIVERED_HELD_P, FINISH_ROW, FINISH_ROW_P, HOLD_ROW_P, INSERT_RETURNING, MARK_INLINE_P, dialect_name, insert_stmt,
)
from bot.precompiled import Precompiled
from bot.models import OutboxMessage
from bot.dialogue.tracker_store import StatementPlan, TrackerStore
from bot.dialogue.turn import Committed, TurnResult
from channels.base import Message, Reply
from common.clock import utcnow
from bot.pipeline.shared import (
    _let_others_join, _Fetched, _task_of_no_request, _request_id_of, INSERT_CHUNK,
)

log = logging.getLogger("powerbot.pipeline")


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
    lease_of: str | None = None  # the conversation whose lease the turn holds (PostgreSQL)
    next_row: Any = None  # written under a lease: the conversation's next waiting row, if any


def _cancel_waiting(items: list[_TurnWrite]) -> None:
    for item in items:
        if not item.fut.done():
            item.fut.cancel()


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


def _with_request_id(payload: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    """A reply's payload carrying the request id in its metadata (the outbox logs it on send)."""
    if request_id is not None:
        payload["metadata"] = {**(payload.get("metadata") or {}), "request_id": request_id}
    return payload


class TurnCommits:
    """Part of ``Pipeline`` (``bot.pipeline.pipeline``): the state it uses is set up there."""

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
        """A statement plan with the replies, grouped with the turns of concurrent
        conversations; under a lease the transaction also selects the conversation's next row
        or releases the lease. None: the plan missed."""
        item = _TurnWrite(stmts=plan.stmts, replies=list(replies), row=row, waiting=row.id in self._waiters,
                          fut=asyncio.get_running_loop().create_future(), prepare=plan.prepare,
                          lease_of=message.conversation_id if shared else None)
        missed: tuple[type[BaseException], ...] = (_RowcountMismatch, IntegrityError) if plan.miss_on_integrity \
            else (_RowcountMismatch,)
        try:
            if self._group_turns:
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
                         next_row=item.next_row)

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

    async def _write_turns(self, items: list[_TurnWrite]) -> None:
        """Write the turns in one transaction: each statement once with every turn's rows
        (executemany), all replies in one INSERT, all inbound rows closed; raises
        ``_RowcountMismatch`` (nothing written) when a guarded statement missed.

        Turns under a lease (``lease_of``) also get their conversation's next waiting row
        (``next_row``), or the lease released when there is none."""
        leased = items[0].lease_of is not None  # one process is all leased or all not
        engine = self.sessionmaker.kw["bind"]
        # each statement with every turn's parameters and expected row count
        groups: dict[int, tuple[Any, list[tuple[list[dict[str, Any]], int | None]]]] = {}
        for item in items:
            for stmt, params, expect in item.stmts:
                groups.setdefault(id(stmt), (stmt, []))[1].append((params, expect))
        now = utcnow()
        # one process, no lease: a waited-for turn's replies are held on its row (module docstring)
        hold = not leased and not self.cross_process
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

        def write(conn: Any) -> tuple[dict[tuple[str, str], int], list[Any]]:
            for item in items:
                if item.prepare is not None:
                    item.prepare(conn)
            if marks:
                MARK_INLINE_P.run(conn, {"b_ids": marks, "b_now": now})
            if held_marks:
                DELIVERED_HELD_P.run(conn, {"b_ids": held_marks})
            # SQLite's executemany counts the rows it changed; PostgreSQL's (asyncpg) does not, so
            # there a guarded statement runs once per turn, still inside the one transaction
            summed = conn.dialect.name == "sqlite"
            for stmt, entries in groups.values():
                guarded = all(expect is not None for _, expect in entries)
                if guarded and not summed and len(entries) > 1 and all(len(p) == 1 for p, _ in entries):
                    # one parameter set per turn: a statement that reports each set's count runs once
                    each = getattr(stmt, "run_each", None)
                    counts = each(conn, [p[0] for p, _ in entries]) if each is not None else None
                    if counts is not None:
                        if counts != [e for _, e in entries]:
                            raise _RowcountMismatch()
                        continue
                if guarded and not summed:
                    runs = [(p, e) for p, e in entries if p]
                else:
                    runs = [([p for ps, _ in entries for p in ps], sum(e or 0 for _, e in entries))]
                for params, expect in runs:
                    if not params:
                        continue
                    one = params[0] if len(params) == 1 else params
                    res = stmt.run(conn, one) if isinstance(stmt, Precompiled) else conn.execute(stmt, one)
                    if guarded and res.rowcount != expect:
                        raise _RowcountMismatch()
            got: dict[tuple[str, str], int] = {}
            if out_values:
                got = {(ch, key): oid for oid, ch, key in
                       INSERT_RETURNING[OutboxMessage.__tablename__].run(conn, out_values).all()}
            if not leased:
                if finish:
                    FINISH_ROW_P.run(conn, finish)
                if held_rows:
                    HOLD_ROW_P.run(conn, held_rows)
                return got, []
            # under leases nothing is held: every turn has its row in ``finish``
            return got, self._finish_all_and_next(conn, [(item.lease_of, row_values)
                                                         for item, row_values in zip(items, finish)], fetched)

        fetched: _Fetched = {}
        try:
            got, nexts = await in_transaction(engine, write)
        except BaseException:
            self._late_marks[:0] = marks
            self._late_held[:0] = held_marks
            raise
        self._keep_prefetched(fetched)
        for item, k in zip(items, keys):
            item.queued = [(got[(r.channel, key)], r) for r, key in zip(item.replies, k) if (r.channel, key) in got]
        for item, nxt in zip(items, nexts):
            item.next_row = nxt

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
