"""The SMS channel's batch path, end to end through the outbox worker, on SQLite and PostgreSQL.

The local provider (tests/channels/test_sms_provider.py) serves ``/v1/messages/batch``: it checks the
API key and the HMAC-SHA256 signature over the raw body independently of our code, answers one
result per item and can refuse given numbers, fail whole requests or answer late. The worker
claims rows, groups them for ``send_batch`` and records every row's own outcome.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

import bot.outbox as outbox_mod
from bot.models import OutboxMessage
from bot.outbox import OutboxWorker, enqueue_many
from bot.channel_store import BotChannelStore
from bot.settings import Settings
from bot.texts import TextService
from channels.base import ChannelContext, Reply
from channels.sms import SmsChannel, split_segments
from channels.sms_store import SmsOptOut, SmsPart
from sms_platform import API_KEY, SECRET, FakeSmsProvider, hmac_hex, post_signed, run_provider


def phone(i: int) -> str:
    return f"+86139{i:08d}"


@asynccontextmanager
async def sms_channel(sm, provider: FakeSmsProvider, **settings: Any) -> AsyncIterator[SmsChannel]:  # type: ignore[no-untyped-def]
    s = Settings(
        database_url="sqlite+aiosqlite://", core_url="http://127.0.0.1:9", sms_api_base_url=provider.url,
        sms_api_key=API_KEY, sms_secret=settings.pop("secret", SECRET), sms_outbound_per_minute=0, **settings,
    )
    async with aiohttp.ClientSession() as http:
        ctx = ChannelContext(settings=s, processor=None, sessionmaker=sm, http=http, core=None,  # type: ignore[arg-type]
                             texts=TextService(s), store=BotChannelStore(sm))
        channel = SmsChannel(ctx)
        try:
            yield channel
        finally:
            await channel.stop()


async def queue(sm, replies: list[Reply], tag: str = "t") -> None:  # type: ignore[no-untyped-def]
    async with sm() as s, s.begin():
        await enqueue_many(s, [{"reply": r, "kind": r.kind, "dedupe_key": f"{tag}:{i}"} for i, r in enumerate(replies)])


def notice(to: str, text: str = "【国网】您所在区域11月30日9:00-17:00计划停电，请提前做好准备。", **kw: Any) -> Reply:
    return Reply(channel="sms", recipient_id=to, text=text, kind="notice", **kw)


async def rows_by_recipient(sm) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    async with sm() as s:
        return {r.recipient_id: r for r in (await s.execute(select(OutboxMessage))).scalars()}


async def drain(worker: OutboxWorker) -> None:
    while await worker.run_once():
        pass


async def test_a_claimed_batch_goes_out_in_few_signed_batch_requests(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    async with run_provider() as prov, sms_channel(sessionmaker, prov) as ch:
        ch.batch_size = ch.max_batch = 50
        await queue(sessionmaker, [notice(phone(i)) for i in range(120)])
        w = OutboxWorker(sessionmaker, {"sms": ch}, batch_size=500, concurrency=4)
        assert await w.run_once() == 120
        assert prov.rejected == [] and prov.batch_calls == 3  # 120 rows, at most 50 per request
        assert Counter(m["to"] for m in prov.messages) == Counter({phone(i): 1 for i in range(120)})
        rows = await rows_by_recipient(sessionmaker)
        assert {r.status for r in rows.values()} == {"sent"} and {r.attempts for r in rows.values()} == {1}
        async with sessionmaker() as s:
            parts = {p.provider_id: p.batch_ref for p in (await s.execute(select(SmsPart))).scalars()}
        # every provider id maps back to its own outbox row
        assert sorted(parts) == sorted(m["provider_id"] for m in prov.messages)
        assert {m["provider_id"]: parts[m["provider_id"]] for m in prov.messages} == {
            m["provider_id"]: rows[m["to"]].provider_id for m in prov.messages
        }


async def test_numbers_refused_by_the_provider_get_their_own_outcome(sessionmaker, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(outbox_mod, "backoff", lambda attempts: timedelta(0))
    async with run_provider() as prov, sms_channel(sessionmaker, prov) as ch:
        prov.refuse = {phone(1): ("invalid_number", False), phone(2): ("daily_limit", True)}
        await queue(sessionmaker, [notice(phone(i)) for i in range(6)])
        dead: list[tuple[int, str | None]] = []

        async def hook(session, row, error):  # type: ignore[no-untyped-def]
            dead.append((row.id, getattr(error, "code", None)))

        w = OutboxWorker(sessionmaker, {"sms": ch}, batch_size=50, concurrency=2)
        w.dead_letter_hooks.append(hook)
        await w.run_once()
        rows = await rows_by_recipient(sessionmaker)
        assert rows[phone(1)].status == "dead" and "invalid_number" in rows[phone(1)].last_error
        assert rows[phone(2)].status == "pending" and rows[phone(2)].attempts == 1
        assert [c for _, c in dead] == ["invalid_number"] and dead[0][0] == rows[phone(1)].id
        assert all(rows[phone(i)].status == "sent" for i in (0, 3, 4, 5))
        # the retryable refusal is retried alone; nobody gets a second SMS
        prov.refuse = {}
        await w.run_once()
        rows = await rows_by_recipient(sessionmaker)
        assert rows[phone(2)].status == "sent" and rows[phone(2)].attempts == 2
        assert Counter(m["to"] for m in prov.messages) == Counter({phone(i): 1 for i in (0, 2, 3, 4, 5)})


async def test_a_failed_or_timed_out_request_retries_its_notices_and_loses_none(sessionmaker, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(outbox_mod, "backoff", lambda attempts: timedelta(0))
    async with run_provider() as prov, sms_channel(sessionmaker, prov, sms_timeout_seconds=0.3) as ch:
        ch.batch_size = ch.max_batch = 5
        await queue(sessionmaker, [notice(phone(i)) for i in range(10)])
        w = OutboxWorker(sessionmaker, {"sms": ch}, batch_size=10, concurrency=1)  # two requests, one at a time
        prov.fail_with = [503]  # the first request fails whole, the second is accepted
        await w.run_once()
        by = Counter(r.status for r in (await rows_by_recipient(sessionmaker)).values())
        assert by == Counter({"pending": 5, "sent": 5}) and len(prov.messages) == 5
        prov.delay = 1.0  # longer than the 0.3 s timeout: every outbound call is bounded
        t0 = asyncio.get_running_loop().time()
        await w.run_once()
        assert asyncio.get_running_loop().time() - t0 < 0.9
        rows = await rows_by_recipient(sessionmaker)
        failed = [r for r in rows.values() if r.status == "pending"]
        assert len(failed) == 5 and {r.attempts for r in failed} == {2} and all("unreachable" in r.last_error for r in failed)
        prov.delay = 0.0
        await drain(w)
        rows = await rows_by_recipient(sessionmaker)
        assert {r.status for r in rows.values()} == {"sent"}
        assert Counter(m["to"] for m in prov.messages) == Counter({phone(i): 1 for i in range(10)})


async def test_an_accepted_request_whose_answer_was_lost_is_retried_without_a_second_sms(sessionmaker, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The provider accepts and sends, but its answer comes after our timeout: the rows are
    retried with the same ``client_ref``s (the outbox's delivery key), the provider recognises
    them, and every customer gets one SMS; delivery reports still map to the rows."""
    monkeypatch.setattr(outbox_mod, "backoff", lambda attempts: timedelta(0))
    async with run_provider() as prov, sms_channel(sessionmaker, prov, sms_timeout_seconds=0.3) as ch:
        long_text = "【国网】" + "您所在区域计划停电，请提前做好准备。" * 6  # several segments
        await queue(sessionmaker, [notice(phone(i)) for i in range(4)] + [notice(phone(9), long_text)])
        w = OutboxWorker(sessionmaker, {"sms": ch}, batch_size=10, concurrency=1)
        prov.answer_delay = 1.0
        await w.run_once()
        rows = await rows_by_recipient(sessionmaker)
        assert {r.status for r in rows.values()} == {"pending"}  # we never heard back
        sent_once = len(prov.messages)
        assert sent_once >= 6 and prov.repeats == 0  # ... but the provider had sent them
        prov.answer_delay = 0.0
        await drain(w)
        rows = await rows_by_recipient(sessionmaker)
        assert {r.status for r in rows.values()} == {"sent"}
        assert len(prov.messages) == sent_once and prov.repeats == sent_once
        assert Counter(m["to"] for m in prov.messages if m.get("part", 1) == 1) == Counter(
            {phone(i): 1 for i in (0, 1, 2, 3, 9)})
        refs = {m["client_ref"].rsplit("-", 1)[0] for m in prov.to(phone(9))}
        assert refs == {rows[phone(9)].provider_id}  # the row's batch ref is the one sent


async def test_the_provider_rejects_a_forged_batch_signature(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    async with run_provider() as prov:
        # our channel configured with the wrong secret: the provider refuses, nothing is sent
        async with sms_channel(sessionmaker, prov, secret="not-the-shared-secret") as ch:
            await queue(sessionmaker, [notice(phone(i)) for i in range(3)])
            w = OutboxWorker(sessionmaker, {"sms": ch})
            await w.run_once()
        assert prov.rejected == ["signature"] and prov.messages == []
        rows = await rows_by_recipient(sessionmaker)
        assert {r.status for r in rows.values()} == {"dead"} and all("403" in r.last_error for r in rows.values())
        # a body changed after signing is refused too; the genuine one is accepted
        body = json.dumps({"from": "95598", "timestamp": 1, "messages": [
            {"to": phone(9), "text": "x", "client_ref": "r-1", "part": 1, "parts": 1}]}).encode()
        headers = {"X-Api-Key": API_KEY, "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as http:
            forged = body.replace(phone(9).encode(), phone(8).encode())
            async with http.post(f"{prov.url}/messages/batch", data=forged,
                                 headers={**headers, "X-Signature": hmac_hex(SECRET, body)}) as resp:
                assert resp.status == 403
            async with http.post(f"{prov.url}/messages/batch", data=body,
                                 headers={**headers, "X-Signature": hmac_hex(SECRET, body)}) as resp:
                assert resp.status == 200 and (await resp.json())["results"][0]["client_ref"] == "r-1"
        assert prov.rejected == ["signature", "signature"] and [m["to"] for m in prov.messages] == [phone(9)]


async def test_opt_outs_are_checked_once_per_batch_at_send_time(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    async with run_provider() as prov, sms_channel(sessionmaker, prov) as ch:
        async with sessionmaker() as s, s.begin():
            s.add_all([SmsOptOut(phone=phone(1), keyword="TD"), SmsOptOut(phone=phone(2), keyword="退订")])
        lookups = 0
        real = ch.opt_outs.among

        async def counted(sm, phones):  # type: ignore[no-untyped-def]
            nonlocal lookups
            lookups += 1
            return await real(sm, phones)

        ch.opt_outs.among = counted  # type: ignore[method-assign]
        await queue(sessionmaker, [
            notice(phone(0)), notice(phone(1)), notice(phone(2), urgent=True),
            Reply(channel="sms", recipient_id=phone(1), text="您的报修单已受理", kind="text"),  # an answer: still goes
            notice(phone(2), metadata={"transactional": True}),
        ])
        w = OutboxWorker(sessionmaker, {"sms": ch}, batch_size=50)
        await w.run_once()
        assert lookups == 1
        assert Counter(m["to"] for m in prov.messages) == Counter({phone(0): 1, phone(1): 1, phone(2): 2})
        async with sessionmaker() as s:
            rows = (await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars().all()
        assert [r.status for r in rows] == ["sent", "dead", "sent", "sent", "sent"]
        assert "opted out" in rows[1].last_error


async def test_long_notices_keep_their_segments_in_one_request_and_reports_map_back(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    long_text = "【国网】" + "因线路检修，您所在小区将于11月30日9:00至17:00停电，请提前做好准备。" * 4
    n_parts = len(split_segments(long_text))
    assert n_parts == 3
    async with run_provider() as prov, sms_channel(sessionmaker, prov) as ch:
        ch.batch_size = ch.max_batch = 7  # two notices (6 segments) fit in one request, not three
        await queue(sessionmaker, [notice(phone(i), long_text) for i in range(5)])
        w = OutboxWorker(sessionmaker, {"sms": ch}, batch_size=50, concurrency=1)
        await w.run_once()
        assert prov.batch_calls == 3  # one send_batch of 5 rows: 2 + 2 + 1 notices (≤ 7 segments a request)
        assert len(prov.messages) == 5 * n_parts
        for m in prov.messages:
            assert m["parts"] == n_parts and len(m["text"]) <= 67
        for i in range(5):
            mine = sorted(prov.to(phone(i)), key=lambda m: m["part"])
            assert "".join(m["text"] for m in mine) == long_text and [m["part"] for m in mine] == [1, 2, 3]
        # delivery reports for every segment of one notice mark its row delivered
        app = web.Application()
        app.add_routes(ch.routes())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/channels/sms/status"
        try:
            async with aiohttp.ClientSession() as http:
                for m in prov.to(phone(3)):
                    ts = int(datetime.now(timezone.utc).timestamp())
                    resp = await post_signed(http, url, {"message_id": m["provider_id"], "status": "delivered", "timestamp": ts})
                    assert resp.status == 200
        finally:
            await runner.cleanup()
        rows = await rows_by_recipient(sessionmaker)
        assert rows[phone(3)].status == "delivered"
        assert {rows[phone(i)].status for i in (0, 1, 2, 4)} == {"sent"}


async def test_request_size_splits_between_notices_never_inside_one(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    long_text = "停电通知" * 40  # 160 UCS-2 units: 3 segments
    async with run_provider() as prov, sms_channel(sessionmaker, prov) as ch:
        ch.batch_size = 7
        results = await ch.send_batch([notice(phone(i), long_text) for i in range(5)])
        assert all(isinstance(r, str) and r.startswith("smsb_") for r in results)
        assert prov.batch_calls == 3  # 2 + 2 + 1 notices of 3 segments each, 7 segments per request at most
        assert len(prov.messages) == 15


async def test_per_number_rate_limit_applies_within_a_batch(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    async with run_provider() as prov, sms_channel(sessionmaker, prov) as ch:
        ch.outbound_per_minute = 2
        results = await ch.send_batch([notice(phone(1)) for _ in range(3)] + [notice(phone(2)), notice("not-a-number")])
        codes = [getattr(r, "code", None) if isinstance(r, BaseException) else "ok" for r in results]
        assert codes == ["ok", "ok", "rate_limited", "ok", "bad_recipient"]
        assert results[2].retryable and not results[4].retryable  # type: ignore[union-attr]
        assert Counter(m["to"] for m in prov.messages) == Counter({phone(1): 2, phone(2): 1})


async def test_quiet_hours_hold_batched_notices_but_not_replies(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    from bot.notify.policies import quiet_hours_policy

    now = datetime.now(timezone.utc)
    spec = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=1):%H:%M}"  # quiet right now (UTC)
    async with run_provider() as prov, sms_channel(sessionmaker, prov) as ch:
        await queue(sessionmaker, [
            notice(phone(0)), notice(phone(1), urgent=True),
            Reply(channel="sms", recipient_id=phone(2), text="已为您查询到电费余额", kind="text"),
        ])
        w = OutboxWorker(sessionmaker, {"sms": ch}, hold_policies=[quiet_hours_policy(spec, "UTC", ["sms"])])
        await w.run_once()
        assert sorted(m["to"] for m in prov.messages) == [phone(1), phone(2)]
        rows = await rows_by_recipient(sessionmaker)
        held = rows[phone(0)]
        assert held.status == "pending" and held.attempts == 0
        assert outbox_mod.as_aware(held.next_attempt_at) > now + timedelta(minutes=50)


async def test_two_workers_on_one_store_send_each_batched_notice_once(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    async with run_provider() as prov, sms_channel(sessionmaker, prov) as ch:
        ch.batch_size = ch.max_batch = 20
        await queue(sessionmaker, [notice(phone(i)) for i in range(400)])
        w1 = OutboxWorker(sessionmaker, {"sms": ch}, batch_size=60, concurrency=3)
        w2 = OutboxWorker(sessionmaker, {"sms": ch}, batch_size=60, concurrency=3)

        async def loop(w: OutboxWorker) -> None:
            while await w.run_once():
                pass

        await asyncio.gather(loop(w1), loop(w2), loop(w1))
        assert Counter(m["to"] for m in prov.messages) == Counter({phone(i): 1 for i in range(400)})
        async with sessionmaker() as s:
            assert await s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "sent")) == 400


async def test_a_notice_with_some_segments_refused_is_not_sent_again(sessionmaker, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Retrying would repeat the accepted segments: the row is final (dead, fallback hooks run)."""
    monkeypatch.setattr(outbox_mod, "backoff", lambda attempts: timedelta(0))
    long_text = "停电通知" * 40  # 3 segments
    async with run_provider() as prov, sms_channel(sessionmaker, prov) as ch:
        prov.refuse_parts = {3}
        await queue(sessionmaker, [notice(phone(1), long_text), notice(phone(2))])
        w = OutboxWorker(sessionmaker, {"sms": ch})
        await drain(w)
        await w.run_once()
        rows = await rows_by_recipient(sessionmaker)
        assert rows[phone(1)].status == "dead" and "2 of 3" in rows[phone(1)].last_error
        assert rows[phone(2)].status == "sent"
        assert sorted(m["part"] for m in prov.to(phone(1))) == [1, 2] and len(prov.to(phone(2))) == 1
