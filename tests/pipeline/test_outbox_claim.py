"""The outbox claim statement and the batch hook of the Channel interface, on both stores."""

from __future__ import annotations

from sqlalchemy import text

import bot.outbox as outbox_mod
from bot.outbox import OutboxWorker, enqueue_many
from channels.base import Channel, DeliveryError, Reply


def notice(to: str) -> Reply:
    return Reply(channel="rec", recipient_id=to, text="停电通知", kind="notice")


class OneByOne(Channel):
    name = "rec"

    def __init__(self) -> None:  # no context needed
        self.sent: list[str] = []

    def routes(self):  # type: ignore[no-untyped-def]
        return []

    async def send(self, reply: Reply) -> str | None:
        if reply.recipient_id == "bad":
            raise DeliveryError("refused", retryable=False, code="x")
        self.sent.append(reply.recipient_id)
        return f"id-{reply.recipient_id}"


async def test_a_claim_never_takes_more_than_its_batch(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """All rows due at the same instant: the claim takes exactly ``batch_size`` of them (on
    PostgreSQL a plain ``IN (subquery ... SKIP LOCKED)`` could be rescanned and claim more)."""
    async with sessionmaker() as s, s.begin():
        await enqueue_many(s, [{"reply": notice(f"r{i}"), "kind": "notice", "dedupe_key": f"k{i}"} for i in range(700)])
    w = OutboxWorker(sessionmaker, {"rec": OneByOne()}, batch_size=100)
    claimed: list[int] = []
    for _ in range(8):
        rows = await w._claim()
        assert len(rows) <= 100
        claimed += [r.id for r in rows]
    assert len(claimed) == len(set(claimed)) == 700
    # claimed rows are read-only rows with the model's attributes (policies and hooks use them)
    assert rows == [] and {"id", "channel", "kind", "urgent", "payload", "attempts"} <= set(
        (await _one_claimed(sessionmaker))._fields
    )


async def _one_claimed(sessionmaker):  # type: ignore[no-untyped-def]
    async with sessionmaker() as s, s.begin():
        await enqueue_many(s, [{"reply": notice("late"), "kind": "notice", "dedupe_key": "late"}])
    (row,) = await OutboxWorker(sessionmaker, {"rec": OneByOne()})._claim()
    assert row.recipient_id == "late" and row.payload["text"] == "停电通知" and row.attempts == 0
    return row


async def test_the_default_send_batch_sends_one_by_one_with_per_reply_results() -> None:
    ch = OneByOne()
    results = await ch.send_batch([notice("a"), notice("bad"), notice("c")])
    assert results[0] == "id-a" and results[2] == "id-c" and isinstance(results[1], DeliveryError)
    assert ch.sent == ["a", "c"]


async def test_a_mass_enqueue_refreshes_the_planner_statistics_on_postgres(postgres_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from bot.db import make_engine, make_sessionmaker
    from bot.migrate import BOT_MIGRATIONS, upgrade

    monkeypatch.setattr(outbox_mod, "ANALYZE_AFTER_ROWS", 300)
    await upgrade(postgres_url, BOT_MIGRATIONS)
    engine = make_engine(postgres_url)
    try:
        sm = make_sessionmaker(engine)
        async with sm() as s, s.begin():  # only our ANALYZE may refresh the statistics here
            await s.execute(text("ALTER TABLE outbox SET (autovacuum_enabled = false)"))
        async with sm() as s, s.begin():
            await enqueue_many(s, [{"reply": notice(f"r{i}"), "kind": "notice", "dedupe_key": f"k{i}"} for i in range(299)])
        async with sm() as s:
            assert await s.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'outbox'")) <= 0
        async with sm() as s, s.begin():
            await enqueue_many(s, [{"reply": notice(f"m{i}"), "kind": "notice", "dedupe_key": f"m{i}"} for i in range(300)])
        async with sm() as s:
            assert await s.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'outbox'")) == 599
    finally:
        await engine.dispose()


async def test_a_customer_reply_is_claimed_before_a_fan_out_of_notices(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """A planned-outage fan-out queued first must not hold back a conversational answer."""
    async with sessionmaker() as s, s.begin():
        await enqueue_many(s, [{"reply": notice(f"n{i}"), "kind": "notice", "dedupe_key": f"n{i}"} for i in range(600)])
    async with sessionmaker() as s, s.begin():
        answer = Reply(channel="rec", recipient_id="customer", text="您的工单已受理")
        await enqueue_many(s, [{"reply": answer, "kind": "reply", "dedupe_key": "in:1:0"}])
    w = OutboxWorker(sessionmaker, {"rec": OneByOne()}, batch_size=100)
    first = await w._claim()
    assert len(first) == 100
    assert "customer" in [r.recipient_id for r in first]
    # the rest of the claim is notices, oldest first; nothing is lost or taken twice
    seen = {r.id for r in first}
    while rows := await w._claim():
        assert not seen & {r.id for r in rows}
        seen |= {r.id for r in rows}
    assert len(seen) == 601


async def test_the_paced_loop_claims_replies_every_pass_and_notices_while_there_are_some(  # type: ignore[no-untyped-def]
        sessionmaker) -> None:
    """The worker's own loop: a pass that found no notice skips the notice lane until
    ``poll_interval`` has passed (replies are still claimed at once), and the orphan sweep runs
    once per quarter lease; ``run_once`` claims both lanes and sweeps every time."""
    statements: list[str] = []
    engine = sessionmaker.kw["bind"].sync_engine
    from sqlalchemy import event

    def seen(conn, cursor, statement, *_):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE OUTBOX"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        w = OutboxWorker(sessionmaker, {"rec": OneByOne()}, batch_size=10, poll_interval=60.0)
        assert await w._claim(paced=True) == []
        assert len(statements) == 3  # sweep, replies, notices
        statements.clear()
        async with sessionmaker() as s, s.begin():
            await enqueue_many(s, [{"reply": notice("n1"), "kind": "notice", "dedupe_key": "n1"},
                                   {"reply": Reply(channel="rec", recipient_id="c1", text="答复"),
                                    "kind": "reply", "dedupe_key": "c1"}])
        rows = await w._claim(paced=True)
        assert [r.recipient_id for r in rows] == ["c1"]  # the reply now, the notice lane paced
        assert len(statements) == 1
        statements.clear()
        rows = await w._claim()  # unpaced (run_once): both lanes and the sweep
        assert [r.recipient_id for r in rows] == ["n1"] and len(statements) == 3
    finally:
        event.remove(engine, "before_cursor_execute", seen)
