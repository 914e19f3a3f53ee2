"""Behaviour of the pipeline's fast paths (group commit, no re-select, folded lease) on both
stores: the guarantees stay — persisted first, deduped, ordered, each message processed once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot import outbox as outbox_mod
from bot.db import make_engine, make_sessionmaker
from bot.migrate import BOT_MIGRATIONS, upgrade
from bot.models import ConversationLease, InboundMessage, OutboxMessage
from bot.pipeline import Pipeline, RepliesOnly
from channels.base import Message, Reply


class Reading(RepliesOnly):
    """A replies-only handler (``inner``) whose tracker store reads the snapshot with the inner
    handler's ``prefetch`` and writes nothing of its own."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        super().__init__(inner)
        self.store = self

    def prefetch(self, conn, conversation_id: str, message_id: str, probe=None):  # type: ignore[no-untyped-def]
        return self.inner.prefetch(conn, conversation_id, message_id)

    async def retrieve(self, message, *, probe=None, prefetched=None):  # type: ignore[no-untyped-def]
        return prefetched

    def plans(self, result):  # type: ignore[no-untyped-def]
        return []


class Recorder:
    """Records (conversation, text) in processing order and the peak number of concurrent turns."""

    def __init__(self, delay: float = 0.0) -> None:
        self.seen: list[tuple[str, str]] = []
        self.delay = delay
        self.active = 0
        self.peak = 0

    async def handle(self, message: Message) -> list[Reply]:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            self.seen.append((message.conversation_id, message.text))
            return [Reply(channel=message.channel, recipient_id=message.sender_id, text=f"echo:{message.text}")]
        finally:
            self.active -= 1


def msg(text: str, mid: str, sender: str = "u1") -> Message:
    return Message(channel="rest", sender_id=sender, text=text, message_id=mid)


async def count(sm, model, *where) -> int:  # type: ignore[no-untyped-def]
    async with sm() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def test_burst_of_many_conversations_each_answered_once(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    handler = Recorder()
    p = Pipeline(sessionmaker, handler)
    msgs = [msg(f"t{c}-{i}", f"m{c}-{i}", sender=f"s{c}") for i in range(3) for c in range(40)]
    receipts = await asyncio.gather(*(p.receive(m, wait=20) for m in msgs))
    assert all(not r.duplicate and [x.text for x in r.replies or []] == [f"echo:{m.text}"] for r, m in zip(receipts, msgs))
    assert len(handler.seen) == len(msgs) == len(set(handler.seen))
    # per conversation: processing order == persist order
    async with sessionmaker() as s:
        persisted = (await s.execute(select(InboundMessage.conversation_id, InboundMessage.text).order_by(InboundMessage.id))).all()
    for c in range(40):
        cid = f"rest:s{c}"
        assert [t for k, t in handler.seen if k == cid] == [t for k, t in persisted if k == cid]
    assert await count(sessionmaker, InboundMessage, InboundMessage.status == "done") == len(msgs)
    assert await count(sessionmaker, OutboxMessage) == len(msgs)
    await p.stop()


async def test_same_message_twice_in_one_group_is_one_duplicate(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    handler = Recorder()
    p = Pipeline(sessionmaker, handler)
    r1, r2, r3 = await asyncio.gather(
        p.receive(msg("a", "dup1"), wait=10), p.receive(msg("a", "dup1"), wait=10), p.receive(msg("b", "other"), wait=10)
    )
    assert sorted([r1.duplicate, r2.duplicate]) == [False, True]
    assert not r3.duplicate
    assert handler.seen == [("rest:u1", "a"), ("rest:u1", "b")]
    assert await count(sessionmaker, InboundMessage) == 2
    # and a platform retry much later is still a duplicate
    assert (await p.receive(msg("a", "dup1"), wait=10)).duplicate
    assert len(handler.seen) == 2
    await p.stop()


async def test_leftover_of_a_crash_is_answered_before_the_new_message(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """A fresh process knows nothing about the store: an older waiting row goes first."""
    async with sessionmaker() as s, s.begin():
        s.add(InboundMessage(
            channel="rest", dedupe_key="old", sender_id="u1", conversation_id="rest:u1", kind="text",
            text="left behind", payload={}, status="received", attempts=0,
            next_attempt_at=outbox_mod.utcnow() - timedelta(minutes=1),
            received_at=outbox_mod.utcnow() - timedelta(minutes=1),
        ))
    handler = Recorder()
    p = Pipeline(sessionmaker, handler)
    r = await p.receive(msg("new one", "new"), wait=10)
    assert [x.text for x in r.replies or []] == ["echo:new one"]
    assert handler.seen == [("rest:u1", "left behind"), ("rest:u1", "new one")]
    # later messages of the now-known conversation take the fast path and stay in order
    await asyncio.gather(*(p.receive(msg(f"n{i}", f"n{i}"), wait=10) for i in range(5)))
    assert [t for _, t in handler.seen[2:]] == [f"n{i}" for i in range(5)]
    await p.stop()


async def test_mark_inline_group_reports_each_request(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    handler = Recorder()
    p = Pipeline(sessionmaker, handler)
    receipts = await asyncio.gather(*(p.receive(msg(f"x{i}", f"x{i}", sender=f"k{i}"), wait=10) for i in range(6)))
    ids = [r.outbox_ids for r in receipts]
    # one of them is delivered by the outbox first: its mark must say so, the others succeed
    async with sessionmaker() as s, s.begin():
        row = await s.get(OutboxMessage, ids[0][0])
        row.status = "sent"
    results = await asyncio.gather(*(p.mark_delivered_inline(r) for r in receipts))
    assert results == [False, True, True, True, True, True]
    assert await count(sessionmaker, OutboxMessage, OutboxMessage.provider_id == "inline") == 5
    await p.stop()


async def test_outbox_woken_only_for_replies_due_now(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    wakes: list[int] = []
    p = Pipeline(sessionmaker, Recorder(), on_enqueued=lambda: wakes.append(1))
    await p.receive(msg("inline", "w1"), wait=10)  # a channel waits: the reply is held for it
    assert wakes == []
    await p.receive(msg("later", "w2"), wait=0)  # nobody waits: due now, wake the worker
    await asyncio.sleep(0.3)
    assert wakes == [1]
    async with sessionmaker() as s:
        rows = (await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars().all()
    assert outbox_mod.as_aware(rows[0].next_attempt_at) > outbox_mod.utcnow() + timedelta(seconds=5)
    assert outbox_mod.as_aware(rows[1].next_attempt_at) <= outbox_mod.utcnow()
    await p.stop()


async def test_concurrent_turns_are_bounded(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    handler = Recorder(delay=0.05)
    p = Pipeline(sessionmaker, handler, max_active=3)
    await asyncio.gather(*(p.receive(msg("hi", f"b{i}", sender=f"c{i}"), wait=20) for i in range(12)))
    assert len(handler.seen) == 12
    assert handler.peak == 3
    await p.stop()


class Gate(Recorder):
    """A recorder whose first turn waits until ``open`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()

    async def handle(self, message: Message) -> list[Reply]:
        if not self.seen and message.text == "first":
            await self.open.wait()
        return await super().handle(message)


async def test_a_turn_whose_caller_waits_less_goes_first(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """The slots go earliest deadline first on both stores (under leases too): with the one slot
    busy, a message whose channel waits 2 s overtakes those queued before it whose channels
    wait 30 s or not at all."""
    handler = Gate()
    p = Pipeline(sessionmaker, handler, max_active=1)
    first = asyncio.create_task(p.receive(msg("first", "g0", sender="a"), wait=30))
    while p._active.free():  # the first turn holds the one slot
        await asyncio.sleep(0.01)
    queued = [asyncio.create_task(p.receive(msg("patient", "g1", sender="b"), wait=30)),
              asyncio.create_task(p.receive(msg("unwaited", "g2", sender="c"), wait=0))]
    while p._active.waiting() < 2:
        await asyncio.sleep(0.01)
    urgent = asyncio.create_task(p.receive(msg("urgent", "g3", sender="d"), wait=2))
    while p._active.waiting() < 3:
        await asyncio.sleep(0.01)
    handler.open.set()
    await asyncio.gather(first, urgent, *queued)
    while len(handler.seen) < 4:
        await asyncio.sleep(0.01)
    assert [text for _, text in handler.seen] == ["first", "urgent", "unwaited", "patient"]
    await p.stop()


async def test_lease_released_after_drain(postgres_url: str) -> None:
    await upgrade(postgres_url, BOT_MIGRATIONS)
    engine = make_engine(postgres_url)
    sm = make_sessionmaker(engine)
    p = Pipeline(sm, Recorder())
    assert p.cross_process
    for i in range(3):
        r = await p.receive(msg(f"q{i}", f"q{i}"), wait=10)
        assert [x.text for x in r.replies or []] == [f"echo:q{i}"]
    await asyncio.sleep(0.1)
    assert await count(sm, ConversationLease) == 0
    # a lease held by another (live) process makes this one wait; an expired one is taken over
    async with sm() as s, s.begin():
        s.add(ConversationLease(conversation_id="rest:u1", owner="other", expires_at=outbox_mod.utcnow() - timedelta(seconds=1)))
    r = await p.receive(msg("after takeover", "q9"), wait=10)
    assert [x.text for x in r.replies or []] == ["echo:after takeover"]
    assert await count(sm, ConversationLease) == 0
    await p.stop()
    await engine.dispose()


async def test_lease_and_oldest_in_one_statement(postgres_url: str) -> None:
    """PostgreSQL takes the lease and reads the oldest waiting row in one statement: a live
    lease of another owner gives neither; a free one gives the lease and the oldest row; with
    nothing waiting no lease is taken (nothing to do, nothing to release)."""
    await upgrade(postgres_url, BOT_MIGRATIONS)
    engine = make_engine(postgres_url)
    sm = make_sessionmaker(engine)
    p = Pipeline(sm, Recorder())
    try:
        async with sm() as s, s.begin():
            s.add(ConversationLease(conversation_id="rest:held", owner="other",
                                    expires_at=outbox_mod.utcnow() + timedelta(seconds=60)))
            for n, cid in enumerate(["rest:free", "rest:free", "rest:held"]):
                s.add(InboundMessage(channel="rest", dedupe_key=f"l{n}", sender_id=cid[5:], conversation_id=cid,
                                     kind="text", text=f"t{n}", payload={}, status="received", attempts=0,
                                     next_attempt_at=outbox_mod.utcnow(), received_at=outbox_mod.utcnow()))
        assert await p._lease_and_oldest("rest:held") == (False, None)
        owned, row = await p._lease_and_oldest("rest:free")
        assert owned and row.dedupe_key == "l0" and row.text == "t0" and row.payload == {}
        async with sm() as s:
            owners = dict((await s.execute(select(ConversationLease.conversation_id, ConversationLease.owner))).all())
        assert owners == {"rest:held": "other", "rest:free": p.owner}
        assert await p._lease_and_oldest("rest:idle") == (True, None)  # nothing waiting: nothing to do
        assert await count(sm, ConversationLease, ConversationLease.conversation_id == "rest:idle") == 0
        # nothing waiting and another owner's lease: nothing to do either, the lease untouched
        async with sm() as s, s.begin():
            s.add(ConversationLease(conversation_id="rest:quiet", owner="other",
                                    expires_at=outbox_mod.utcnow() + timedelta(seconds=60)))
        assert await p._lease_and_oldest("rest:quiet") == (True, None)
        async with sm() as s:
            assert (await s.get(ConversationLease, "rest:quiet")).owner == "other"
    finally:
        await p.stop()
        await engine.dispose()


async def test_taking_the_lease_sends_no_begin_or_commit(postgres_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL the lease statement and the snapshot read under it each commit on their
    own: asyncpg starts no transaction (no BEGIN, no COMMIT: two round trips of a message),
    the snapshot is read outside any transaction and the lease is visible to everyone at
    once; a snapshot read that fails leaves the lease taken and the row returned (the turn
    reads its snapshot itself)."""
    import asyncpg.transaction

    await upgrade(postgres_url, BOT_MIGRATIONS)
    engine = make_engine(postgres_url)
    sm = make_sessionmaker(engine)
    begins: list[str] = []
    start = asyncpg.transaction.Transaction.start

    async def counting_start(self):  # type: ignore[no-untyped-def]
        begins.append("BEGIN")
        return await start(self)

    monkeypatch.setattr(asyncpg.transaction.Transaction, "start", counting_start)
    reads: list[tuple[str, bool]] = []

    class Prefetching(Recorder):
        fail = False

        def prefetch(self, conn, conversation_id, message_id):  # type: ignore[no-untyped-def]
            reads.append((message_id, conn.connection.dbapi_connection._connection.is_in_transaction()))
            if self.fail:
                raise RuntimeError("snapshot read failed")
            return conn.execute(select(func.count()).select_from(InboundMessage)).scalar_one()

    handler = Prefetching()
    p = Pipeline(sm, Reading(handler))
    try:
        async with sm() as s, s.begin():
            for n, cid in enumerate(["rest:a", "rest:b"]):
                s.add(InboundMessage(channel="rest", dedupe_key=f"q{n}", sender_id=cid[5:], conversation_id=cid,
                                     kind="text", text=f"t{n}", payload={}, status="received", attempts=0,
                                     next_attempt_at=outbox_mod.utcnow(), received_at=outbox_mod.utcnow()))
        begins.clear()
        owned, row = await p._lease_and_oldest("rest:a")
        assert owned and row.dedupe_key == "q0"
        assert begins == [] and reads == [("q0", False)]
        assert await count(sm, ConversationLease, ConversationLease.owner == p.owner) == 1

        handler.fail = True
        owned, row = await p._lease_and_oldest("rest:b")
        assert owned and row.dedupe_key == "q1" and reads[-1] == ("q1", False)
        assert await count(sm, ConversationLease, ConversationLease.conversation_id == "rest:b") == 1
    finally:
        await p.stop()
        await engine.dispose()


async def test_a_lease_taken_by_a_cancelled_drain_is_given_back(postgres_url: str) -> None:
    """The lease statement commits by itself: when the drain is cancelled right after it (a
    stopping process) the lease is released, not left to expire."""
    await upgrade(postgres_url, BOT_MIGRATIONS)
    engine = make_engine(postgres_url)
    sm = make_sessionmaker(engine)

    class CancelledInRead(Recorder):
        def prefetch(self, conn, conversation_id, message_id):  # type: ignore[no-untyped-def]
            raise asyncio.CancelledError()

    p = Pipeline(sm, Reading(CancelledInRead()))
    try:
        async with sm() as s, s.begin():
            s.add(InboundMessage(channel="rest", dedupe_key="c1", sender_id="x", conversation_id="rest:x",
                                 kind="text", text="t", payload={}, status="received", attempts=0,
                                 next_attempt_at=outbox_mod.utcnow(), received_at=outbox_mod.utcnow()))
        with pytest.raises(asyncio.CancelledError):
            await p._lease_and_oldest("rest:x")
        for _ in range(100):
            if await count(sm, ConversationLease) == 0:
                break
            await asyncio.sleep(0.02)
        assert await count(sm, ConversationLease) == 0
    finally:
        await p.stop()
        await engine.dispose()


async def test_a_turn_marks_its_row_done_and_takes_the_next_in_one_statement(postgres_url: str) -> None:
    """PostgreSQL: at the end of a turn under the lease, marking the row done, selecting the
    next waiting row and releasing the lease when there is none are one statement. Three
    messages of one conversation queued together run in order, each marked done once; the
    lease is gone at the end; no turn sent a separate UPDATE of its inbound row."""
    from sqlalchemy import event

    await upgrade(postgres_url, BOT_MIGRATIONS)
    engine = make_engine(postgres_url)
    sm = make_sessionmaker(engine)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: statements.append(" ".join(statement.split())))
    slow = Recorder(delay=0.2)
    p = Pipeline(sm, slow)
    try:
        await asyncio.gather(*(p.receive(msg(f"m{i}", f"F{i}"), wait=10) for i in range(3)))
        assert slow.seen == [("rest:u1", "m0"), ("rest:u1", "m1"), ("rest:u1", "m2")]
        async with sm() as s:
            rows = (await s.execute(select(InboundMessage.status, InboundMessage.attempts)
                                    .order_by(InboundMessage.id))).all()
        assert rows == [("done", 1)] * 3
        assert await count(sm, ConversationLease) == 0
        folded = [x for x in statements if x.startswith("WITH finished AS (UPDATE inbound_messages")]
        alone = [x for x in statements if x.startswith("UPDATE inbound_messages SET status")]
        assert len(folded) == 3 and alone == [], (folded, alone)
    finally:
        await p.stop()
        await engine.dispose()


async def test_a_long_turn_keeps_its_lease_and_a_dead_owner_loses_it(postgres_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The lease is renewed while the conversation drains: a turn longer than the lease's life
    is not taken over by another process; without renewals (a dead owner) it expires."""
    import bot.pipeline.drain as pipeline_mod

    monkeypatch.setattr(pipeline_mod, "LEASE_TTL", timedelta(seconds=0.6))
    await upgrade(postgres_url, BOT_MIGRATIONS)
    engine = make_engine(postgres_url)
    sm = make_sessionmaker(engine)
    slow, other = Recorder(delay=2.0), Recorder()
    a, b = Pipeline(sm, slow), Pipeline(sm, other)
    assert a.owner != b.owner
    first = asyncio.create_task(a.receive(msg("slow", "L1"), wait=10))
    await asyncio.sleep(1.2)  # twice the lease's life into the slow turn
    owned, _ = await b._lease_and_oldest("rest:u1")
    assert not owned  # renewed: still a's
    r = await first
    assert [x.text for x in r.replies or []] == ["echo:slow"]
    assert await count(sm, ConversationLease) == 0
    # a lease nobody renews (its owner died, a message still waiting) is taken over after its life
    async with sm() as s, s.begin():
        s.add(ConversationLease(conversation_id="rest:u2", owner="dead", expires_at=outbox_mod.utcnow() + timedelta(seconds=0.6)))
        s.add(InboundMessage(channel="rest", dedupe_key="d1", sender_id="u2", conversation_id="rest:u2", kind="text",
                             text="left", payload={}, status="received", attempts=0,
                             next_attempt_at=outbox_mod.utcnow(), received_at=outbox_mod.utcnow()))
    assert await b._lease_and_oldest("rest:u2") == (False, None)
    await asyncio.sleep(0.8)
    owned, row = await b._lease_and_oldest("rest:u2")
    assert owned and row.text == "left"
    await a.stop()
    await b.stop()
    await engine.dispose()


class CommitsWithTurn:
    """A handler that writes its turn through a session plan, as the dialogue engine does for a
    turn beyond the common one; ``fail_after`` fails once the turn is committed, ``add_after``
    adds a notice after the turn (as the console wrapper does)."""

    probe = None

    def __init__(self, sm, *, fail_after: bool = False, add_after: bool = False) -> None:  # type: ignore[no-untyped-def]
        self.sm, self.fail_after, self.add_after = sm, fail_after, add_after
        self.store = self
        self.written: list[str] = []

    def prefetch(self, conn, conversation_id: str, message_id: str, probe=None):  # type: ignore[no-untyped-def]
        return None

    async def retrieve(self, message, *, probe=None, prefetched=None):  # type: ignore[no-untyped-def]
        return None

    def plans(self, result):  # type: ignore[no-untyped-def]
        from bot.dialogue.tracker_store import SessionPlan

        async def write(_session) -> None:  # type: ignore[no-untyped-def]
            self.written.append(result.message.message_id)

        return [SessionPlan(write)]

    async def decide(self, message: Message, snapshot):  # type: ignore[no-untyped-def]
        from bot.dialogue.turn import TurnResult

        return TurnResult(message=message, kind="turn", replies=[
            Reply(channel=message.channel, recipient_id=message.sender_id, text=f"turn:{message.text}")])

    async def after_commit(self, result, committed) -> list[Reply]:  # type: ignore[no-untyped-def]
        from bot.pipeline import TransientError

        assert committed.replies == result.replies
        if self.fail_after:
            raise TransientError("failed after the turn was committed")
        if self.add_after:
            return [Reply(channel=result.message.channel, recipient_id=result.message.sender_id, text="notice")]
        return []


async def test_replies_committed_with_the_turn(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    p = Pipeline(sessionmaker, CommitsWithTurn(sessionmaker))
    r = await p.receive(msg("a", "t1"), wait=10)
    assert [x.text for x in r.replies or []] == ["turn:a"]
    assert await count(sessionmaker, InboundMessage, InboundMessage.status == "done") == 1
    assert await count(sessionmaker, OutboxMessage) == 1
    await p.stop()


async def test_failure_after_the_turn_commit_is_not_a_retry(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    p = Pipeline(sessionmaker, CommitsWithTurn(sessionmaker, fail_after=True))
    r = await p.receive(msg("b", "t2"), wait=10)
    assert [x.text for x in r.replies or []] == ["turn:b"]  # no busy notice: the turn is done
    assert await count(sessionmaker, InboundMessage, InboundMessage.status == "done") == 1
    assert await count(sessionmaker, OutboxMessage) == 1
    await p.stop()


async def test_replies_added_after_the_turn_are_queued_behind(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    p = Pipeline(sessionmaker, CommitsWithTurn(sessionmaker, add_after=True))
    r = await p.receive(msg("c", "t3"), wait=10)
    assert [x.text for x in r.replies or []] == ["turn:c", "notice"]
    async with sessionmaker() as s:
        keys = (await s.execute(select(OutboxMessage.dedupe_key).order_by(OutboxMessage.id))).scalars().all()
    assert [k.rsplit(":", 1)[1] for k in keys] == ["0", "1"]
    await p.stop()


async def test_messages_arriving_in_the_next_loop_turns_join_the_insert(sessionmaker, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Requests are read over several turns of the event loop: a group commit waits two turns
    before taking its batch, so those ready in them share its transaction (one insert here,
    where taking the batch at once wrote two: 4 rows, then 8)."""
    batches: list[int] = []
    real = Pipeline._insert_batch

    async def recording(self, rows, probe, side=()):  # type: ignore[no-untyped-def]
        batches.append(len(rows))
        return await real(self, rows, probe, side)

    monkeypatch.setattr(Pipeline, "_insert_batch", recording)
    p = Pipeline(sessionmaker, Recorder())

    async def arrive(n: int) -> None:
        for _ in range(n % 3):  # read by the server 0, 1 or 2 loop turns after the first
            await asyncio.sleep(0)
        await p.receive(msg(f"t{n}", f"join-{n}", sender=f"j{n}"), wait=20)

    await asyncio.gather(*(arrive(n) for n in range(12)))
    assert batches == [12]
    if p.cross_process:  # PostgreSQL: every message was processed once all the same
        assert await count(sessionmaker, InboundMessage, InboundMessage.status == "done") == 12


async def test_side_writes_share_the_inbound_transaction(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """A channel's side write (WeChat's window renewal) is written in the transaction that
    stores the message: grouped messages renew their windows in one executemany, ``done`` runs
    after the commit, and a side write that fails takes the message down with it (nothing
    stored, nothing renewed) — the proof that both are one transaction."""
    from channels.base import SideWrite
    from channels.wechat_store import WeChatWindow, WindowLedger

    ledger = WindowLedger(sessionmaker)
    p = Pipeline(sessionmaker, Recorder())
    runs: list[int] = []
    renewals = [ledger.renewal(f"o{n}") for n in range(3)]
    assert all(renewals)
    statement = renewals[0].statement  # type: ignore[union-attr]
    real_run = statement.run

    def counting(conn, params):  # type: ignore[no-untyped-def]
        runs.append(len(params))
        return real_run(conn, params)

    statement.run = counting
    try:
        receipts = await asyncio.gather(*(
            p.receive(msg(f"t{n}", f"side-{n}", sender=f"o{n}"), wait=20, also=(w,)) for n, w in enumerate(renewals)
        ))
    finally:
        del statement.run
    assert all(r.replies for r in receipts)
    assert runs == [3]  # one executemany for the three
    assert await count(sessionmaker, WeChatWindow, WeChatWindow.openid.in_(["o0", "o1", "o2"])) == 3
    assert ledger.renewal("o1") is None  # done ran: renewed by this process just now
    assert (await ledger.state("o1")).open

    # a side write that fails: NOT NULL msg_left missing -> the message is not stored either
    broken = ledger.renewal("o9")
    assert broken is not None
    bad = SideWrite(broken.statement, {**broken.params, "msg_left": None}, broken.done)
    with pytest.raises(Exception):
        await p.receive(msg("lost", "side-bad", sender="o9"), wait=20, also=(bad,))
    assert await count(sessionmaker, InboundMessage, InboundMessage.dedupe_key == "side-bad") == 0
    assert await count(sessionmaker, WeChatWindow, WeChatWindow.openid == "o9") == 0
    assert ledger.renewal("o9") is not None  # not marked renewed
    await p.stop()


async def test_a_group_of_turns_closes_its_rows_and_picks_next_rows_in_one_statement(postgres_url: str) -> None:
    """PostgreSQL, the end of a grouped turn write: every finished row done, each conversation's
    next waiting row given (in the turns' order), the leases of conversations with nothing
    waiting released — another owner's lease untouched — with one statement for the group."""
    from sqlalchemy import event

    from bot.db import in_transaction

    await upgrade(postgres_url, BOT_MIGRATIONS)
    engine = make_engine(postgres_url)
    sm = make_sessionmaker(engine)
    p = Pipeline(sm, Recorder())
    now = outbox_mod.utcnow()
    try:
        async with sm() as s, s.begin():
            for n, cid in enumerate(["rest:a", "rest:a", "rest:b", "rest:c", "rest:a"]):
                s.add(InboundMessage(channel="rest", dedupe_key=f"f{n}", sender_id=cid[5:], conversation_id=cid,
                                     kind="text", text=f"t{n}", payload={"n": n}, status="received", attempts=0,
                                     next_attempt_at=now, received_at=now))
            for cid in ["rest:a", "rest:b"]:
                s.add(ConversationLease(conversation_id=cid, owner=p.owner, expires_at=now + timedelta(seconds=60)))
            s.add(ConversationLease(conversation_id="rest:c", owner="other", expires_at=now + timedelta(seconds=60)))
        async with sm() as s:
            ids = {r.dedupe_key: r.id for r in (await s.execute(select(InboundMessage))).scalars()}
        statements: list[str] = []
        listener = lambda *a: statements.append(a[2])  # noqa: E731
        event.listen(engine.sync_engine, "before_cursor_execute", listener)
        fetched: dict = {}
        turns = [("rest:b", {"b_id": ids["f2"], "b_now": now, "b_attempts": 1}),
                 ("rest:a", {"b_id": ids["f0"], "b_now": now, "b_attempts": 2})]
        nexts = await in_transaction(engine, lambda conn: p._finish_all_and_next(conn, turns, fetched))
        event.remove(engine.sync_engine, "before_cursor_execute", listener)
        assert [n.dedupe_key if n is not None else None for n in nexts] == [None, "f1"]
        assert nexts[1].payload == {"n": 1} and nexts[1].attempts == 0
        assert len(statements) == 1
        async with sm() as s:
            rows = {r.dedupe_key: r for r in (await s.execute(select(InboundMessage))).scalars()}
            leases = {lease.conversation_id: lease.owner for lease in (await s.execute(select(ConversationLease))).scalars()}
        assert {k: (r.status, r.attempts) for k, r in rows.items()} == {
            "f0": ("done", 2), "f1": ("received", 0), "f2": ("done", 1), "f3": ("received", 0), "f4": ("received", 0)}
        assert rows["f0"].processed_at is not None
        assert leases == {"rest:a": p.owner, "rest:c": "other"}  # b released; a has more to do
    finally:
        await p.stop()
        await engine.dispose()
