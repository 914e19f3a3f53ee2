"""SQLite statements run on the event loop's thread; a file locked by another process is waited
for on aiosqlite's thread, with the loop still serving. And the new conversation's Core path
links customers: identity first, then a customer holding the accounts, else a new one."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from sqlalchemy import func, select, text

from backend_client.models import Account
from bot.db import WalCheckpointer, in_transaction, make_engine
from bot.dialogue.tracker_store import PlanMissed, _new_conversation_plan, run_plan
from bot.dialogue.turn import Turn
from bot.dialogue.store import Conversation, Customer, CustomerAccount, Event, Identity
from channels.base import Message


async def test_statements_run_on_the_loop_thread(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            # a SQL function that says which thread runs the statement
            raw._conn.create_function("tid", 0, threading.get_ident)
            ran_on = (await conn.execute(text("SELECT tid()"))).scalar()
        assert ran_on == threading.get_ident()
        assert await in_transaction(engine, lambda c: c.execute(text("SELECT tid()")).scalar()) == threading.get_ident()
    finally:
        await engine.dispose()


@pytest.mark.parametrize("path", ["async-connection", "in_transaction"])
async def test_locked_file_waits_on_the_driver_thread_and_the_loop_keeps_serving(tmp_path: Path, path: str) -> None:
    """Both ways statements run: through the async API (an await per statement) and inside
    ``in_transaction`` (the driver called directly)."""
    path = tmp_path / "x.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (v INTEGER)"))
        other = sqlite3.connect(path, isolation_level=None)  # another process's write, say a CLI command
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (1)")

        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async def write() -> None:
            if path == "in_transaction":
                await in_transaction(engine, lambda conn: conn.execute(text("INSERT INTO t VALUES (2)")))
                return
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (2)"))

        tick_task = asyncio.create_task(ticker())
        writer = asyncio.create_task(write())
        await asyncio.sleep(0.5)
        assert not writer.done()  # waiting for the lock, not failed with "database is locked"
        assert ticks >= 20  # ... and not on the event loop
        other.execute("COMMIT")
        await asyncio.wait_for(writer, 10)
        tick_task.cancel()
        async with engine.connect() as conn:
            assert sorted((await conn.execute(text("SELECT v FROM t"))).scalars()) == [1, 2]
            # the inline path is back to not waiting at all
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 0
        other.close()
    finally:
        await engine.dispose()


def _turn(sender: str, cid: str, text_: str = "你好") -> Turn:
    msg = Message(channel="wechat", sender_id=sender, text=text_, message_id=f"m-{sender}-{text_}")
    return Turn(message=msg, parse={"intent": {"name": "greet", "confidence": 0.9}, "entities": []}, lang="zh",
                intent="greet", confidence=0.9, entities={}, state={"slots": {"language": "zh"}},
                conversation_id=cid, customer_id=None, authorized=set())


async def _insert_new_conversation(engine, turn: Turn, identity) -> bool:  # type: ignore[no-untyped-def]
    """The new-conversation plan alone: True when written, False when it missed."""
    plan = _new_conversation_plan(turn, identity)
    try:
        await in_transaction(engine, lambda conn: run_plan(conn, plan))
    except PlanMissed:
        return False
    return True


def _account(number: str) -> Account:
    return Account(account_number=number, holder_name="张伟", phone="13800138000", address="碧波路1号",
                   district="浦东新区", category="residential")


async def _autocheckpoint(engine) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar()


async def _write_pages(engine, pages: int) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO blob_rows (v) VALUES (:v)"), [{"v": b"x" * 3500}] * pages)


async def test_wal_checkpoints_run_off_the_loop_and_keep_the_wal_small(tmp_path: Path) -> None:
    """The loop's connection does no automatic checkpoint while a checkpointer runs; the
    checkpointer's thread keeps the WAL from growing; afterwards the default comes back."""
    path = tmp_path / "x.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE blob_rows (v BLOB)"))
        assert await _autocheckpoint(engine) == 1000  # a connection opened before the start
        checkpointer = WalCheckpointer(engine, interval=0.05)
        await checkpointer.start()
        assert await _autocheckpoint(engine) == 0
        await engine.dispose()  # a connection opened while it runs gets the same setting
        assert await _autocheckpoint(engine) == 0
        wal = Path(f"{path}-wal")
        biggest = 0
        for _ in range(12):  # ~12 x 300 pages: far past the 1000-page automatic checkpoint
            await _write_pages(engine, 300)
            biggest = max(biggest, wal.stat().st_size)
            await asyncio.sleep(0.15)
        assert checkpointer.checkpoints >= 10
        # the WAL is reused from its start once checkpointed: it never held all the writes
        assert biggest < 3 * 300 * 4200
        await checkpointer.stop()
        assert await _autocheckpoint(engine) == 1000
    finally:
        await engine.dispose()


_START_STOP_SCRIPT = """
import asyncio, random, sys
from sqlalchemy import text
from bot.db import WalCheckpointer, in_transaction, make_engine

async def main():
    eng = make_engine(f"sqlite+aiosqlite:///{sys.argv[1]}")
    async with eng.begin() as c:
        await c.execute(text("CREATE TABLE t (v BLOB)"))
    for _ in range(120):
        ck = WalCheckpointer(eng, interval=0.001)
        await ck.start()
        for _ in range(random.randint(1, 4)):
            await in_transaction(eng, lambda c: c.execute(text("INSERT INTO t VALUES (:v)"), [{"v": b"x" * 4000}] * 50))
            await asyncio.sleep(random.random() * 0.003)
        await ck.stop()
    await eng.dispose()

asyncio.run(main())
"""


def test_checkpointer_stops_cleanly_while_a_checkpoint_runs(tmp_path: Path) -> None:
    """Start/stop cycles with checkpoints every millisecond, in a child process (what this
    guards against is a crash): a stop must wait for the checkpoint in progress on the worker
    thread, never close its connection under it (an earlier version segfaulted here)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _START_STOP_SCRIPT, str(tmp_path / "x.db")], cwd=root,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])


async def test_without_a_checkpointer_the_wal_would_grow(tmp_path: Path) -> None:
    """The control for the test above: automatic checkpoint off and nobody checkpointing."""
    path = tmp_path / "x.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE blob_rows (v BLOB)"))
            await conn.execute(text("PRAGMA wal_autocheckpoint=0"))
        for _ in range(12):
            await _write_pages(engine, 300)
        assert Path(f"{path}-wal").stat().st_size > 10 * 300 * 3500
    finally:
        await engine.dispose()


async def _wal_under_sustained_writes(path: Path, restart_frames: int | None) -> tuple[int, int]:
    """Write transactions back to back for 1.5 s with a checkpointer running: (biggest WAL in
    bytes, RESTART checkpoints run)."""
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE blob_rows (v BLOB)"))
        checkpointer = WalCheckpointer(engine, interval=0.02, restart_frames=restart_frames)
        await checkpointer.start()
        wal, biggest = Path(f"{path}-wal"), 0
        deadline = asyncio.get_running_loop().time() + 1.5
        while asyncio.get_running_loop().time() < deadline:
            await _write_pages(engine, 4)  # no pause: a PASSIVE checkpoint never catches up
            biggest = max(biggest, wal.stat().st_size)
        await checkpointer.stop()
        return biggest, checkpointer.restarts
    finally:
        await engine.dispose()


async def test_sustained_writes_do_not_grow_the_wal_without_end(tmp_path: Path) -> None:
    """Without a pause between writes SQLite never starts the WAL again after PASSIVE
    checkpoints (the WeChat benchmark's WAL reached 300 MB): past ``restart_frames`` the
    checkpointer runs a RESTART checkpoint, and the WAL stays near that size."""
    bounded, restarts = await _wal_under_sustained_writes(tmp_path / "bounded.db", restart_frames=200)
    grown, none = await _wal_under_sustained_writes(tmp_path / "grown.db", restart_frames=None)
    assert restarts >= 3 and none == 0
    # 200 frames + what 20 ms of writes add (5-6 MB here); the control, PASSIVE alone, 180 MB
    assert bounded < 40_000_000 and grown > 5 * bounded, (bounded, grown)


async def test_new_conversation_links_customers(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    engine = sessionmaker.kw["bind"]
    # a new sender the core knows nothing about: a new customer, no accounts
    assert await _insert_new_conversation(engine, _turn("oA", "wechat:oA"), ([], "bound"))
    # a sender the core binds to two accounts: a new customer holding both
    accounts = ([_account("3100000001"), _account("3100000003")], "bound")
    assert await _insert_new_conversation(engine, _turn("oB", "wechat:oB"), accounts)
    # the same person on SMS (phone match): the customer who already holds one of the accounts
    assert await _insert_new_conversation(engine, _turn("+8613800138000", "sms:+8613800138000"),
                                          ([_account("3100000001"), _account("3100000009")], "phone"))
    async with sessionmaker() as s:
        convs = {c.id: c for c in (await s.execute(select(Conversation))).scalars()}
        idents = {i.sender_id: i.customer_id for i in (await s.execute(select(Identity))).scalars()}
        held = sorted((a.customer_id, a.account_number, a.how)
                      for a in (await s.execute(select(CustomerAccount))).scalars())
        customers = (await s.execute(select(func.count()).select_from(Customer))).scalar()
        events = (await s.execute(select(func.count()).select_from(Event))).scalar()
    assert set(convs) == {"wechat:oA", "wechat:oB", "sms:+8613800138000"}
    assert all(c.version == 1 and c.state == {"slots": {"language": "zh"}} for c in convs.values())
    assert idents["oA"] != idents["oB"] and idents["+8613800138000"] == idents["oB"]
    assert convs["sms:+8613800138000"].customer_id == idents["oB"]
    assert customers == 2
    b = idents["oB"]
    assert held == [(b, "3100000001", "bound"), (b, "3100000003", "bound"), (b, "3100000009", "phone")]
    assert events == 3  # one user event per turn (these turns have no replies)

    # a conversation another process inserted first: nothing written, the caller takes the full path
    assert not await _insert_new_conversation(engine, _turn("oA", "wechat:oA", "again"), ([], "bound"))
    async with sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(Event))).scalar() == 3
        assert (await s.execute(select(func.count()).select_from(Customer))).scalar() == 2


async def _known_sender(sessionmaker, sender: str) -> int:  # type: ignore[no-untyped-def]
    """A WeChat identity with its customer and no conversation (linked by an agent, or the
    tracker row was purged); the customer's id."""
    async with sessionmaker() as s, s.begin():
        c = Customer()
        s.add(c)
        await s.flush()
        s.add(Identity(channel="wechat", sender_id=sender, customer_id=c.id))
        return c.id


async def test_existing_identity_keeps_its_customer(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    cid = await _known_sender(sessionmaker, "oC")
    # an identity without a conversation (linked by an agent, or the tracker row was purged)
    assert await _insert_new_conversation(sessionmaker.kw["bind"], _turn("oC", "wechat:oC"),
                                          ([_account("3100000001")], "bound"))
    async with sessionmaker() as s:
        conv = await s.get(Conversation, "wechat:oC")
        assert conv is not None and conv.customer_id == cid
        # the existing identity decides; accounts are linked by the flows that verify them
        assert (await s.execute(select(func.count()).select_from(CustomerAccount))).scalar() == 0


async def test_an_identity_without_accounts_to_link_keeps_its_customer(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """The common case (no accounts from the core; on PostgreSQL one statement): a known sender
    keeps its customer, an unknown one gets a new customer and identity."""
    known = await _known_sender(sessionmaker, "oD")
    engine = sessionmaker.kw["bind"]
    assert await _insert_new_conversation(engine, _turn("oD", "wechat:oD"), None)
    assert await _insert_new_conversation(engine, _turn("oE", "wechat:oE"), ([], "bound"))
    async with sessionmaker() as s:
        convs = {c.id: c for c in (await s.execute(select(Conversation))).scalars()}
        idents = {i.sender_id: i.customer_id for i in (await s.execute(select(Identity))).scalars()}
        customers = (await s.execute(select(func.count()).select_from(Customer))).scalar()
    assert convs["wechat:oD"].customer_id == idents["oD"] == known
    assert convs["wechat:oE"].customer_id == idents["oE"] != known
    assert customers == 2
    assert convs["wechat:oE"].state == {"slots": {"language": "zh"}} and convs["wechat:oE"].version == 1


async def test_a_long_reader_does_not_stall_writes_behind_a_restart(tmp_path: Path) -> None:
    """A RESTART checkpoint holds off writers while it waits for readers: with another
    connection holding a read transaction (a report, a backup), the checkpointer gives up after
    ``RESTART_WAIT`` and the loop's writes go on, instead of waiting behind it for seconds."""
    path = tmp_path / "x.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE blob_rows (v BLOB)"))
        checkpointer = WalCheckpointer(engine, interval=3600, restart_frames=50)
        await checkpointer.start()
        await _write_pages(engine, 100)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM blob_rows").fetchone()  # holds its snapshot of the WAL
        await _write_pages(engine, 100)  # frames the reader's snapshot does not include
        loop = asyncio.get_running_loop()
        started = loop.time()
        busy, _frames, _done = await asyncio.to_thread(checkpointer.checkpoint_now)
        waited = loop.time() - started
        assert checkpointer.restarts == 1 and busy == 1  # could not finish: the reader is there
        assert waited < 1.0, waited
        started = loop.time()
        await _write_pages(engine, 10)  # not held off by a RESTART still pending
        assert loop.time() - started < 1.0
        reader.execute("COMMIT")
        await checkpointer.stop()
    finally:
        reader.close()
        await engine.dispose()
