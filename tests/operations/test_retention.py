"""Retention purge (bot/retention.py), on both stores: what goes, what stays, in batches."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from bot.dialogue.store import Event
from bot.models import InboundMessage, OutboxMessage
from bot.retention import RetentionPolicy, RetentionTask, purge
from channels.sms_store import SmsPart

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def _days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


async def _fill(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """Rows in insertion (id) order, oldest first, as the gateway writes them."""
    inbound = [  # (age in days, status)
        (90, "done"), (60, "received"), (45, "failed"), (40, "done"), (31, "done"),
        (29, "done"), (10, "done"), (1, "received"),
    ]
    outbox = [
        (90, "sent"), (80, "pending"), (70, "dead"), (60, "sending"), (50, "delivered"),
        (40, "cancelled"), (20, "sent"), (1, "pending"),
    ]
    events = [400, 380, 366, 300, 10]
    # SMS segments keyed by the provider's ids, in no order of age: the purge goes by created_at
    parts = {"p-m": 90, "p-z": 45, "p-a": 31, "p-b": 29, "p-c": 1}
    async with sessionmaker() as s, s.begin():
        for provider_id, age in parts.items():
            s.add(SmsPart(provider_id=provider_id, batch_ref=f"b-{age}", part=1, parts=1, created_at=_days_ago(age)))
        for i, (age, status) in enumerate(inbound):
            s.add(InboundMessage(channel="wechat", dedupe_key=f"m{i}", sender_id="o1", conversation_id="wechat:o1",
                                 text=f"in-{age}-{status}", status=status, received_at=_days_ago(age)))
            await s.flush()
        for i, (age, status) in enumerate(outbox):
            s.add(OutboxMessage(channel="wechat", recipient_id="o1", payload={}, dedupe_key=f"r{i}",
                                status=status, created_at=_days_ago(age)))
            await s.flush()
        for age in events:
            s.add(Event(conversation_id="wechat:o1", type="user", text=f"ev-{age}", data={}, created_at=_days_ago(age)))
            await s.flush()


async def _left(sessionmaker) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    async with sessionmaker() as s:
        inbound = (await s.execute(select(InboundMessage.text).order_by(InboundMessage.id))).scalars().all()
        outbox = (await s.execute(select(OutboxMessage.status, OutboxMessage.created_at).order_by(OutboxMessage.id))).all()
        events = (await s.execute(select(Event.text).order_by(Event.id))).scalars().all()
        parts = (await s.execute(select(SmsPart.provider_id).order_by(SmsPart.provider_id))).scalars().all()
    return {"inbound": list(inbound), "outbox": [st for st, _ in outbox], "events": list(events), "parts": list(parts)}


async def test_finished_old_rows_go_unfinished_and_recent_rows_stay(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    await _fill(sessionmaker)
    policy = RetentionPolicy(finished_days=30, history_days=365, batch_size=3)  # several batches

    dry = await purge(sessionmaker, policy, now=NOW, dry_run=True)
    assert dry == {"inbound_messages": 4, "outbox": 4, "dlg_events": 3, "sms_parts": 3}
    assert len((await _left(sessionmaker))["inbound"]) == 8  # a dry run deletes nothing

    assert await purge(sessionmaker, policy, now=NOW) == dry
    left = await _left(sessionmaker)
    # a message still waiting is never deleted, however old
    assert left["inbound"] == ["in-60-received", "in-29-done", "in-10-done", "in-1-received"]
    assert left["outbox"] == ["pending", "sending", "sent", "pending"]
    assert left["events"] == ["ev-300", "ev-10"]
    assert left["parts"] == ["p-b", "p-c"]  # the segments of the last 30 days
    # a second run finds nothing more
    assert await purge(sessionmaker, policy, now=NOW) == {"inbound_messages": 0, "outbox": 0, "dlg_events": 0,
                                                           "sms_parts": 0}


async def test_zero_days_keeps_everything(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    await _fill(sessionmaker)
    assert await purge(sessionmaker, RetentionPolicy(finished_days=0, history_days=0), now=NOW) == {}
    assert await purge(sessionmaker, RetentionPolicy(finished_days=0, history_days=30), now=NOW) == {"dlg_events": 4}
    left = await _left(sessionmaker)
    assert len(left["inbound"]) == 8 and len(left["outbox"]) == 8 and left["events"] == ["ev-10"]
    assert len(left["parts"]) == 5


async def test_the_walk_stops_at_the_first_recent_row(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """A run reads what it deletes plus one batch, not the whole table: rows past the first
    recent one are not looked at, even an old finished one (ids follow insertion time)."""
    async with sessionmaker() as s, s.begin():
        for i, age in enumerate([50, 40, 5, 4, 3, 2, 60]):  # the last one out of order
            s.add(InboundMessage(channel="sms", dedupe_key=f"k{i}", sender_id="p", conversation_id="sms:p",
                                 text=f"t{age}", status="done", received_at=_days_ago(age)))
            await s.flush()
    got = await purge(sessionmaker, RetentionPolicy(finished_days=30, history_days=0, batch_size=2), now=NOW)
    assert got == {"inbound_messages": 2, "outbox": 0, "sms_parts": 0}
    async with sessionmaker() as s:
        assert (await s.execute(select(InboundMessage.text).order_by(InboundMessage.id))).scalars().all() == [
            "t5", "t4", "t3", "t2", "t60"]


async def test_the_background_task_purges_and_stops(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """The task measures ages from its clock (here the rows' fixed NOW, so the counts do not
    depend on the day the test runs)."""
    await _fill(sessionmaker)
    task = RetentionTask(sessionmaker, RetentionPolicy(finished_days=30, history_days=365), interval=3600, first_delay=0,
                         clock=lambda: NOW)
    task.start()
    try:
        for _ in range(200):
            if task.runs:
                break
            await asyncio.sleep(0.02)
    finally:
        await task.stop()
    assert task.runs == 1 and task.last == {"inbound_messages": 4, "outbox": 4, "dlg_events": 3, "sms_parts": 3}
    async with sessionmaker() as s:
        assert await s.scalar(select(func.count()).select_from(InboundMessage)) == 4


def test_the_purge_command(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``powerbot db purge`` on the embedded store: counts with --dry-run, then deletes."""
    from bot.cli import main
    from bot.db import make_engine, make_sessionmaker
    from bot.migrate import BOT_MIGRATIONS, upgrade
    from bot.settings import get_settings

    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    monkeypatch.setenv("POWERBOT_DATABASE_URL", url)
    monkeypatch.setenv("POWERBOT_RETENTION_DAYS", "30")
    get_settings.cache_clear()

    async def prepare() -> None:
        await upgrade(url, BOT_MIGRATIONS)
        engine = make_engine(url)
        try:
            sm = make_sessionmaker(engine)
            async with sm() as s, s.begin():  # finished long ago, and one just now
                s.add(InboundMessage(channel="sms", dedupe_key="old", sender_id="p", conversation_id="sms:p",
                                     status="done", received_at=datetime.now(timezone.utc) - timedelta(days=31)))
                s.add(InboundMessage(channel="sms", dedupe_key="new", sender_id="p", conversation_id="sms:p",
                                     status="done"))
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    try:
        runner = CliRunner()
        dry = runner.invoke(main, ["db", "purge", "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "inbound_messages: would delete 1 rows" in dry.output
        done = runner.invoke(main, ["db", "purge"])
        assert done.exit_code == 0 and "inbound_messages: deleted 1 rows" in done.output, done.output
        again = runner.invoke(main, ["db", "purge"])
        assert "inbound_messages: deleted 0 rows" in again.output
    finally:
        get_settings.cache_clear()


async def test_the_gateway_runs_the_purge(sqlite_url, interpreter, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Wired into the gateway (a feature module): old finished rows go while it serves."""
    from bot.app import SESSIONMAKER
    from bot.retention import RETENTION
    from stack import run_gateway, wait_until

    async with run_gateway(sqlite_url, "http://127.0.0.1:9", interpreter, data_dir=tmp_path,
                           retention_interval_seconds=0.05) as gw:
        sm = gw.app[SESSIONMAKER]
        async with sm() as s, s.begin():
            for i, age in enumerate([400, 40, 1]):
                s.add(InboundMessage(channel="sms", dedupe_key=f"g{i}", sender_id="p", conversation_id="sms:p",
                                     status="done", received_at=datetime.now(timezone.utc) - timedelta(days=age)))

        async def one_left() -> bool:
            async with sm() as s:
                return await s.scalar(select(func.count()).select_from(InboundMessage)) == 1

        await wait_until(one_left, timeout=10)
        assert gw.app[RETENTION].runs >= 1


async def test_each_table_owner_declares_its_purge(sessionmaker, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The bot's tables are registered in ``bot.retention``; a channel's own tables come from
    its ``Channel.purges`` (the SMS segments), collected by the app wiring; a purge registered
    later runs with the cutoff of the policy field it names."""
    import bot.retention as retention
    from channels.sms import SmsChannel
    from channels.sms_store import PURGE_PARTS

    assert SmsChannel.purges == (PURGE_PARTS,)
    assert [p.name for p in retention.purges()] == ["inbound_messages", "outbox", "dlg_events", "sms_parts"]

    cutoffs: list[tuple[datetime, int, bool]] = []

    async def audit(engine, cutoff, batch_size, dry_run):  # type: ignore[no-untyped-def]
        cutoffs.append((cutoff, batch_size, dry_run))
        return 7

    monkeypatch.setattr(retention, "_REGISTERED", dict(retention._REGISTERED))
    retention.register(retention.Purge("audit_rows", "history", audit))
    got = await purge(sessionmaker, RetentionPolicy(finished_days=0, history_days=10, batch_size=5), now=NOW, dry_run=True)
    assert got == {"dlg_events": 0, "audit_rows": 7}
    assert cutoffs == [(NOW - timedelta(days=10), 5, True)]
    with pytest.raises(ValueError):
        retention.register(retention.Purge("audit_rows", "forever", audit))
