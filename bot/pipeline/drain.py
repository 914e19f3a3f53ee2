"""One conversation at a time, in order: in this process (a lock), or across processes (a lease).

With leases (PostgreSQL), taking the lease and selecting the oldest waiting row is one
statement, and the turn's commit also selects the next row and, when there is none, releases
the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection

from bot import outbox
from bot.db import each_committed, in_transaction
from bot.inbound_store import (
    FINISH_ALL_NEXT_OR_RELEASE_PG, FINISH_ROW, LEASE_AND_NEXT_PG, NEXT_OR_RELEASE_PG, NEXT_ROW, RELEASE_LEASE, lease_stmt,
)
from bot.models import ConversationLease
from common.clock import utcnow
from bot.pipeline.shared import (
    _Fetched, _task_of_no_request,
)
from bot.pipeline.slots import deadline_after

log = logging.getLogger("powerbot.pipeline")


# A lease is renewed every third of its life while its conversation drains (a long turn keeps
# it); a crashed owner's conversations are taken over once it expires.
LEASE_TTL = timedelta(seconds=20)

LEASE_WAIT_SECONDS = 30.0


class ConversationDrain:
    """Part of ``Pipeline`` (``bot.pipeline.pipeline``): the state it uses is set up there."""

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = _task_of_no_request(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, conversation_id: str, deadline: float | None = None) -> None:
        """Process every waiting message of one conversation, oldest first; its turns take
        their slots by ``deadline`` (``bot.pipeline.slots``; None: nobody waits)."""
        if deadline is None:
            deadline = deadline_after(None)
        if self.cross_process:
            await self._drain_shared(conversation_id, deadline)
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
                ok, _ = await self._process_one(row, deadline=deadline)
                if not ok:
                    st.clean = False
                    return

    async def _oldest(self, conversation_id: str) -> Any:
        async with self.sessionmaker() as session:
            return (await session.execute(NEXT_ROW, {"b_cid": conversation_id})).first()

    async def _drain_shared(self, conversation_id: str, deadline: float) -> None:
        """Drain under the cross-process lease (PostgreSQL: several gateway processes).

        The turn slot is taken before the lease and kept while the conversation drains: a
        lease taken while every slot is busy would sit idle (renewed, its prefetched snapshot
        going stale) and keep other processes from the conversation. While another owner holds
        the lease the slot is given back between tries."""
        async with self.locks(conversation_id):
            loop = asyncio.get_running_loop()
            give_up_at = loop.time() + LEASE_WAIT_SECONDS
            delay = 0.02
            await self._active.acquire(deadline)
            slot = True
            try:
                while True:
                    owned, row = await self._lease_and_oldest(conversation_id)
                    if owned:
                        break
                    self._active.release()
                    slot = False
                    if loop.time() > give_up_at:
                        return  # the recovery loop will come back for it
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    await self._active.acquire(deadline)
                    slot = True
                await self._drain_leased(conversation_id, row)
            finally:
                if slot:
                    self._active.release()

    async def _drain_leased(self, conversation_id: str, row: Any) -> None:
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
                got = LEASE_AND_NEXT_PG.run(conn, {
                    "b_cid": conversation_id, "b_owner": self.owner, "b_expires": params["expires_at"],
                    "b_now": now, "b_limit": 1}).first()  # always one row (outer joins)
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

    def _finish_all_and_next(self, conn: Any, turns: list[tuple[str, dict[str, Any]]], fetched: _Fetched) -> list[Any]:
        """``_next_or_release`` with ``finish`` for a group of turns, each under its
        conversation's lease (``turns``: (conversation, ``FINISH_ROW`` values)), in the caller's
        transaction: on PostgreSQL one statement for all of them. The next rows, in order."""
        if conn.dialect.name != "postgresql":
            return [self._next_or_release(conn, cid, fetched, finish=finish) for cid, finish in turns]
        nexts = self._finish_all_pg(conn, turns)
        for (cid, _), nxt in zip(turns, nexts):
            if nxt is not None:
                self._prefetch_next(conn, cid, nxt, fetched)
        return nexts

    def _finish_all_pg(self, conn: Any, turns: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """PostgreSQL: ``FINISH_ALL_NEXT_OR_RELEASE_PG`` for ``turns``; the next rows, in order."""
        got = FINISH_ALL_NEXT_OR_RELEASE_PG.run(conn, {
            "b_ids": [finish["b_id"] for _, finish in turns],
            "b_attempts": [finish["b_attempts"] for _, finish in turns],
            "b_cids": [cid for cid, _ in turns], "b_now": turns[0][1]["b_now"], "b_owner": self.owner,
        }).all()
        by_conversation = {row.conversation_id: row for row in got}
        return [by_conversation.get(cid) for cid, _ in turns]

    def _finish_and_next(self, db: Any, dialect: str, finish: dict[str, Any], conversation_id: str) -> Any:
        """Mark the turn's row done, then the next waiting row or the lease released (``db``: a
        synchronous ``Connection`` or ``Session`` in the caller's transaction); one statement
        on PostgreSQL (the group's, for one turn)."""
        if dialect == "postgresql":
            conn = db if isinstance(db, Connection) else db.connection()
            return self._finish_all_pg(conn, [(conversation_id, finish)])[0]
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
