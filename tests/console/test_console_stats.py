"""The supervisor's figures: a 24-hour window found through the primary key (no scan of every
message ever stored), and one computation per few seconds however many pages refresh."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import event, text

from bot.console import service
from bot.console.models import Satisfaction
from bot.console.views import StatsCache
from bot.dialogue.handoff import Handoff
from bot.models import InboundMessage, utcnow


async def _fill(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """Yesterday's-and-older rows first (lower ids), then today's, as the gateway writes them."""
    old, new = utcnow() - timedelta(days=2), utcnow() - timedelta(minutes=5)
    async with sessionmaker() as s, s.begin():
        for i, (cid, at) in enumerate([("wechat:a", old), ("wechat:a", old), ("sms:b", new), ("sms:b", new),
                                       ("wechat:c", new)]):
            s.add(InboundMessage(channel=cid.split(":")[0], dedupe_key=f"m{i}", sender_id=cid.split(":")[1],
                                 conversation_id=cid, received_at=at, status="done"))
            await s.flush()
        s.add(Handoff(conversation_id="wechat:a", reason="request_human", status="released", created_at=old,
                      assigned_at=old))
        await s.flush()
        s.add(Handoff(conversation_id="sms:b", reason="complaint_angry", status="waiting", created_at=new))
        await s.flush()
        s.add(Satisfaction(conversation_id="wechat:a", handoff_id=1, status="answered", score=1, asked_at=old))
        await s.flush()
        s.add(Satisfaction(conversation_id="wechat:c", handoff_id=2, status="answered", score=5, asked_at=new))


async def test_conversation_figures_cover_the_last_day(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    await _fill(sessionmaker)
    async with sessionmaker() as s:
        figures = await service.stats(s)
    assert figures["window_hours"] == 24
    assert figures["conversations"] == 2  # b and c; a wrote two days ago
    assert figures["conversations_escalated"] == 1 and figures["conversations_with_agent"] == 0
    # containment: b escalated and nobody answered it, so only c was finished without an agent
    assert figures["automation_rate"] == 0.5 == figures["containment_rate"]
    assert figures["conversations_contained"] == 1
    assert figures["satisfaction_count"] == 1 and figures["satisfaction_average"] == 5.0
    assert figures["satisfaction_distribution"] == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 1}
    assert figures["queue_length"] == 1  # the queue is live, not windowed


async def test_first_id_since_agrees_with_a_scan(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    async with sessionmaker() as s:
        assert await service.first_id_since(s, InboundMessage, "received_at", utcnow()) is None  # empty
    rng = random.Random(7)
    start = utcnow() - timedelta(days=10)
    times, at = [], start
    for _ in range(120):
        at += timedelta(minutes=rng.choice([1, 5, 60, 600]))
        times.append(at)
    async with sessionmaker() as s, s.begin():
        for i, at in enumerate(times):
            s.add(InboundMessage(channel="rest", dedupe_key=f"k{i}", sender_id="u", conversation_id="rest:u",
                                 received_at=at))
    async with sessionmaker() as s:
        ids = [r[0] for r in (await s.execute(text("SELECT id FROM inbound_messages ORDER BY id"))).all()]
        for probe in [start - timedelta(days=1), *rng.sample(times, 25), times[-1], times[-1] + timedelta(seconds=1)]:
            expected = next((i for i, at in zip(ids, times) if at >= probe), None)
            assert await service.first_id_since(s, InboundMessage, "received_at", probe) == expected


async def test_the_windowed_counts_read_a_primary_key_range_on_sqlite(sqlite_url: str) -> None:
    """EXPLAIN of the statements ``stats`` really runs: the counts over messages, handoffs and
    scores are primary-key ranges, not scans of the tables."""
    from bot.db import make_engine, make_sessionmaker
    from bot.migrate import BOT_MIGRATIONS, upgrade

    await upgrade(sqlite_url, BOT_MIGRATIONS)
    engine = make_engine(sqlite_url)
    seen: list[tuple[str, tuple]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        seen.append((statement, tuple(parameters)))

    try:
        sm = make_sessionmaker(engine)
        await _fill(sm)
        event.listen(engine.sync_engine, "before_cursor_execute", capture)
        async with sm() as s:
            await service.stats(s)
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
        plans = []
        async with engine.connect() as conn:
            for statement, params in seen:
                if "count(distinct" in statement or "console_satisfaction.score" in statement:
                    rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
                    plans.append((statement, " | ".join(str(r[-1]) for r in rows)))
    finally:
        await engine.dispose()
    assert len(plans) >= 4, plans  # messages, with an agent, escalated, scores, and the trend's hours
    for statement, plan in plans:
        assert "PRIMARY KEY (rowid>?" in plan and "SCAN " not in plan, (statement, plan)


async def test_the_figures_are_computed_once_per_ttl(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    await _fill(sessionmaker)
    cache = StatsCache(ttl=60)
    first = await cache.get(sessionmaker)
    async with sessionmaker() as s, s.begin():  # a new conversation arrives
        s.add(InboundMessage(channel="rest", dedupe_key="late", sender_id="d", conversation_id="rest:d"))
    assert await cache.get(sessionmaker) == first and cache.computed == 1
    fresh = StatsCache(ttl=0)
    assert (await fresh.get(sessionmaker))["conversations"] == 3
    await fresh.get(sessionmaker)
    assert fresh.computed == 2


async def test_containment_does_not_count_an_unanswered_escalation_as_automated(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """15 conversations: 2 taken by an agent, 4 escalated that nobody answered. The old figure
    (1 - with agent / all) said 86.7%; containment is 9/15 = 60%."""
    now = utcnow() - timedelta(minutes=10)
    async with sessionmaker() as s, s.begin():
        for i in range(15):
            s.add(InboundMessage(channel="rest", dedupe_key=f"c{i}", sender_id=f"u{i}", conversation_id=f"rest:u{i}",
                                 received_at=now, status="done"))
            await s.flush()
        for i in range(6):
            s.add(Handoff(conversation_id=f"rest:u{i}", reason="request_human", priority="high" if i == 5 else "normal",
                          status="released" if i < 2 else "waiting", created_at=now - timedelta(minutes=i),
                          agent_id="amy" if i < 2 else None,
                          assigned_at=now if i < 2 else None, released_at=now + timedelta(minutes=4) if i < 2 else None))
            await s.flush()
        s.add(Satisfaction(conversation_id="rest:u0", handoff_id=1, agent_name="amy", status="answered", score=4,
                           asked_at=now))
    async with sessionmaker() as s:
        figures = await service.stats(s)
    assert figures["conversations"] == 15 and figures["conversations_with_agent"] == 2
    assert figures["conversations_escalated"] == 6
    assert figures["automation_rate"] == 0.6
    amy = next(a for a in figures["per_agent"] if a["agent"] == "amy")
    assert amy["handled"] == 2 and amy["average_handle_seconds"] == 240 and amy["satisfaction_average"] == 4.0
    # the waiting ones are past their SLA (normal 5 min: 10+ minutes; high 3 min)
    assert {b["priority"] for b in figures["sla_breaches"]} == {"normal", "high"}
    assert len(figures["sla_breaches"]) == 4
    assert len(figures["trend"]) == 24
    assert sum(h["conversations"] for h in figures["trend"]) == 15
    assert sum(h["escalations"] for h in figures["trend"]) == 6


async def test_queue_search_and_filters_on_both_stores(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """The queue's search (ids, messages, notes, slots, linked accounts) and filters run the
    same on SQLite and PostgreSQL; a LIKE wildcard typed by an agent is taken literally."""
    from bot.console.models import ConsoleMessage
    from bot.dialogue.store import Conversation, Customer, CustomerAccount, Event, Identity

    async with sessionmaker() as s, s.begin():
        s.add(Conversation(id="wechat:o1", channel="wechat", sender_id="o1", state={"slots": {"address": "浦东新区100%路"}}))
        s.add(Event(conversation_id="wechat:o1", type="user", text="电表不走字了"))
        s.add(Handoff(conversation_id="wechat:o1", reason="request_human", priority="high", status="waiting"))
        s.add(Handoff(conversation_id="sms:+8613800138000", reason="hazard", priority="emergency", status="assigned",
                      agent_id="amy"))
        s.add(ConsoleMessage(conversation_id="sms:+8613800138000", kind="note", text="客户要求上门_核查"))
        cust = Customer()
        s.add(cust)
        await s.flush()
        s.add(Identity(channel="sms", sender_id="+8613800138000", customer_id=cust.id))
        s.add(CustomerAccount(customer_id=cust.id, account_number="3100000009", how="phone"))
    async with sessionmaker() as s:
        async def ids(viewer: str = "sue", role: str = "supervisor", **kw) -> list[str]:  # type: ignore[no-untyped-def]
            return [i["conversation_id"] for i in await service.queue(s, viewer, role, **kw)]

        assert await ids(q="不走字") == ["wechat:o1"]
        assert await ids(q="100%路") == ["wechat:o1"]  # a slot value, % taken literally
        assert await ids(q="0%") == ["wechat:o1"]
        assert await ids(q="上门_核查") == ["sms:138****8000"]  # a note
        assert await ids(q="3100000009") == ["sms:138****8000"]  # a linked account
        assert await ids(q="nothing like it") == []
        assert await ids(q="3100000009", viewer="bob", role="agent") == []  # amy's: not bob's to find
        assert await ids(channel="sms") == ["sms:138****8000"]
        assert await ids(priority="high") == ["wechat:o1"]
        assert await ids(view="mine", viewer="amy", role="agent") == ["sms:138****8000"]
        assert await ids(view="unassigned") == ["wechat:o1"]
