"""The hot queries of many gateway processes use an index on PostgreSQL (EXPLAIN), and the
bot_0008_scaleout merge migration goes up and down on both backends.

Each query below is the one the code runs (pipeline, outbox, console, notify, WeChat token
cache...). With ``enable_seqscan = off`` PostgreSQL still picks a sequential scan when no
index can serve the query, so "no Seq Scan in the plan" means an index is usable, whatever
the table size; the expected index name is checked too.
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from bot.db import make_engine
from bot.migrate import BOT_MIGRATIONS, downgrade, upgrade

HEADS_BEFORE = {
    "bot_0002_dialogue", "bot_0003_wechat", "bot_0004_alipay",
    "bot_0005_sms_email", "bot_0006_notify", "bot_0007_console",
}

# (what, SQL, index expected in the plan)
HOT_QUERIES = [
    ("drain: next received message of a conversation",
     "SELECT * FROM inbound_messages WHERE conversation_id = 'rest:u1' AND status = 'received' "
     "ORDER BY id LIMIT 1", "ix_inbound_conv_waiting"),
    ("email threading: the last message of a sender's thread",
     "SELECT payload FROM inbound_messages WHERE channel = 'email' AND conversation_id = 'email:a@b.cn' "
     "ORDER BY id DESC LIMIT 1", "ix_inbound_email_conv"),
    ("recovery: conversations with due received messages",
     "SELECT DISTINCT conversation_id FROM inbound_messages WHERE status = 'received' "
     "AND next_attempt_at <= now() AND received_at <= now() - interval '5 seconds' LIMIT 200",
     "ix_inbound_conv_waiting"),
    ("inbound dedupe (platform retries)",
     "SELECT id FROM inbound_messages WHERE channel = 'wechat' AND dedupe_key = 'm1'", "uq_inbound_dedupe"),
    ("outbox claim, notice lane: due pending rows that are not replies, oldest first",
     "SELECT * FROM outbox WHERE status = 'pending' AND kind <> 'reply' AND next_attempt_at <= now() "
     "AND channel IN ('rest', 'wechat') ORDER BY next_attempt_at, id LIMIT 100 FOR UPDATE SKIP LOCKED",
     "ix_outbox_pending_due"),
    ("outbox claim, reply lane: a customer's answer before a notice fan-out",
     "SELECT id FROM outbox WHERE status = 'pending' AND kind = 'reply' AND next_attempt_at <= now() "
     "AND channel IN ('rest', 'sms') ORDER BY next_attempt_at, id LIMIT 100 FOR UPDATE SKIP LOCKED",
     "ix_outbox_pending_reply_due"),
    ("outbox: orphaned 'sending' rows of a crashed process",
     "SELECT id FROM outbox WHERE status = 'sending' AND next_attempt_at < now() - interval '120 seconds'",
     "ix_outbox_sending_due"),
    ("cross-process reply lookup by dedupe prefix",
     "SELECT * FROM outbox WHERE dedupe_key LIKE 'in:42:%' ORDER BY id", "ix_outbox_dedupe_prefix"),
    ("REST poll: replies of one sender after a cursor",
     "SELECT * FROM outbox WHERE channel = 'rest' AND recipient_id = 'u1' AND id > 10 "
     "AND status = 'sent' AND provider_id = 'rest-poll' ORDER BY id LIMIT 100", "ix_outbox_rest_recipient"),
    ("SMS delivery receipt: the rows of one provider batch",
     "SELECT id FROM outbox WHERE channel = 'sms' AND provider_id = 'b-42' AND status IN ('sent', 'delivered')",
     "ix_outbox_sms_provider"),
    ("conversation lease take-over",
     "SELECT * FROM conversation_leases WHERE conversation_id = 'rest:u1' AND expires_at < now()",
     "conversation_leases_pkey"),
    ("dialogue events of a conversation, newest first",
     "SELECT text FROM dlg_events WHERE conversation_id = 'rest:u1' AND type = 'user' "
     "ORDER BY id DESC LIMIT 1", "ix_dlg_events_conv"),
    ("tracker load", "SELECT * FROM dlg_conversations WHERE id = 'rest:u1'", "dlg_conversations_pkey"),
    ("identity lookup", "SELECT * FROM dlg_identities WHERE channel = 'rest' AND sender_id = 'u1'",
     "uq_dlg_identity"),
    ("alipay reconciler: orders still pending after five minutes, oldest first",
     "SELECT out_trade_no FROM alipay_orders WHERE status = 'pending' AND created_at <= now() - interval '5 minutes' "
     "AND created_at >= now() - interval '1 day' ORDER BY created_at LIMIT 50", "ix_alipay_orders_pending"),
    ("handoff queue (console)",
     "SELECT * FROM handoffs WHERE status = 'waiting' ORDER BY created_at, id", "ix_handoffs_status_created"),
    ("active handoff of a conversation",
     "SELECT * FROM handoffs WHERE conversation_id = 'rest:u1' AND status IN ('waiting', 'assigned') "
     "ORDER BY id DESC", "ix_handoffs_conv_status"),
    ("console messages of a conversation",
     "SELECT * FROM console_messages WHERE conversation_id = 'rest:u1' ORDER BY id DESC LIMIT 50",
     "ix_console_messages_conv"),
    ("notify cursor", "SELECT cursor FROM notify_cursors WHERE name = 'core-events'", "notify_cursors_pkey"),
    ("WeChat token cache (database-only mode)", "SELECT * FROM cache_entries WHERE key = 'wechat:token:wx1'",
     "cache_entries_pkey"),
    ("WeChat 48-hour window ledger", "SELECT * FROM wechat_windows WHERE openid = 'o1'", "wechat_windows_pkey"),
    ("retention: the oldest SMS segments",
     "SELECT provider_id FROM sms_parts WHERE created_at < now() - interval '30 days' ORDER BY created_at LIMIT 1000",
     "ix_sms_parts_created"),
    ("verification failures of an identity and its account",
     "SELECT * FROM dlg_verification_failures WHERE account_number = '3100000001' AND identity IN ('rest:u1', '*')",
     "dlg_verification_failures_pkey"),
]


HEAD = "bot_0019_console_canned"


async def _heads(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return set((await conn.execute(text("SELECT version_num FROM alembic_version_bot"))).scalars())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("what,sql,index", HOT_QUERIES, ids=[q[0] for q in HOT_QUERIES])
async def test_hot_query_uses_an_index(pg_store: str, what: str, sql: str, index: str) -> None:
    engine = make_engine(pg_store)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SET enable_seqscan = off"))
            plan = "\n".join((await conn.execute(text("EXPLAIN " + sql))).scalars())
    finally:
        await engine.dispose()
    assert "Seq Scan" not in plan, f"{what}: no index serves\n{sql}\n{plan}"
    assert index in plan, f"{what}: expected {index}\n{plan}"


@pytest.fixture(scope="module")
def pg_store(postgres) -> str:  # type: ignore[no-untyped-def]
    import asyncio

    url = postgres.new_database("scaleidx")
    asyncio.run(upgrade(url, BOT_MIGRATIONS))
    return url


async def test_merge_migration_is_the_single_head_and_reversible(postgres_url: str, sqlite_url: str) -> None:
    for url in (postgres_url, sqlite_url):
        await upgrade(url, BOT_MIGRATIONS)
        assert await _heads(url) == {HEAD}
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                idx = await conn.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes("outbox")})
            assert "ix_outbox_pending_due" in idx
            assert ("ix_outbox_dedupe_prefix" in idx) == url.startswith("postgresql")  # see bot_0011
        finally:
            await engine.dispose()
        await downgrade(url, BOT_MIGRATIONS, "bot_0007_console")
        assert await _heads(url) == HEADS_BEFORE
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                idx = await conn.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes("outbox")})
            assert not ({"ix_outbox_pending_due", "ix_outbox_dedupe_prefix"} & idx)
        finally:
            await engine.dispose()
        await upgrade(url, BOT_MIGRATIONS)
        assert await _heads(url) == {HEAD}


# the hot path's writes: every index of these tables is maintained by each message and reply
WRITTEN_INDEXES = {
    "sqlite": {
        "inbound_messages": {"ix_inbound_conv_waiting", "ix_inbound_email_conv", "ix_inbound_held_due"},
        "outbox": {"ix_outbox_pending_due", "ix_outbox_pending_reply_due", "ix_outbox_rest_recipient",
                   "ix_outbox_sms_provider", "ix_outbox_sending_due"},
    },
    "postgresql": {  # (the unique constraints are indexes here too)
        "inbound_messages": {"ix_inbound_conv_waiting", "ix_inbound_email_conv", "ix_inbound_held_due",
                             "uq_inbound_dedupe"},
        "outbox": {"ix_outbox_pending_due", "ix_outbox_pending_reply_due", "ix_outbox_rest_recipient",
                   "ix_outbox_sms_provider", "ix_outbox_sending_due", "ix_outbox_dedupe_prefix", "uq_outbox_dedupe"},
    },
}


async def test_hot_path_indexes_migration_up_and_down(postgres_url: str, sqlite_url: str) -> None:
    """bot_0011 leaves only indexes some query reads (on SQLite, the orphaned-``sending`` scan
    is served by its partial index), and goes down to the indexes it dropped."""
    async def indexes(url: str) -> dict[str, set[str]]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda c: {
                    t: {i["name"] for i in inspect(c).get_indexes(t)} for t in ("inbound_messages", "outbox")})
        finally:
            await engine.dispose()

    for url in (postgres_url, sqlite_url):
        backend = "postgresql" if url.startswith("postgresql") else "sqlite"
        await upgrade(url, BOT_MIGRATIONS)
        assert await indexes(url) == WRITTEN_INDEXES[backend]
        if backend == "sqlite":
            engine = make_engine(url)
            try:
                async with engine.connect() as conn:
                    plan = " ".join(str(r[-1]) for r in await conn.execute(text(
                        "EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE status = 'sending' "
                        "AND next_attempt_at < '2026-12-01 00:00:00.000000'")))
            finally:
                await engine.dispose()
            assert "ix_outbox_sending_due" in plan, plan
        await downgrade(url, BOT_MIGRATIONS, "bot_0010_verification_identity")
        before = await indexes(url)
        assert {"ix_inbound_status_received"} <= before["inbound_messages"]
        assert {"ix_outbox_due", "ix_outbox_dedupe_prefix", "ix_outbox_recipient", "ix_outbox_provider"} <= before["outbox"]
        assert not {"ix_outbox_rest_recipient", "ix_outbox_sms_provider"} & before["outbox"]
        assert "ix_outbox_sending_due" not in before["outbox"]
        await upgrade(url, BOT_MIGRATIONS)
        assert await indexes(url) == WRITTEN_INDEXES[backend]


async def test_the_claim_and_recovery_statements_use_their_partial_indexes_on_sqlite(sqlite_url: str) -> None:
    """The statements the outbox worker, the recovery scan and the Alipay reconciler really
    run, with their real parameters, walk the partial indexes made for them (no scan, no sort).
    Without statistics SQLite preferred an index led by the claim's ``channel`` equality
    (``ix_outbox_provider``: every row the channel ever sent, then a sort) and, for the
    recovery scan's DISTINCT, the conversation index (every inbound row ever)."""
    from sqlalchemy import event

    from types import SimpleNamespace

    from bot.db import make_sessionmaker
    from bot.outbox import OutboxWorker
    from bot.pipeline import Pipeline
    from payments.alipay import AlipayPayments

    await upgrade(sqlite_url, BOT_MIGRATIONS)
    engine = make_engine(sqlite_url)
    seen: list[tuple[str, tuple]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(("UPDATE", "SELECT")):
            seen.append((statement, tuple(parameters)))

    try:
        sm = make_sessionmaker(engine)

        async def handler(message):  # type: ignore[no-untyped-def]
            return []

        event.listen(engine.sync_engine, "before_cursor_execute", capture)
        await OutboxWorker(sm, {"wechat": object()})._claim()  # type: ignore[dict-item]
        await Pipeline(sm, handler).recover_once()
        await AlipayPayments(SimpleNamespace(sessionmaker=sm), None, appid="", notify_url="").reconcile_pending()  # type: ignore[arg-type]
        event.remove(engine.sync_engine, "before_cursor_execute", capture)

        plans: dict[str, str] = {}
        async with engine.connect() as conn:
            for statement, params in seen:
                rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
                plans[statement] = " | ".join(str(r[-1]) for r in rows)
    finally:
        await engine.dispose()

    def plan_of(*words: str) -> str:
        (plan,) = [p for s, p in plans.items() if all(w in s for w in words)]
        return plan

    assert "ix_outbox_sending_due" in plan_of("UPDATE outbox", "status = 'sending'")
    assert "ix_outbox_pending_reply_due" in plan_of("UPDATE outbox", "kind = 'reply'")
    assert "ix_outbox_pending_due" in plan_of("UPDATE outbox", "kind != 'reply'")
    assert "ix_inbound_conv_waiting" in plan_of("FROM inbound_messages", "DISTINCT")
    assert "ix_inbound_held_due" in plan_of("UPDATE inbound_messages", "status = 'held'")
    assert "ix_alipay_orders_pending" in plan_of("FROM alipay_orders", "status = 'pending'")
    # a walk of ix_inbound_conv_waiting is a walk of the rows still waiting (a partial index),
    # the plan for a DISTINCT over them; any other SCAN reads rows that grow without bound
    bad = {s: p for s, p in plans.items()
           if "ix_outbox_provider" in p or "ORDER BY" in p or ("SCAN " in p and "ix_inbound_conv_waiting" not in p)}
    assert not bad, bad


async def test_the_rest_poll_and_sms_receipts_use_their_channel_indexes_on_sqlite(sqlite_url: str) -> None:
    """The two lookups of outbox rows by recipient and by provider id, compiled as the code
    runs them (values bound), walk the partial indexes of their channel's rows (bot_0013)."""
    from sqlalchemy.dialects import sqlite

    from bot.channel_store import poll_query, receipt_update

    await upgrade(sqlite_url, BOT_MIGRATIONS)
    engine = make_engine(sqlite_url)
    plans = {}
    try:
        async with engine.connect() as conn:
            for name, stmt, index in [
                ("rest poll", poll_query("rest", "u1", 10), "ix_outbox_rest_recipient"),
                ("sms receipt", receipt_update("sms", "b-42", "delivered", None), "ix_outbox_sms_provider"),
            ]:
                compiled = stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True})
                params = tuple(compiled.params[k] for k in compiled.positiontup)
                rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string, params)
                plans[name] = (index, " | ".join(str(r[-1]) for r in rows))
    finally:
        await engine.dispose()
    for name, (index, plan) in plans.items():
        assert index in plan and "SCAN " not in plan and "TEMP B-TREE" not in plan, (name, plan)
