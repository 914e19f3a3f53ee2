"""Inbound rows: stored before anything else happens, by one group-commit writer.

Concurrent requests' rows go in one multi-row ``INSERT .. ON CONFLICT DO NOTHING RETURNING``
(duplicates are the keys that did not return); a failing group is split until the bad row fails
alone. In one process without leases (SQLite) the pipeline remembers, per conversation, which of
its own rows still wait (``_ConvState``): when it knows a conversation has no other backlog it
processes the row it just inserted without selecting it again, and reads the turn's snapshot in
the insert's own transaction (prefetch).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any


from bot.db import each_committed, in_transaction
from bot.inbound_store import (
    INSERT_RETURNING, WAITING_IN,
)
from bot.models import InboundMessage
from channels.base import InvalidMessage, Message, Receipt, SideWrite, clean_json, clean_text, is_clean
from common.clock import utcnow
from common.metrics import MESSAGES_IN, labelled
from common.observe import current_request_id
from bot.pipeline.shared import (
    _let_others_join, TurnPrefetch, _Fetched, _Inbound, _Row, _ConvState, _task_of_no_request, _ROW_FIELDS, INSERT_CHUNK,
)
from bot.pipeline.slots import deadline_after

log = logging.getLogger("powerbot.pipeline")


MAX_REMEMBERED_CONVERSATIONS = 50_000

# A prefetched read older than this is not handed to the turn (say the row waited for a retry).
PREFETCH_FRESH_SECONDS = 1.0


class InboundQueue:
    """Part of ``Pipeline`` (``bot.pipeline.pipeline``): the state it uses is set up there."""

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

    async def receive(self, message: Message, *, wait: float | None = None, also: Sequence[SideWrite] = ()) -> Receipt:
        """Persist the message (and the channel's side writes ``also``, in the same
        transaction); process it; return replies if ready within ``wait`` seconds.

        Replies not returned inline are delivered by the outbox after ``inline_grace``.

        Whatever a channel hands over is stored only as clean text: the message's text and
        metadata are cleaned (``clean_text``); a sender or message id that is not clean text
        raises ``InvalidMessage`` (the channel answers 4xx) and nothing is stored.
        """
        if not (is_clean(message.sender_id) and is_clean(message.message_id)):
            labelled(MESSAGES_IN, message.channel, "invalid").inc()
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
        self._insert_q.append(_Inbound(values, inserted, fut, also, deadline_after(wait)))
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
            labelled(MESSAGES_IN, message.channel, "duplicate").inc()
            log.info("duplicate inbound channel=%s message_id=%s", message.channel, message.message_id)
            return Receipt(duplicate=True, replies=None)
        labelled(MESSAGES_IN, message.channel, "accepted").inc()
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
                for item in batch:
                    st = self._conv(item.values["conversation_id"])
                    if not st.clean and not st.pending:
                        probe.add(item.values["conversation_id"])
            await self._insert_group(batch, probe)

    async def _insert_group(self, batch: list[_Inbound], probe: set[str]) -> None:
        """Write one group of queued inbound rows; a group that fails is split in halves and
        each written again, so one row the store refuses fails only its own sender."""
        side = [w for item in batch for w in item.also]
        try:
            ids, clean = await self._insert_batch([item.values for item in batch], probe, side)
        except asyncio.CancelledError:
            self._fail_inserts(batch, None)
            raise
        except Exception as exc:  # noqa: BLE001 - isolated below, else its caller hears about it
            if len(batch) == 1:
                log.warning("inbound row refused by the store channel=%s: %r", batch[0].values["channel"], exc)
                self._fail_inserts(batch, exc)
                return
            half = len(batch) // 2
            for part in (batch[:half], batch[half:]):
                await self._insert_group(part, {item.values["conversation_id"] for item in part} & probe)
            return
        for cid in clean:
            self._conv(cid).clean = True
        for w in side:
            if w.done is not None:
                w.done()
        for item, inbound_id in zip(batch, ids):
            values, fut, cid = item.values, item.fut, item.values["conversation_id"]
            st = self._conv(cid)
            st.inflight -= 1
            if inbound_id is not None:
                if fut is not None and not fut.done():
                    self._waiters[inbound_id] = fut
                if not self.cross_process:
                    bisect.insort(st.pending, inbound_id)
                    st.rows[inbound_id] = _Row(id=inbound_id, **{k: values[k] for k in _ROW_FIELDS})
                self._spawn(self.drain(cid, item.deadline))
            if not item.inserted.done():
                item.inserted.set_result(inbound_id)

    def _fail_inserts(self, batch: list[_Inbound], exc: BaseException | None) -> None:
        """Tell the callers of rows that were not stored (``exc`` None: cancelled)."""
        for item in batch:
            self._conv(item.values["conversation_id"]).inflight -= 1
            if not item.inserted.done():
                if exc is None:
                    item.inserted.cancel()
                else:
                    item.inserted.set_exception(exc)

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
        # the insert alone (no side writes, nothing to probe or prefetch: PostgreSQL's REST
        # traffic) is one statement, committed on its own: no BEGIN/COMMIT round trips
        alone = not by_statement and not probe and (self.cross_process or self._prefetch is None)
        got, waiting = await (each_committed if alone else in_transaction)(self.sessionmaker.kw["bind"], write)
        self._keep_prefetched(fetched)  # only what a committed transaction read
        new: dict[str, int] = defaultdict(int)
        for row_id, channel, sender, key in got:
            n = first[(channel, sender, key)]
            out[n] = row_id
            new[rows[n]["conversation_id"]] += 1
        return out, {cid for cid in probe if new.get(cid, 0) and waiting.get(cid, 0) == new[cid]}

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
