"""The hot path's economies keep the guarantees: grouped turn writes (SQLite), the one-statement
tracker snapshot with its rare-case fallbacks, and statements compiled once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest_asyncio
from sqlalchemy import bindparam, event, func, insert, select, update

from bot.db import make_engine, make_sessionmaker
from bot import outbox as outbox_mod
from bot.migrate import BOT_MIGRATIONS, upgrade
from bot.models import CacheEntry, ConversationLease, InboundMessage, OutboxMessage
from bot.dialogue.tracker_store import SessionPlan, StatementPlan
from bot.dialogue.turn import TurnResult
from bot.pipeline import Pipeline
from channels.base import Message, Reply

_CACHE = CacheEntry.__table__
_PUT = insert(_CACHE)
_TOUCH = update(_CACHE).where(_CACHE.c.key == bindparam("b_key")).values(value="touched")


class PlannedStore:
    """A tracker store whose plans for a result are those its handler decided (``result.plans``)
    and whose snapshot is whatever its ``prefetch`` read (the pipeline's commit interface, with
    the handler's own statements)."""

    def __init__(self, prefetch: Any = None) -> None:
        self._prefetch = prefetch

    def prefetch(self, conn, conversation_id: str, message_id: str, probe: Any = None):  # type: ignore[no-untyped-def]
        return self._prefetch(conn, conversation_id, message_id) if self._prefetch is not None else None

    async def retrieve(self, message: Message, *, probe: Any = None, prefetched: Any = None) -> Any:
        return prefetched

    def plans(self, result: TurnResult) -> list[Any]:
        return getattr(result, "plans", [])


async def _put(session, key: str, value: str) -> None:  # type: ignore[no-untyped-def]
    await session.execute(_PUT, [{"key": key, "value": value, "expires_at": None}])


class WritesTurn:
    """A handler that hands its turn to the pipeline as pre-built statements, as the engine does.

    "boom" writes a row that already exists (the grouped transaction fails); "miss" carries a
    guarded UPDATE that changes nothing (the statements are not written: the fallback plan is)."""

    probe = None

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.grouped = 0
        self.store = PlannedStore()

    async def decide(self, message: Message, snapshot: Any) -> TurnResult:
        await asyncio.sleep(self.delay)  # the turns of the burst finish together
        self.grouped += 1
        replies = [Reply(channel=message.channel, recipient_id=message.sender_id, text=f"turn:{message.text}")]
        key = "existing" if message.text == "boom" else f"k:{message.message_id}"
        stmts = [(_PUT, [{"key": key, "value": message.text, "expires_at": None}], None)]
        if message.text == "miss":
            stmts.append((_TOUCH, [{"b_key": "absent"}], 1))
        result = TurnResult(message=message, replies=replies, kind="turn")
        result.plans = [StatementPlan(stmts),  # type: ignore[attr-defined]
                        SessionPlan(lambda s: _put(s, f"fallback:{message.message_id}", message.text))]
        return result

    async def after_commit(self, result: TurnResult, committed: Any) -> list[Reply]:
        return []


@pytest_asyncio.fixture
async def sqlite_sm(sqlite_url):  # type: ignore[no-untyped-def]
    await upgrade(sqlite_url, BOT_MIGRATIONS)
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


def msg(text: str, mid: str, sender: str) -> Message:
    return Message(channel="rest", sender_id=sender, text=text, message_id=mid)


async def test_grouped_turn_writes_fail_only_the_affected_turn(sqlite_sm, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="powerbot.pipeline")
    async with sqlite_sm() as s, s.begin():
        s.add(CacheEntry(key="existing", value="x"))
    engine = sqlite_sm.kw["bind"]
    commits = 0

    def on_commit(_conn) -> None:  # type: ignore[no-untyped-def]
        nonlocal commits
        commits += 1

    event.listen(engine.sync_engine, "commit", on_commit)
    handler = WritesTurn()
    # eight turns run (and are written) together: the group holding "boom" is retried turn by
    # turn, the other groups are one commit each
    p = Pipeline(sqlite_sm, handler, inline_grace=30, max_active=8)
    texts = [f"t{i}" for i in range(30)] + ["boom", "miss"]
    receipts = await asyncio.gather(*(p.receive(msg(t, f"m-{t}", f"s-{t}"), wait=20) for t in texts))
    await p.stop()
    by_text = dict(zip(texts, receipts))
    for t in texts[:30]:
        assert [r.text for r in by_text[t].replies or []] == [f"turn:{t}"]
    # the failing turn alone is postponed (busy notice); its neighbours in the batch are written
    assert [r.text for r in by_text["boom"].replies or []] != ["turn:boom"]
    assert [r.text for r in by_text["miss"].replies or []] == ["turn:miss"]
    async with sqlite_sm() as s:
        rows = dict((await s.execute(select(InboundMessage.dedupe_key, InboundMessage.status))).all())
        keys = set((await s.execute(select(CacheEntry.key))).scalars())
        outbox_keys = (await s.execute(select(OutboxMessage.dedupe_key))).scalars().all()
    assert rows.pop("m-boom") == "received"
    # the written turns' replies are held for their inline answers (nobody marked them here);
    # the missed plan gave way to the fallback plan, answered through the outbox
    assert rows.pop("m-miss") == "done"
    assert set(rows.values()) == {"held"}
    # the missed plan wrote nothing; its fallback did
    assert keys == {"existing", "fallback:m-miss"} | {f"k:m-{t}" for t in texts[:30]}
    assert len(outbox_keys) == len(set(outbox_keys)) == 2  # the missed turn's reply + busy notice
    # far fewer commits than turns: the turns were written together, and the batch holding
    # the failing turn was retried turn by turn
    assert commits < 30
    assert any("writing them one by one" in r.getMessage() for r in caplog.records)


async def test_turn_write_offered_and_lease_released_in_the_same_transaction(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """SQLite groups the turns of one process; PostgreSQL writes each turn under its lease, and
    the turn's transaction also picks the next row or releases the lease."""
    handler = WritesTurn(delay=0.0)
    p = Pipeline(sessionmaker, handler, inline_grace=30)
    first = await p.receive(msg("a", "m-a", "s-a"), wait=10)
    # two messages of one conversation back to back: the second is the "next row" of the first
    both = await asyncio.gather(p.receive(msg("b", "m-b", "s-b"), wait=10), p.receive(msg("c", "m-c", "s-b"), wait=10))
    await p.stop()
    assert handler.grouped == 3
    assert [r.text for r in first.replies or []] == ["turn:a"]
    assert [[r.text for r in rc.replies or []] for rc in both] == [["turn:b"], ["turn:c"]]
    async with sessionmaker() as s:
        statuses = (await s.execute(select(InboundMessage.status))).scalars().all()
        leases = (await s.execute(select(func.count()).select_from(ConversationLease))).scalar()
        keys = sorted((await s.execute(select(CacheEntry.key))).scalars())
    # one process (SQLite) holds the replies of a waited-for turn on its row until the answer
    # is marked (nobody marks here); under leases the turn's row is done with its replies queued
    assert statuses == (["done"] * 3 if p.cross_process else ["held"] * 3) and leases == 0
    assert keys == ["k:m-a", "k:m-b", "k:m-c"]


async def test_on_conflict_statements_compile_once(sqlite_sm) -> None:  # type: ignore[no-untyped-def]
    """The dialects' INSERT .. ON CONFLICT has no SQLAlchemy cache key; ours are pre-built."""
    engine = sqlite_sm.kw["bind"]
    misses: list[str] = []

    def before(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        # context None: a pre-built statement run on the driver's cursor (``bot.precompiled``)
        if statement.startswith("INSERT INTO") and context is not None \
                and str(context.cache_hit) != "CacheStats.CACHE_HIT":
            misses.append(statement.split("(")[0])

    event.listen(engine.sync_engine, "before_cursor_execute", before)

    class Echo:
        async def handle(self, message: Message) -> list[Reply]:
            return [Reply(channel=message.channel, recipient_id=message.sender_id, text="ok")]

    p = Pipeline(sqlite_sm, Echo())
    for i in range(4):
        await p.receive(msg(f"x{i}", f"m-x{i}", f"s-x{i}"), wait=10)
    await p.stop()
    # the first inbound insert and the first reply insert compile; the rest come from the cache
    assert len(misses) <= 2, misses
    async with sqlite_sm() as s:
        assert (await s.execute(select(func.count()).select_from(OutboxMessage))).scalar_one() == 4


async def test_snapshot_reads_tracker_and_flags_rare_cases(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """One statement: the tracker, the customer's accounts, and whether a replay, an active
    handoff or the console's open satisfaction question needs the full read transaction."""
    from bot.console.hooks import SATISFACTION_PROBE
    from bot.console.models import Satisfaction
    from bot.dialogue.handoff import Handoff
    from bot.dialogue.store import Conversation, Customer, CustomerAccount, Event

    engine = sessionmaker.kw["bind"]
    cid = "rest:snap"
    snap = await _snapshot(engine, cid, "m1", SATISFACTION_PROBE)
    assert snap.version is None and not snap.exists and not snap.rare
    async with sessionmaker() as s, s.begin():
        c = Customer()
        s.add(c)
        await s.flush()
        s.add(Conversation(id=cid, channel="rest", sender_id="snap", customer_id=c.id,
                           state={"slots": {"language": "zh"}}, version=3))
        s.add_all([CustomerAccount(customer_id=c.id, account_number=n, how="bound")
                   for n in ("3100000001", "3100000002")])
        s.add(Event(conversation_id=cid, type="user", name="greet", text="你好", message_id="m1", data={}))
        s.add(Satisfaction(conversation_id="rest:other", handoff_id=999, status="asked"))
    snap = await _snapshot(engine, cid, "m2", SATISFACTION_PROBE)
    assert (snap.state, snap.version, snap.handoff, snap.probe) == ({"slots": {"language": "zh"}}, 3, None, None)
    assert snap.authorized == {"3100000001", "3100000002"}
    assert not snap.rare
    assert (await _snapshot(engine, cid, "m1", SATISFACTION_PROBE)).rare  # processed before: replay
    async with sessionmaker() as s, s.begin():
        s.add(Handoff(conversation_id=cid, reason="request_human", priority="normal", status="waiting"))
    assert (await _snapshot(engine, cid, "m2", SATISFACTION_PROBE)).rare
    async with sessionmaker() as s, s.begin():
        h = (await s.execute(select(Handoff).where(Handoff.conversation_id == cid))).scalar_one()
        h.status = "released"
        s.add(Satisfaction(conversation_id=cid, handoff_id=h.id, status="asked"))
    snap = await _snapshot(engine, cid, "m2", SATISFACTION_PROBE)
    assert snap.handoff is None and snap.probe is not None and snap.rare
    assert not (await _snapshot(engine, cid, "m2", None)).rare  # without the console's probe


def test_reply_to_dict_is_asdict_without_the_recursion() -> None:
    """The hand-written ``Reply.to_dict`` (hot path: every reply is stored) must stay what
    ``dataclasses.asdict`` gives, metadata copied deeply, and round-trip through ``from_dict``."""
    from dataclasses import asdict, fields

    from channels.base import Button

    r = Reply(channel="wechat", recipient_id="o1", text="请支付", buttons=[Button("去支付", "/pay_bill")],
              kind="payment_link", metadata={"url": "https://pay", "items": [1, {"a": 2}]}, urgent=True)
    assert r.to_dict() == asdict(r)
    assert set(r.to_dict()) == {f.name for f in fields(Reply)}  # a new field must be added there too
    assert r.to_dict()["metadata"]["items"] is not r.metadata["items"]
    assert Reply.from_dict(r.to_dict()) == r
    plain = Reply(channel="sms", recipient_id="+8613800138000", text="t")
    assert plain.to_dict() == asdict(plain)


async def _answer_state(sessionmaker, receipt) -> str:  # type: ignore[no-untyped-def]
    """Where a waited-for answer stands: "waiting" for its mark, "marked" delivered inline, or
    "taken" by the outbox. One process (SQLite) holds the replies on the inbound row; several
    (PostgreSQL) queue them in the outbox."""
    async with sessionmaker() as s:
        if receipt.held is not None:
            status = (await s.execute(select(InboundMessage.status).where(InboundMessage.id == receipt.held))).scalar()
            return {"held": "waiting", "done": "marked"}.get(status, "taken")
        (status, provider), = (await s.execute(select(OutboxMessage.status, OutboxMessage.provider_id)
                                              .where(OutboxMessage.id.in_(receipt.outbox_ids)))).all()
        return "waiting" if status == "pending" else "marked" if provider == "inline" else "taken"


async def _taken_by_the_outbox(sessionmaker, receipt) -> None:  # type: ignore[no-untyped-def]
    """As when the process stalled past the grace: the held row released, the outbox row sent."""
    async with sessionmaker() as s, s.begin():
        if receipt.held is not None:
            await s.execute(update(InboundMessage).where(InboundMessage.id == receipt.held).values(status="received"))
        else:
            await s.execute(update(OutboxMessage).where(OutboxMessage.id.in_(receipt.outbox_ids))
                            .values(status="sent", provider_id="wx-123"))


async def test_inline_marks_ride_on_the_next_turn_write_and_are_flushed_otherwise(sessionmaker, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``delivered_inline`` writes nothing itself: the next turn's transaction marks the answer
    (no flush could have run: its delay is 30 s here); without traffic the flush marks it; an
    answer the outbox took meanwhile is left to it; ``stop`` flushes the rest. One process
    holds the replies on the inbound row (no outbox row at all); under leases they are queued."""
    import bot.pipeline.inline as pl

    sm = sessionmaker
    monkeypatch.setattr(pl, "MARK_FLUSH_SECONDS", 30.0)
    p = Pipeline(sm, WritesTurn(delay=0.0), inline_grace=30)
    first = await p.receive(msg("a", "m-a", "s-a"), wait=10)
    if p.cross_process:
        assert first.held is None and len(first.outbox_ids) == 1
    else:
        assert first.held is not None and first.outbox_ids == []
    assert await _answer_state(sm, first) == "waiting"
    p.delivered_inline(first)
    assert await _answer_state(sm, first) == "waiting"  # not yet
    second = await p.receive(msg("b", "m-b", "s-b"), wait=10)
    assert await _answer_state(sm, first) == "marked"

    await _taken_by_the_outbox(sm, second)
    third = await p.receive(msg("c", "m-c", "s-c"), wait=10)
    await p.stop()
    monkeypatch.setattr(pl, "MARK_FLUSH_SECONDS", 0.05)
    p = Pipeline(sm, WritesTurn(delay=0.0), inline_grace=30)
    p.delivered_inline(second)
    p.delivered_inline(third)
    for _ in range(100):
        if await _answer_state(sm, third) == "marked":
            break
        await asyncio.sleep(0.02)
    assert [await _answer_state(sm, r) for r in (second, third)] == ["taken", "marked"]

    await p.stop()
    monkeypatch.setattr(pl, "MARK_FLUSH_SECONDS", 30.0)
    p = Pipeline(sm, WritesTurn(delay=0.0), inline_grace=30)
    fourth = await p.receive(msg("d", "m-d", "s-d"), wait=10)
    p.delivered_inline(fourth)
    await p.stop()
    assert await _answer_state(sm, fourth) == "marked"


async def _statuses(sessionmaker, *receipts) -> list[str]:  # type: ignore[no-untyped-def]
    async with sessionmaker() as s:
        return list((await s.execute(select(InboundMessage.status).where(
            InboundMessage.id.in_([r.held for r in receipts])).order_by(InboundMessage.id))).scalars())


class RecordsTurn:
    """Like the engine: the turn's replies are recorded with the turn (here in a cache row);
    the same message run again finds them and answers them again without a new turn."""

    probe = None

    def __init__(self) -> None:
        self.turns: list[str] = []
        self.replays: list[str] = []
        self.sessionmaker: Any = None
        self.store = PlannedStore()

    async def decide(self, message: Message, snapshot: Any) -> TurnResult:
        key = f"r:{message.message_id}"
        async with self.sessionmaker() as s:
            recorded = (await s.execute(select(CacheEntry.value).where(CacheEntry.key == key))).scalar()
        if recorded is not None:
            self.replays.append(message.message_id)
            return TurnResult(message=message, kind="replay",
                              replies=[Reply(channel=message.channel, recipient_id=message.sender_id, text=recorded)])
        self.turns.append(message.message_id)
        replies = [Reply(channel=message.channel, recipient_id=message.sender_id, text=f"turn:{message.text}")]
        result = TurnResult(message=message, replies=replies, kind="turn")
        result.plans = [StatementPlan([(_PUT, [{"key": key, "value": replies[0].text, "expires_at": None}],  # type: ignore[attr-defined]
                                        None)])]
        return result

    async def after_commit(self, result: TurnResult, committed: Any) -> list[Reply]:
        return []


async def test_held_replies_unanswered_within_the_grace_go_to_the_outbox_once(sqlite_sm) -> None:  # type: ignore[no-untyped-def]
    """A waited-for turn queues nothing: its row is held. Marked in time, it is done and the
    outbox never hears of it; not marked (no answer, or the process died), the recovery pass
    after the grace releases it, the recorded turn is replayed (not run again) into the
    outbox, due at once; a late mark then reports that the outbox has it."""
    handler = RecordsTurn()
    handler.sessionmaker = sqlite_sm
    p = Pipeline(sqlite_sm, handler, inline_grace=0.3)
    answered, unanswered = await asyncio.gather(
        p.receive(msg("a", "m-a", "s-a"), wait=10), p.receive(msg("b", "m-b", "s-b"), wait=10))
    assert [r.text for r in answered.replies or []] == ["turn:a"] and answered.held is not None
    assert [r.text for r in unanswered.replies or []] == ["turn:b"] and unanswered.held is not None
    assert await _statuses(sqlite_sm, answered, unanswered) == ["held", "held"]
    assert await p.mark_delivered_inline(answered)
    assert await p.recover_once() == 0  # still inside the grace: nothing released
    await p.stop()  # "crash": the unanswered row stays held

    p = Pipeline(sqlite_sm, handler, inline_grace=0.3)
    await asyncio.sleep(0.35)
    assert await p.recover_once() == 1  # the unanswered row, released
    for _ in range(100):
        if await _statuses(sqlite_sm, unanswered) == ["done"]:
            break
        await asyncio.sleep(0.02)
    assert await _statuses(sqlite_sm, answered, unanswered) == ["done", "done"]  # marked; replayed
    async with sqlite_sm() as s:
        rows = (await s.execute(select(OutboxMessage))).scalars().all()
    assert [(r.dedupe_key, r.payload["text"], r.status) for r in rows] == [(f"in:{unanswered.held}:0", "turn:b", "pending")]
    assert outbox_mod.as_aware(rows[0].next_attempt_at) <= outbox_mod.utcnow()  # due at once
    assert handler.turns == ["m-a", "m-b"] and handler.replays == ["m-b"]
    assert not await p.mark_delivered_inline(unanswered)  # too late: the outbox has it
    assert await p.recover_once() == 0
    await p.stop()
    async with sqlite_sm() as s:
        assert (await s.execute(select(func.count()).select_from(OutboxMessage))).scalar() == 1


_COUNTER = select(_CACHE.c.value).where(_CACHE.c.key == bindparam("b_key"))
_BUMP = (update(_CACHE).where(_CACHE.c.key == bindparam("b_key"), _CACHE.c.value == bindparam("b_was"))
         .values(value=bindparam("b_now")))


class CountsTurns:
    """Each turn reads a per-conversation counter (prefetched by the pipeline when it can) and
    writes counter + 1 guarded by the value it read: a stale prefetch would miss the guard."""

    probe = None

    def __init__(self) -> None:
        self.prefetches = 0
        self.used = 0
        self.missed: list[str] = []
        self.store = PlannedStore(self._read)

    def _read(self, conn, conversation_id: str, message_id: str):  # type: ignore[no-untyped-def]
        self.prefetches += 1
        return (conversation_id, message_id, conn.execute(_COUNTER, {"b_key": conversation_id}).scalar())

    async def decide(self, message: Message, snapshot: Any) -> TurnResult:
        cid = message.conversation_id
        if snapshot is not None and snapshot[:2] == (cid, message.message_id):
            self.used += 1
            was = snapshot[2]
        else:
            async with self._sm() as s:
                was = (await s.execute(_COUNTER, {"b_key": cid})).scalar()
        replies = [Reply(channel=message.channel, recipient_id=message.sender_id, text=f"turn:{message.text}")]
        if was is None:
            stmts = [(_PUT, [{"key": cid, "value": "1", "expires_at": None}], None)]
        else:
            stmts = [(_BUMP, [{"b_key": cid, "b_was": was, "b_now": str(int(was) + 1)}], 1)]

        async def missed(_session) -> None:  # type: ignore[no-untyped-def]
            self.missed.append(message.text)

        result = TurnResult(message=message, replies=replies, kind="turn")
        result.plans = [StatementPlan(stmts), SessionPlan(missed)]  # type: ignore[attr-defined]
        return result

    async def after_commit(self, result: TurnResult, committed: Any) -> list[Reply]:
        return []


async def test_prefetched_turn_state_is_used_and_never_stale(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """The pipeline reads the turn's starting state inside transactions it runs anyway (SQLite:
    the inbound insert, for idle conversations; PostgreSQL: under the lease, after the previous
    turn's write) and the turns see every earlier turn of their conversation."""
    handler = CountsTurns()
    handler._sm = sessionmaker  # type: ignore[attr-defined]
    p = Pipeline(sessionmaker, handler, inline_grace=30)
    for i in range(5):  # one after another
        await p.receive(msg(f"seq{i}", f"m-seq{i}", "s-1"), wait=10)
    # back to back in one conversation, and several conversations at once
    await asyncio.gather(*(p.receive(msg(f"b2b{i}", f"m-b2b{i}", "s-1"), wait=10) for i in range(5)),
                         *(p.receive(msg(f"o{i}", f"m-o{i}", f"s-o{i}"), wait=10) for i in range(5)))
    await p.stop()
    assert handler.missed == []
    async with sessionmaker() as s:
        counters = dict((await s.execute(select(CacheEntry.key, CacheEntry.value))).all())
    assert counters["rest:s-1"] == "10"
    assert all(counters[f"rest:s-o{i}"] == "1" for i in range(5))
    assert handler.prefetches >= 5 and handler.used >= 5


async def test_a_request_gone_before_its_insert_leaves_its_answer_to_the_outbox_at_once(sqlite_sm) -> None:  # type: ignore[no-untyped-def]
    """A request cancelled while its message is being stored (the platform hung up) waits for
    nothing more: the turn still runs, and its replies are queued in the outbox, due now, not
    held for an inline answer that will never be given."""
    p = Pipeline(sqlite_sm, WritesTurn(delay=0.0), inline_grace=30)
    task = asyncio.ensure_future(p.receive(msg("gone", "m-gone", "s-gone"), wait=10))
    await asyncio.sleep(0)  # the request has queued its row; the group insert has not run yet
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for _ in range(100):
        async with sqlite_sm() as s:
            rows = (await s.execute(select(OutboxMessage))).scalars().all()
        if rows:
            break
        await asyncio.sleep(0.02)
    await p.stop()
    assert [r.payload["text"] for r in rows] == ["turn:gone"]
    assert outbox_mod.as_aware(rows[0].next_attempt_at) <= outbox_mod.utcnow()  # due at once
    assert not p._waiters


async def test_the_replay_check_reads_the_latest_events_only(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """A conversation is a sender's whole history. The snapshot finds a recorded turn among its
    ``REPLAY_WINDOW`` latest events (where a message processed again has its turn: after a
    crash it is the last one, after a released held answer a few turns back), on both stores,
    and no longer reads every event the conversation ever had."""
    from sqlalchemy import insert as core_insert

    from bot.dialogue.tracker_store import REPLAY_WINDOW
    from bot.dialogue.store import Conversation, Event

    engine = sessionmaker.kw["bind"]
    cid = "rest:long"
    now = outbox_mod.utcnow()
    history = [{"conversation_id": cid, "type": "user" if i % 2 == 0 else "bot", "name": None, "text": "x",
                "data": {}, "message_id": f"old{i}" if i % 2 == 0 else None, "created_at": now}
               for i in range(2 * REPLAY_WINDOW)]
    recent = [{"conversation_id": cid, "type": t, "name": None, "text": "x", "data": {},
               "message_id": m, "created_at": now}
              for t, m in [("user", "held-one"), ("bot", None), ("user", "later"), ("bot", None)]]
    async with sessionmaker() as s, s.begin():
        s.add(Conversation(id=cid, channel="rest", sender_id="long", state={}, version=1))
        await s.execute(core_insert(Event.__table__), history)
        await s.execute(core_insert(Event.__table__), recent)
    assert (await _snapshot(engine, cid, "held-one", None)).recorded  # a few turns back
    assert (await _snapshot(engine, cid, "later", None)).recorded  # the last turn
    assert (await _snapshot(engine, cid, "new", None)).recorded is False
    # a turn further back than the window is not looked for (none can be processed again)
    assert (await _snapshot(engine, cid, "old0", None)).recorded is False
    assert (await _snapshot(engine, cid, f"old{2 * REPLAY_WINDOW - 2}", None)).recorded


async def _snapshot(engine, cid: str, message_id: str, probe):  # type: ignore[no-untyped-def]
    from bot.db import in_transaction
    from bot.dialogue.tracker_store import read_snapshot

    return await in_transaction(engine, lambda conn: read_snapshot(conn, cid, message_id, probe))
