"""Notification pipeline end to end: real core, real gateway, local SMS provider, SMTP relay.

Events are produced by the core's own API (planned outage via ``powerbot notify outage``,
work-order transitions, bills); the gateway's producer reads the feed, the outbox delivers
through the real SMS / e-mail / WeChat channels to loopback platforms.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import pytest_asyncio
from click.testing import CliRunner
from sqlalchemy import select, update

import bot.outbox as outbox_mod
from backend_client import CoreClient
from bot.models import OutboxMessage
from bot.notify import PRODUCER
from bot.notify.models import NotifyCursor
from stack import run_gateway, wait_until
from notify_support import (
    accounts_by_district,
    e164,
    gateway_settings,
    run_relay,
    run_sms_provider,
)
from wechat_platform import APPID, SECRET, TOKEN, new_openid, run_wechat_api

pytestmark = pytest.mark.asyncio(loop_scope="module")
SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def accounts(core) -> dict[str, list[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    return accounts_by_district(core.db_url)


@pytest_asyncio.fixture(loop_scope="module")
async def cc(core) -> AsyncIterator[CoreClient]:  # type: ignore[no-untyped-def]
    async with CoreClient(core.url) as client:
        yield client


def first_parts(provider) -> list[dict]:  # type: ignore[no-untyped-def]
    """One entry per SMS notice (long texts go out as several parts)."""
    return [m for m in provider.messages if m.get("part", 1) == 1]


def full_text(provider, phone: str) -> list[str]:  # type: ignore[no-untyped-def]
    by_ref: dict[str, list[tuple[int, str]]] = {}
    for m in provider.to(phone):
        by_ref.setdefault(m["client_ref"].rsplit("-", 1)[0], []).append((m["part"], m["text"]))
    return ["".join(t for _, t in sorted(parts)) for parts in by_ref.values()]


async def notice_rows(gw, *where) -> list[OutboxMessage]:  # type: ignore[no-untyped-def]
    from bot.app import SESSIONMAKER

    async with gw.app[SESSIONMAKER]() as s:
        return list((await s.execute(select(OutboxMessage).where(OutboxMessage.kind == "notice", *where))).scalars())


def cli_outage(core_url: str, district: str, cause: str, *, start: datetime, hours: int = 4) -> str:
    from bot.cli import main
    from bot.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            main,
            ["notify", "outage", "--district", district, "--cause", cause,
             "--start", start.astimezone(SH).strftime("%Y-%m-%dT%H:%M"),
             "--end", (start + timedelta(hours=hours)).astimezone(SH).strftime("%Y-%m-%dT%H:%M")],
            env={"POWERBOT_CORE_URL": core_url},
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


async def create_outage(cc: CoreClient, district: str, cause: str = "线路检修") -> int:
    start = datetime.now(timezone.utc) + timedelta(days=2)
    o = await cc.create_outage("planned", district, f"{district}部分区域", start,
                               estimated_end_at=start + timedelta(hours=4), cause=cause)
    return o.id


# ----------------------------------------------------------------------------------------
async def test_planned_outage_reaches_every_subscriber_in_the_district_once(core, accounts, cc, sqlite_url, interpreter):  # type: ignore[no-untyped-def]
    district = "浦东新区"
    accs = accounts[district]
    sms_subs, email_acc, wechat_acc, bill_only = accs[:6], accs[6], accs[7], accs[8]
    elsewhere = accounts["崇明区"][:3]
    for acc, phone in sms_subs:
        await cc.create_subscription(acc, "outage", "sms", phone)  # 11 digits: normalised to +86
    await cc.create_subscription(sms_subs[0][0], "outage", "email", "first@example.com")  # 2 channels
    await cc.create_subscription(email_acc[0], "outage", "email", "only-mail@example.com")
    await cc.create_subscription(wechat_acc[0], "outage", "wechat", new_openid())  # WeChat off → SMS
    await cc.create_subscription(bill_only[0], "bill", "sms", bill_only[1])
    for acc, phone in elsewhere:
        await cc.create_subscription(acc, "outage", "sms", phone)

    async with run_sms_provider() as prov, run_relay() as (relay, rport):
        async with run_gateway(sqlite_url, core.url, interpreter, **gateway_settings(prov, rport)) as gw:
            cursor0 = await gw.app[PRODUCER].cursor()
            start = datetime.now(timezone.utc) + timedelta(days=3)
            out = await asyncio.to_thread(cli_outage, core.url, district, "10千伏线路检修", start=start)
            assert '"kind": "planned"' in out
            expected = sorted(e164(p) for _, p in sms_subs + [wechat_acc])
            await wait_until(lambda: len(first_parts(prov)) >= len(expected) and len(relay.mails) >= 2, timeout=20)
            await asyncio.sleep(0.6)  # anything extra would show up now
            assert sorted(m["to"] for m in first_parts(prov)) == expected
            assert prov.rejected == []
            text = full_text(prov, e164(sms_subs[1][1]))[0]
            assert "计划停电" in text and "10千伏线路检修" in text
            assert f"{start.astimezone(SH).month}月{start.astimezone(SH).day}日" in text
            assert sorted(r for rcpts, _ in relay.mails for r in rcpts) == ["first@example.com", "only-mail@example.com"]
            assert relay.to("first@example.com")[0]["Subject"] == "计划停电通知"
            for acc, phone in elsewhere + [bill_only]:
                assert prov.to(e164(phone)) == []

            # Reading the feed again (cursor lost after the crash of a pass) queues nothing new.
            from bot.app import SESSIONMAKER

            before = len(await notice_rows(gw))
            async with gw.app[SESSIONMAKER]() as s, s.begin():
                await s.execute(update(NotifyCursor).values(cursor=cursor0, position=int(cursor0)))
            await gw.app[PRODUCER].drain()
            await asyncio.sleep(0.3)
            assert len(await notice_rows(gw)) == before == len(expected) + 2
            assert len(first_parts(prov)) == len(expected)

            # Power restored → the same subscribers hear it once more.
            outage_id = (await cc.list_outages(district=district, status="scheduled"))[-1].id
            await cc.update_outage(outage_id, status="active")
            await cc.update_outage(outage_id, status="restored")
            await wait_until(lambda: len(first_parts(prov)) >= 2 * len(expected), timeout=15)
            await asyncio.sleep(0.4)
            assert len(first_parts(prov)) == 2 * len(expected)
            assert any("恢复送电" in t for t in full_text(prov, e164(sms_subs[2][1])))


async def test_work_order_progress_and_bill_reach_their_customer(core, accounts, cc, sqlite_url, interpreter):  # type: ignore[no-untyped-def]
    (acc, phone), (other, other_phone) = accounts["徐汇区"][:2]
    await cc.create_subscription(acc, "work_order", "sms", phone)
    await cc.create_subscription(other, "work_order", "sms", other_phone)
    await cc.create_subscription(acc, "bill", "email", "bill@example.com")
    async with run_sms_provider() as prov, run_relay() as (relay, rport):
        async with run_gateway(sqlite_url, core.url, interpreter, **gateway_settings(prov, rport)) as gw:
            wo = await cc.create_work_order("repair", "家里跳闸没电", account_number=acc, idempotency_key=uuid.uuid4().hex)
            await cc.transition_work_order(wo.id, "dispatched")
            await wait_until(lambda: prov.to(e164(phone)), timeout=15)
            await asyncio.sleep(0.5)
            texts = full_text(prov, e164(phone))
            assert len(texts) == 1 and wo.id in texts[0] and "已派单" in texts[0]  # 'created' is not notified
            assert prov.to(e164(other_phone)) == []
            await cc.transition_work_order(wo.id, "in_progress", note="抢修人员已到达现场")
            await wait_until(lambda: len(full_text(prov, e164(phone))) == 2, timeout=15)
            assert any("抢修人员已到达现场" in t for t in full_text(prov, e164(phone)))

            bill = await cc.issue_bill(acc, f"{datetime.now(SH).year + 1}-01", 215)  # a month the seed never billed
            await wait_until(lambda: relay.to("bill@example.com"), timeout=15)
            mail = relay.to("bill@example.com")[0]
            assert mail["Subject"] == "电费账单通知"
            body = mail.get_body(("plain",)).get_content()
            assert str(bill.amount) in body and acc not in body  # account number masked
            assert len(await notice_rows(gw)) == 3


async def test_quiet_hours_hold_sms_notices_but_not_email(core, accounts, cc, sqlite_url, interpreter):  # type: ignore[no-untyped-def]
    (acc, phone), = accounts["黄浦区"][:1]
    await cc.create_subscription(acc, "outage", "sms", phone)
    await cc.create_subscription(acc, "outage", "email", "night@example.com")
    now = datetime.now(SH)
    window = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=1)):%H:%M}"
    quiet_end = (now + timedelta(hours=1)).replace(second=0, microsecond=0)
    async with run_sms_provider() as prov, run_relay() as (relay, rport):
        settings = gateway_settings(prov, rport, notify_quiet_hours=window)
        async with run_gateway(sqlite_url, core.url, interpreter, **settings) as gw:
            await create_outage(cc, "黄浦区")
            await wait_until(lambda: relay.to("night@example.com"), timeout=15)

            async def held():  # type: ignore[no-untyped-def]
                rows = await notice_rows(gw, OutboxMessage.channel == "sms")
                return rows if rows and rows[0].status == "pending" and rows[0].attempts == 0 and \
                    outbox_mod.as_aware(rows[0].next_attempt_at) > datetime.now(timezone.utc) + timedelta(minutes=30) else None

            rows = await wait_until(held, timeout=15)
            assert abs(outbox_mod.as_aware(rows[0].next_attempt_at) - quiet_end) < timedelta(minutes=2)
            await asyncio.sleep(0.5)
            assert prov.messages == []  # nothing sent during quiet hours


async def test_dead_letter_after_n_failures_then_no_duplicate_fallback(core, accounts, cc, sqlite_url, interpreter, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(outbox_mod, "backoff", lambda attempts: timedelta(milliseconds=50))
    (acc, phone), = accounts["宝山区"][:1]
    await cc.create_subscription(acc, "outage", "sms", phone)
    await cc.create_subscription(acc, "outage", "email", "dead@example.com")
    async with run_sms_provider() as prov, run_relay() as (relay, rport):
        prov.fail_with = [503] * 10
        settings = gateway_settings(prov, rport, outbox_max_attempts=3)
        async with run_gateway(sqlite_url, core.url, interpreter, **settings) as gw:
            await create_outage(cc, "宝山区")

            async def dead():  # type: ignore[no-untyped-def]
                rows = await notice_rows(gw, OutboxMessage.channel == "sms", OutboxMessage.status == "dead")
                return rows or None

            rows = await wait_until(dead, timeout=15)
            assert rows[0].attempts == 3 and "503" in (rows[0].last_error or "")
            assert len(prov.fail_with) == 7  # exactly 3 attempts reached the provider
            await wait_until(lambda: relay.mails, timeout=10)
            await asyncio.sleep(0.5)
            # The SMS chain falls back to e-mail, which this customer already got: still one mail.
            assert len(relay.to("dead@example.com")) == 1
            assert prov.messages == []


async def test_wechat_refusal_falls_back_to_template_then_sms(core, accounts, cc, tmp_path, interpreter):  # type: ignore[no-untyped-def]
    (acc1, _), (acc2, phone2) = accounts["闵行区"][:2]
    openid1, openid2 = new_openid(), new_openid()
    await cc.create_subscription(acc1, "outage", "wechat", openid1)
    await cc.create_subscription(acc2, "outage", "wechat", openid2)
    async with run_sms_provider() as prov, run_relay() as (relay, rport), run_wechat_api() as api:
        wx = dict(wechat_appid=APPID, wechat_token=TOKEN, wechat_secret=SECRET, wechat_api_base_url=api.url)
        # 1) no template configured: the closed 48-hour window sends the notice to SMS instead.
        async with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", core.url, interpreter,
                               **gateway_settings(prov, rport, **wx)) as gw:
            await create_outage(cc, "闵行区", cause="变压器更换")
            await wait_until(lambda: prov.to(e164(phone2)), timeout=15)
            rows = await notice_rows(gw, OutboxMessage.channel == "wechat")
            assert {r.status for r in rows} == {"dead"} and len(rows) == 2
            assert any("变压器更换" in t for t in full_text(prov, e164(phone2)))
            assert api.custom == []  # refused by our window ledger before calling WeChat
        # 2) with a template: the refusal becomes a template message; no SMS.
        sent_before = len(prov.messages)
        async with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", core.url, interpreter,
                               **gateway_settings(prov, rport, notify_wechat_template_id="TPL_OUTAGE", **wx)) as gw:
            await create_outage(cc, "闵行区", cause="电缆迁改")
            await wait_until(lambda: len(api.templates) >= 2, timeout=15)
            await asyncio.sleep(0.5)
            assert sorted(t["touser"] for t in api.templates) == sorted([openid1, openid2])
            assert all(t["template_id"] == "TPL_OUTAGE" for t in api.templates)
            assert "电缆迁改" in str(api.templates[0]["data"])
            assert len(prov.messages) == sent_before


async def test_operator_api_manages_subscriptions(core, accounts, sqlite_url, interpreter):  # type: ignore[no-untyped-def]
    (acc, _), = accounts["静安区"][:1]
    async with run_sms_provider() as prov, run_relay() as (relay, rport):
        async with run_gateway(sqlite_url, core.url, interpreter, **gateway_settings(prov, rport)) as gw, \
                aiohttp.ClientSession() as http:
            url = gw.url + "/api/v1/notify/subscriptions"
            auth = {"Authorization": "Bearer op-token-for-tests"}
            async with http.get(url, params={"account_number": acc}) as r:
                assert r.status == 401
            async with http.post(url, json={}, headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401
            body = {"account_number": acc, "topic": "planned_outage", "channel": "sms", "identity": "138 0013 8000"}
            async with http.post(url, json=body, headers=auth) as r:
                assert r.status == 201, await r.text()
                doc = await r.json()
            assert doc["topic"] == "outage" and doc["identity"] == "+8613800138000"
            async with http.post(url, json={**body, "channel": "fax"}, headers=auth) as r:
                assert r.status == 422
            async with http.post(url, json={**body, "account_number": "9999999999"}, headers=auth) as r:
                assert r.status == 422  # the core: unknown account in a body
            async with http.post(url, data=b"not json", headers=auth) as r:
                assert r.status == 400
            async with http.get(url, params={"account_number": acc}, headers=auth) as r:
                subs = (await r.json())["subscriptions"]
            assert [(s["topic"], s["channel"]) for s in subs] == [("outage", "sms")]
            async with http.delete(url, params={"account_number": acc, "topic": "power_restored"}, headers=auth) as r:
                assert (await r.json())["deleted"] == 1
            async with http.get(url, params={"account_number": acc}, headers=auth) as r:
                assert (await r.json())["subscriptions"] == []
            async with http.get(gw.url + "/api/v1/notify/stats", headers=auth) as r:
                assert r.status == 200 and "notices" in await r.json()


async def test_bill_due_reminder_once_per_bill_and_channel(core, accounts, cc, sqlite_url, interpreter):  # type: ignore[no-untyped-def]
    acc, phone = accounts["徐汇区"][5]
    await cc.create_subscription(acc, "bill", "sms", phone)
    async with run_sms_provider() as prov, run_relay() as (relay, rport):
        async with run_gateway(sqlite_url, core.url, interpreter, **gateway_settings(prov, rport)) as gw:
            due = datetime.now(SH).date() + timedelta(days=2)
            await cc.issue_bill(acc, f"{datetime.now(SH).year + 1}-02", 180, due_date=due)  # a month the seed never billed
            await wait_until(lambda: any("电费账单" in t for t in full_text(prov, e164(phone))), timeout=15)
            producer = gw.app[PRODUCER]
            assert await producer.bill_due_once(force=True) >= 1

            def reminders() -> list[str]:
                return [t for t in full_text(prov, e164(phone)) if "缴费提醒" in t and "的2月电费" in t]

            await wait_until(reminders, timeout=15)
            assert f"{due.month}月{due.day}日到期" in reminders()[0] and acc not in reminders()[0]
            rows = len(await notice_rows(gw))
            await producer.bill_due_once(force=True)  # the same day again: nothing new
            await asyncio.sleep(0.4)
            assert len(await notice_rows(gw)) == rows and len(reminders()) == 1
            assert await producer.bill_due_once() == 0  # already done today


async def test_cli_run_once_queues_notices_without_a_gateway(core, accounts, cc, sqlite_url):  # type: ignore[no-untyped-def]
    from bot.cli import main
    from bot.migrate import BOT_MIGRATIONS, upgrade
    from bot.settings import get_settings

    await upgrade(sqlite_url, BOT_MIGRATIONS)
    subs = accounts["崇明区"][5:8]
    for acc, phone in subs:
        await cc.create_subscription(acc, "outage", "sms", phone)
    env = {"POWERBOT_CORE_URL": core.url, "POWERBOT_DATABASE_URL": sqlite_url,
           "POWERBOT_SMS_API_BASE_URL": "http://127.0.0.1:9/v1", "POWERBOT_SMS_SECRET": "x"}

    def run_once() -> dict:
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(main, ["notify", "run-once"], env=env)
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        import json

        return json.loads(result.output.strip().splitlines()[-1])

    assert (await asyncio.to_thread(run_once))["notices_queued"] == 0  # first run: starts at the newest event
    await create_outage(cc, "崇明区")
    out = await asyncio.to_thread(run_once)
    assert out["events"] == 1 and out["notices_queued"] >= len(subs)
    assert (await asyncio.to_thread(run_once)) == {"events": 0, "notices_queued": 0}
    from bot.db import make_engine, make_sessionmaker

    engine = make_engine(sqlite_url)
    try:
        async with make_sessionmaker(engine)() as s:
            recipients = set((await s.execute(select(OutboxMessage.recipient_id))).scalars())
    finally:
        await engine.dispose()
    assert {e164(p) for _, p in subs} <= recipients
