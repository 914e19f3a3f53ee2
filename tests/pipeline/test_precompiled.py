"""Statements run straight on the driver's cursor (``bot.precompiled``: SQLite, asyncpg) store
exactly what ``Connection.execute`` stores and read back exactly what it reads; other backends
take ``Connection.execute`` itself and give the same ``Rows``."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, exc, select

from bot.db import in_transaction, make_engine
from bot.dialogue.tracker_store import (
    _INSERT_EVENT,
    _INSERT_EVENT_P,
    _UPDATE_CONVERSATION,
    _UPDATE_CONVERSATION_P,
    read_snapshot,
)
from bot.dialogue.store import Conversation, Event
from bot.migrate import BOT_MIGRATIONS, upgrade
from bot.models import InboundMessage, OutboxMessage
from bot.inbound_store import FINISH_ROW, FINISH_ROW_P, INSERT_RETURNING, insert_stmt
from bot.precompiled import InsertReturning, Precompiled

NOW = datetime(2026, 12, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)


def _inbound(n: int, **extra: Any) -> dict[str, Any]:
    return {"channel": "wechat", "dedupe_key": f"m{n}", "sender_id": f"o{n % 3}", "conversation_id": f"wechat:o{n % 3}",
            "kind": "text", "text": f"电费 {n}", "payload": {"n": n, "中": "文"}, "received_at": NOW, **extra}


def _outbox(n: int) -> dict[str, Any]:
    return {"channel": "wechat", "recipient_id": f"o{n}", "conversation_id": f"wechat:o{n}", "dedupe_key": f"in:{n}:0",
            "kind": "reply", "payload": {"text": f"您好 {n}", "buttons": []}, "urgent": n % 2 == 0,
            "next_attempt_at": NOW + timedelta(seconds=n)}  # status, attempts, created_at: model defaults


def _writes(direct: bool) -> list[tuple[Any, Any]]:
    """The hot path's writes, as (how, params): ``how`` is a Precompiled / InsertReturning when
    ``direct``, else the plain statement for ``Connection.execute``."""
    conv = {"b_cid": "wechat:o1", "b_customer": 7, "b_state": {"slots": {"account": None}, "form": "bill"},
            "b_now": NOW}
    events = [{"conversation_id": "wechat:o1", "type": "user", "name": "query_bill", "text": "查电费",
               "message_id": "m1", "data": {"parse": {"intent": "query_bill"}, "slots": {}}, "created_at": NOW},
              {"conversation_id": "wechat:o1", "type": "bot", "name": None, "text": None, "message_id": None,
               "data": None, "created_at": NOW + timedelta(microseconds=1)}]
    finish = [{"b_id": 1, "b_now": NOW, "b_attempts": 1},
              {"b_id": 2, "b_now": NOW.replace(microsecond=0).astimezone(timezone(timedelta(hours=8))), "b_attempts": 3}]
    return [
        (_UPDATE_CONVERSATION_P if direct else _UPDATE_CONVERSATION, conv),
        (_INSERT_EVENT_P if direct else _INSERT_EVENT, events),
        (FINISH_ROW_P if direct else FINISH_ROW, finish),
    ]


# columns the rows leave to a model default of "now": equal in form, not in value
_CLOCK = {"inbound_messages": "next_attempt_at", "outbox": "created_at"}
_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")  # how SQLAlchemy stores a DateTime


def _dump(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables the writes touch, as SQLite stores them (no type processing)."""
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        for t in ("inbound_messages", "outbox", "dlg_conversations", "dlg_events"):
            rows = [dict(r) for r in con.execute(f"SELECT * FROM {t} ORDER BY 1")]  # noqa: S608 - fixed names
            for r in rows:
                if t in _CLOCK:
                    assert _STAMP.match(r.pop(_CLOCK[t])), r
            out[t] = rows
        return out
    finally:
        con.close()


async def _apply(url: str, direct: bool) -> tuple[list[Any], list[Any], list[int]]:
    """Run the hot path's statements one way; returns what the inserts returned and the rowcounts."""
    await upgrade(url, BOT_MIGRATIONS)
    engine = make_engine(url)
    inbound, outbox = InboundMessage.__table__, OutboxMessage.__table__
    rows_in = [_inbound(n) for n in range(5)] + [_inbound(1)]  # a duplicate: not returned
    rows_out = [_outbox(n) for n in range(4)]

    def work(conn: Any) -> tuple[list[Any], list[Any], list[int]]:
        conn.execute(Conversation.__table__.insert(), {
            "id": "wechat:o1", "channel": "wechat", "sender_id": "o1", "customer_id": 7, "state": {},
            "version": 3, "created_at": NOW, "updated_at": NOW})
        if direct:
            got_in = INSERT_RETURNING["inbound_messages"].run(conn, rows_in).all()
            got_out = INSERT_RETURNING["outbox"].run(conn, rows_out).all()
        else:
            got_in = [tuple(r) for r in conn.execute(insert_stmt(conn, inbound), rows_in).all()]
            got_out = [tuple(r) for r in conn.execute(insert_stmt(conn, outbox), rows_out).all()]
        counts = []
        for how, params in _writes(direct):
            res = how.run(conn, params) if direct else conn.execute(how, params)
            counts.append(res.rowcount)
        return sorted(got_in), sorted(got_out), counts

    try:
        return await in_transaction(engine, work)
    finally:
        await engine.dispose()


async def test_direct_statements_store_what_sqlalchemy_stores(tmp_path):
    a, b = tmp_path / "direct.db", tmp_path / "sqlalchemy.db"
    direct = await _apply(f"sqlite+aiosqlite:///{a}", True)
    plain = await _apply(f"sqlite+aiosqlite:///{b}", False)
    assert direct == plain
    assert [k for _, _, _, k in direct[0]] == ["m0", "m1", "m2", "m3", "m4"]
    assert direct[2] == [1, 2, 2]  # the guarded tracker update, two events, two inbound rows closed
    stored_direct, stored_plain = _dump(a), _dump(b)
    assert stored_direct == stored_plain
    # the columns the rows left out got their model defaults (status, attempts, next_attempt_at...)
    assert [(r["status"], r["attempts"]) for r in stored_direct["inbound_messages"]] == \
        [("done", 1), ("done", 3), ("received", 0), ("received", 0), ("received", 0)]
    assert {(r["status"], r["attempts"]) for r in stored_direct["outbox"]} == {("pending", 0)}


async def test_snapshot_reads_the_same_through_both_paths(tmp_path, store_url):
    await _apply(store_url, direct=True)
    engine = make_engine(store_url)
    try:
        snap = await in_transaction(engine, lambda conn: read_snapshot(conn, "wechat:o1", "m1", None))
        probe = select(Event.__table__.c.id).where(Event.__table__.c.type == "bot").limit(1).scalar_subquery()
        with_probe = await in_transaction(engine, lambda conn: read_snapshot(conn, "wechat:o1", "m1", probe))
        plain = await in_transaction(engine, lambda conn: conn.execute(
            select(Conversation.__table__.c.state, Conversation.__table__.c.version)
            .where(Conversation.__table__.c.id == "wechat:o1")).first())
    finally:
        await engine.dispose()
    assert snap.state == plain.state == {"slots": {"account": None}, "form": "bill"}  # JSON read back
    assert snap.version == plain.version == 4 and snap.customer_id == 7
    assert snap.recorded and snap.handoff is None and snap.probe is None
    assert with_probe.probe is not None


async def test_errors_are_sqlalchemy_errors_and_roll_back(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'e.db'}"
    await upgrade(url, BOT_MIGRATIONS)
    engine = make_engine(url)
    bad = [{"conversation_id": None, "type": "user", "name": None, "text": None, "message_id": None,
            "data": None, "created_at": NOW}]  # conversation_id is NOT NULL
    try:
        def work(conn: Any) -> None:
            _INSERT_EVENT_P.run(conn, [dict(bad[0], conversation_id="c1")])
            _INSERT_EVENT_P.run(conn, bad)

        with pytest.raises(exc.IntegrityError):
            await in_transaction(engine, work)
        count = await in_transaction(engine, lambda conn: conn.execute(select(Event.__table__.c.id)).all())
    finally:
        await engine.dispose()
    assert count == []  # the first insert went with the transaction


async def test_refuses_what_it_cannot_reproduce(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    await upgrade(url, BOT_MIGRATIONS)
    engine = make_engine(url)
    table = OutboxMessage.__table__
    expanding = Precompiled(select(table.c.id).where(table.c.id.in_(bindparam("ids", expanding=True))))
    try:
        with pytest.raises(exc.ArgumentError, match="expanding"):
            await in_transaction(engine, lambda conn: expanding.run(conn, [{"ids": [1, 2]}, {"ids": [3]}]))
        with pytest.raises(exc.ArgumentError, match="missing value"):
            await in_transaction(engine, lambda conn: FINISH_ROW_P.run(conn, {"b_id": 1}))
        with pytest.raises(exc.ArgumentError, match="cannot return rows"):
            await in_transaction(engine, lambda conn: Precompiled(select(table.c.id).where(
                table.c.id == bindparam("i"))).run(conn, [{"i": 1}, {"i": 2}]))
    finally:
        await engine.dispose()


async def test_insert_returning_in_chunks_on_both_backends(store_url, monkeypatch):
    await upgrade(store_url, BOT_MIGRATIONS)
    engine = make_engine(store_url)
    table = InboundMessage.__table__
    ins = InsertReturning(table, ("id", "channel", "sender_id", "dedupe_key"), conflict=("channel", "sender_id", "dedupe_key"),
                          fallback=lambda conn: insert_stmt(conn, table))
    monkeypatch.setattr(InsertReturning, "CHUNK", 7)
    rows = [_inbound(n) for n in range(30)]
    try:
        first = await in_transaction(engine, lambda conn: ins.run(conn, rows[:20]))
        second = await in_transaction(engine, lambda conn: ins.run(conn, rows))  # 20 already there
    finally:
        await engine.dispose()
    assert first.rowcount == 20 and len({r[0] for r in first.rows}) == 20
    assert sorted(int(r[3][1:]) for r in second.rows) == list(range(20, 30))


async def test_expanding_in_is_rendered_per_length(store_url):
    """``IN`` over a list given per execution: the SQL is rendered for each list length (and
    for the empty list) and reads what ``Connection.execute`` reads."""
    await upgrade(store_url, BOT_MIGRATIONS)
    engine = make_engine(store_url)
    table = InboundMessage.__table__
    stmt = select(table.c.dedupe_key).where(table.c.id.in_(bindparam("ids", expanding=True)),
                                           table.c.received_at >= bindparam("since")).order_by(table.c.id)
    pre = Precompiled(stmt)
    since = NOW - timedelta(days=1)
    try:
        got = await in_transaction(engine, lambda conn: (
            INSERT_RETURNING["inbound_messages"].run(conn, [_inbound(n) for n in range(6)]),
            [(pre.run(conn, {"ids": ids, "since": since}).all(),
              [tuple(r) for r in conn.execute(stmt, {"ids": ids, "since": since}).all()])
             for ids in ([1, 3], [2], [], [6, 5, 4, 99], [1, 3])],
        )[1])
    finally:
        await engine.dispose()
    for direct, plain in got:
        assert direct == plain
    assert [d for d, _ in got] == [[("m0",), ("m2",)], [("m1",)], [], [("m3",), ("m4",), ("m5",)], [("m0",), ("m2",)]]


async def test_json_columns_read_back_what_was_written_and_legacy_nan(store_url):
    """JSON columns are written by orjson and read by orjson, on both backends: non-ASCII text,
    nested values and non-string keys come back as ``json.dumps``/``json.loads`` would give
    them; a value only the standard library reads (``NaN``, in a row written before orjson)
    still reads (SQLite; PostgreSQL's json type refuses NaN itself)."""
    import math

    from sqlalchemy import text

    await upgrade(store_url, BOT_MIGRATIONS)
    engine = make_engine(store_url)
    value = {"text": "您好，95598", "n": [1, 2.5, None, True], "nested": {"a": {"b": "c"}}, 7: "seven"}
    try:
        async with engine.begin() as conn:
            await conn.execute(InboundMessage.__table__.insert(), {
                "channel": "rest", "dedupe_key": "j1", "sender_id": "u", "conversation_id": "rest:u", "payload": value})
        async with engine.connect() as conn:
            got = (await conn.execute(select(InboundMessage.payload).where(InboundMessage.dedupe_key == "j1"))).scalar_one()
        assert got == {"text": "您好，95598", "n": [1, 2.5, None, True], "nested": {"a": {"b": "c"}}, "7": "seven"}
        if store_url.startswith("sqlite"):
            async with engine.begin() as conn:
                await conn.execute(text(
                    "INSERT INTO inbound_messages (channel, dedupe_key, sender_id, conversation_id, kind, text, payload, "
                    "status, attempts, next_attempt_at, received_at) VALUES ('rest', 'j2', 'u', 'rest:u', 'text', '', "
                    "'{\"amount\": NaN}', 'done', 0, '2026-12-01 00:00:00.000000', '2026-12-01 00:00:00.000000')"))
            async with engine.connect() as conn:
                legacy = (await conn.execute(select(InboundMessage.payload).where(InboundMessage.dedupe_key == "j2"))).scalar_one()
            assert math.isnan(legacy["amount"])
    finally:
        await engine.dispose()


async def test_batches_of_every_size_compile_a_few_statements(sqlite_url):
    """Group writes come in every size; each size was a compile (~1 ms) and an entry in
    SQLite's statement cache. Inserts go in power-of-two chunks and ``IN`` lists are padded
    to a power of two (repeating their last value): a handful of statements for every size,
    with the same rows and results."""
    from bot.precompiled import _bucket, _pieces

    assert [_bucket(n) for n in (0, 1, 2, 3, 5, 8, 9, 100)] == [1, 1, 2, 4, 8, 8, 16, 128]
    assert _pieces(107, 128) == [64, 32, 8, 2, 1] and _pieces(300, 128) == [128, 128, 32, 8, 4]
    assert all(sum(_pieces(n, 128)) == n for n in range(0, 600))
    await upgrade(sqlite_url, BOT_MIGRATIONS)
    engine = make_engine(sqlite_url)
    table = InboundMessage.__table__
    ins = InsertReturning(table, ("id", "channel", "sender_id", "dedupe_key"), conflict=("channel", "sender_id", "dedupe_key"),
                          fallback=lambda conn: insert_stmt(conn, table))
    stmt = select(table.c.dedupe_key).where(table.c.id.in_(bindparam("ids", expanding=True))).order_by(table.c.id)
    pre = Precompiled(stmt)
    try:
        def write(conn):  # type: ignore[no-untyped-def]
            inserted, start = [], 0
            for n in range(1, 61):  # 1 + 2 + ... + 60 rows, one batch of each size
                got = ins.run(conn, [_inbound(start + i) for i in range(n)])
                inserted.append(len(got.rows))
                start += n
            reads = [(pre.run(conn, {"ids": list(range(1, n + 1))}).all(),
                      [tuple(r) for r in conn.execute(stmt, {"ids": list(range(1, n + 1))}).all()])
                     for n in range(1, 41)]
            return inserted, reads

        inserted, reads = await in_transaction(engine, write)
    finally:
        await engine.dispose()
    assert inserted == list(range(1, 61))
    assert all(direct == plain and len(direct) == n for n, (direct, plain) in enumerate(reads, start=1))
    assert len(ins._compiled) <= 6  # 1, 2, 4, 8, 16, 32
    assert len(pre._compiled) <= 7  # the first length, then 1, 2, 4, 8, 16, 32, 64 lengths in use


async def test_direct_statements_store_what_sqlalchemy_stores_on_postgresql(postgres) -> None:  # type: ignore[no-untyped-def]
    """The same writes on PostgreSQL: asyncpg's cursor (the inserts as one ``unnest`` statement)
    against ``Connection.execute``: the same rows returned, counted and stored."""
    from sqlalchemy import text

    import asyncio

    a, b = await asyncio.to_thread(postgres.new_database), await asyncio.to_thread(postgres.new_database)
    direct = await _apply(a, True)
    plain = await _apply(b, False)
    assert direct == plain
    assert sorted(k for _, _, _, k in direct[0]) == ["m0", "m1", "m2", "m3", "m4"]
    assert direct[2][0] == 1  # the guarded update (asyncpg's executemany reports no count: -1 both ways)

    async def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                out = {}
                for t in ("inbound_messages", "outbox", "dlg_conversations", "dlg_events"):
                    rows = (await conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))).mappings().all()  # noqa: S608
                    out[t] = [{k: v for k, v in r.items() if k != _CLOCK.get(t)} for r in rows]
                return out
        finally:
            await engine.dispose()

    stored_direct, stored_plain = await dump(a), await dump(b)
    assert stored_direct == stored_plain
    assert stored_direct["inbound_messages"][0]["payload"] == {"n": 0, "中": "文"}
    assert [(r["status"], r["attempts"]) for r in stored_direct["inbound_messages"]] == \
        [("done", 1), ("done", 3), ("received", 0), ("received", 0), ("received", 0)]
