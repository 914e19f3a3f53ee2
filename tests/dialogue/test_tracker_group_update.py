"""The trackers of a grouped turn write, updated under their guard in one statement per group."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, select

from bot.db import in_transaction
from bot.dialogue.store import Conversation, Customer
from bot.dialogue.tracker_store import _UPDATE_CONVERSATION_P
from common.clock import utcnow


async def test_each_turn_of_a_group_learns_whether_its_guard_held(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """Three turns; the second's conversation now belongs to another customer (its guard
    fails): the counts say so per turn, and the other two trackers hold their new state and
    version. On PostgreSQL one statement; elsewhere the caller runs the sets (None)."""
    now = utcnow()
    async with sessionmaker() as s, s.begin():
        customers = [Customer(created_at=now) for _ in range(3)]
        s.add_all(customers)
        await s.flush()
        for n, c in enumerate(customers):
            s.add(Conversation(id=f"rest:g{n}", channel="rest", sender_id=f"g{n}", customer_id=c.id,
                               state={"n": n}, version=3, created_at=now, updated_at=now))
    ids = [c.id for c in customers]
    later = now + timedelta(seconds=5)
    params = [{"b_cid": f"rest:g{n}", "b_customer": ids[n] if n != 1 else ids[0], "b_state": {"表单": "报修", "n": n},
               "b_now": later} for n in range(3)]
    engine = sessionmaker.kw["bind"]
    statements: list[str] = []
    listener = lambda *a: statements.append(a[2])  # noqa: E731
    event.listen(engine.sync_engine, "before_cursor_execute", listener)
    try:
        counts = await in_transaction(engine, lambda conn: _UPDATE_CONVERSATION_P.run_each(conn, params))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", listener)
    if engine.dialect.name != "postgresql":
        assert counts is None
        return
    assert counts == [1, 0, 1] and len(statements) == 1
    async with sessionmaker() as s:
        rows = {c.id: c for c in (await s.execute(select(Conversation))).scalars()}
    assert rows["rest:g0"].state == {"表单": "报修", "n": 0} and rows["rest:g0"].version == 4
    assert rows["rest:g0"].updated_at == later
    assert rows["rest:g1"].state == {"n": 1} and rows["rest:g1"].version == 3  # guard held it back
    assert rows["rest:g2"].state == {"表单": "报修", "n": 2} and rows["rest:g2"].version == 4
