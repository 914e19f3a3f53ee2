"""Answers a channel waits for: the replies of a turn handed back inline, and marked delivered.

On SQLite in one process the replies of a waited-for turn are not queued in the outbox at all:
the turn's events record them and its inbound row is left ``held`` until the end of the inline
grace. The channel's inline answer marks the row done (grouped with the next turn write, or
flushed ``MARK_FLUSH_SECONDS`` later); a row still held after the grace (no answer, a crash)
goes back to ``received``, and its turn, found recorded, replays the replies into the outbox.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import select

from bot.db import each_committed, in_transaction
from bot.inbound_store import (
    DELIVERED_HELD_P, MARK_INLINE_P,
)
from bot.models import InboundMessage, OutboxMessage
from channels.base import Receipt, Reply
from common.clock import utcnow
from common.metrics import MESSAGES_OUT, labelled
from bot.pipeline.shared import (
    _settled, _answer, INSERT_CHUNK,
)

log = logging.getLogger("powerbot.pipeline")


# Inline deliveries announced with ``delivered_inline`` are marked in the next grouped turn
# write, or by a flush this many seconds later: far inside ``inline_grace``.
MARK_FLUSH_SECONDS = 0.2


class InlineAnswers:
    """Part of ``Pipeline`` (``bot.pipeline.pipeline``): the state it uses is set up there."""

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
            labelled(MESSAGES_OUT, reply.channel, "inline").inc()
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
            labelled(MESSAGES_OUT, reply.channel, "inline").inc()
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
                # one statement (PostgreSQL holds no rows): committed on its own, no BEGIN/COMMIT
                run = each_committed if not (ids and held) else in_transaction
                outbox_won, held_won = await run(self.sessionmaker.kw["bind"], write)
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
