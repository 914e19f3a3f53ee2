"""SMS channel through the real gateway, dialogue engine and core; a local provider plays the SMS
aggregator (it verifies our signed API calls and signs what it sends us)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from bot import outbox
from bot.app import CHANNELS, OUTBOX, SESSIONMAKER
from bot.models import InboundMessage, OutboxMessage
from channels.base import Reply
from channels.sms_store import SmsOptOut, SmsPart
from stack import Gateway, run_core, run_gateway, wait_until
from sms_platform import FakeSmsProvider, hmac_hex, inbound_body, post_signed, run_provider, SECRET, API_KEY

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Stack:
    gateway: Gateway
    provider: FakeSmsProvider
    http: aiohttp.ClientSession

    @property
    def inbound_url(self) -> str:
        return f"{self.gateway.url}/channels/sms"

    @property
    def status_url(self) -> str:
        return f"{self.gateway.url}/channels/sms/status"

    def sm(self):  # type: ignore[no-untyped-def]
        return self.gateway.app[SESSIONMAKER]

    async def count_inbound(self, phone: str) -> int:
        async with self.sm()() as s:
            return await s.scalar(
                select(func.count()).select_from(InboundMessage).where(
                    InboundMessage.channel == "sms", InboundMessage.sender_id == phone
                )
            )

    async def outbox_rows(self, phone: str) -> list[OutboxMessage]:
        async with self.sm()() as s:
            return list(
                (await s.execute(
                    select(OutboxMessage).where(OutboxMessage.channel == "sms", OutboxMessage.recipient_id == phone)
                    .order_by(OutboxMessage.id)
                )).scalars()
            )

    async def enqueue(self, reply: Reply, kind: str = "notice") -> int:
        async with self.sm()() as s, s.begin():
            oid = await outbox.enqueue(s, reply, kind=kind, dedupe_key=f"test:{uuid.uuid4().hex}")
        self.gateway.app[OUTBOX].wake()
        assert oid is not None
        return oid

    async def row(self, oid: int) -> OutboxMessage:
        async with self.sm()() as s:
            return await s.get(OutboxMessage, oid)


def new_phone() -> str:
    return "139" + str(uuid.uuid4().int)[:8]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory, interpreter) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("sms")
    async with run_provider() as provider, run_core(f"sqlite+aiosqlite:///{tmp / 'core.db'}") as core:
        async with run_gateway(
            f"sqlite+aiosqlite:///{tmp / 'bot.db'}", core.url, interpreter, data_dir=tmp,
            sms_api_base_url=provider.url, sms_api_key=API_KEY, sms_secret=SECRET,
            sms_inbound_per_minute=10, notify_quiet_hours="", notify_enabled=False,
        ) as gw, aiohttp.ClientSession() as http:
            yield Stack(gw, provider, http)


# --------------------------------------------------------------------------- authentication
async def test_forged_missing_and_stale_signatures_are_refused_without_side_effects(stack: Stack) -> None:
    phone = new_phone()
    body = inbound_body(phone, "查电费")
    r = await post_signed(stack.http, stack.inbound_url, body, secret="wrong-secret")
    assert r.status == 403
    r = await post_signed(stack.http, stack.inbound_url, body, signature="")
    assert r.status == 401
    r = await post_signed(stack.http, stack.inbound_url, body, signature="zz" * 32)
    assert r.status == 403
    stale = inbound_body(phone, "查电费", ts=time.time() - 6 * 60)
    r = await post_signed(stack.http, stack.inbound_url, stale)
    assert r.status == 403
    future = inbound_body(phone, "查电费", ts=time.time() + 6 * 60)
    r = await post_signed(stack.http, stack.inbound_url, future)
    assert r.status == 403
    # a forged STOP must not opt anyone out
    r = await post_signed(stack.http, stack.inbound_url, inbound_body(phone, "STOP"), secret="wrong-secret")
    assert r.status == 403
    # signed but malformed: polite 400
    bad = dict(body, **{"from": "not-a-phone"})
    r = await post_signed(stack.http, stack.inbound_url, bad)
    assert r.status == 400
    await asyncio.sleep(0.5)
    assert await stack.count_inbound("+86" + phone) == 0
    async with stack.sm()() as s:
        assert await s.get(SmsOptOut, "+86" + phone) is None
    assert stack.provider.to("+86" + phone) == []


# --------------------------------------------------------------------------- inbound → reply
async def test_form_message_is_answered_through_the_signed_provider_api(stack: Stack) -> None:
    phone = new_phone()
    r = await post_signed(stack.http, stack.inbound_url, inbound_body(phone, "你好"), form=True)
    assert r.status == 200
    e164 = "+86" + phone
    await wait_until(lambda: stack.provider.to(e164), timeout=15)
    msg = stack.provider.to(e164)[0]
    assert msg["from"] == "95598" and msg["text"] and msg["client_ref"].startswith("smsb_")
    assert stack.provider.rejected == []
    async with stack.sm()() as s:
        row = (await s.execute(select(InboundMessage).where(InboundMessage.sender_id == e164))).scalar_one()
    assert row.conversation_id == f"sms:{e164}" and row.text == "你好"


async def test_duplicate_retries_create_one_message_and_one_answer(stack: Stack) -> None:
    phone = new_phone()
    e164 = "+86" + phone
    body = inbound_body(phone, "谢谢", message_id="dup-" + uuid.uuid4().hex)
    statuses = []
    for _ in range(3):
        r = await post_signed(stack.http, stack.inbound_url, body)
        statuses.append(r.status)
    # a concurrent burst of the same retry
    rs = await asyncio.gather(*(post_signed(stack.http, stack.inbound_url, body) for _ in range(3)))
    assert statuses == [200, 200, 200] and all(r.status == 200 for r in rs)
    await wait_until(lambda: stack.provider.to(e164), timeout=15)
    await asyncio.sleep(1.5)
    assert await stack.count_inbound(e164) == 1
    rows = await stack.outbox_rows(e164)
    assert len(stack.provider.to(e164)) == sum(1 for r in rows) >= 1


# --------------------------------------------------------------------------- STOP
async def test_stop_unsubscribes_at_once_confirms_and_blocks_notices(stack: Stack) -> None:
    phone = new_phone()
    e164 = "+86" + phone
    channel = stack.gateway.app[CHANNELS]["sms"]
    assert not await channel.is_opted_out(phone)
    stop = inbound_body(phone, " 退订 ", message_id="stop-" + uuid.uuid4().hex)
    r = await post_signed(stack.http, stack.inbound_url, stop)
    assert r.status == 200
    assert await channel.is_opted_out(e164) and await channel.is_opted_out(phone)  # at once
    await wait_until(lambda: stack.provider.to(e164), timeout=10)
    # the provider retries the STOP: still one confirmation
    r = await post_signed(stack.http, stack.inbound_url, stop)
    assert r.status == 200
    await asyncio.sleep(1.0)
    texts = stack.provider.texts_to(e164)
    assert len(texts) == 1 and "退订" in texts[0] and "START" in texts[0]
    # a non-urgent notice is refused for good, without calling the provider
    oid = await stack.enqueue(Reply(channel="sms", recipient_id=e164, text="您所在区域明天计划停电。", kind="notice"))
    await wait_until(lambda: _status_is(stack, oid, "dead"), timeout=10)
    assert "opted out" in (await stack.row(oid)).last_error
    # transactional answers and urgent safety notices still go out
    urgent = await stack.enqueue(
        Reply(channel="sms", recipient_id=e164, text="紧急：线路故障抢修中，请远离断落电线。", kind="notice", urgent=True)
    )
    await wait_until(lambda: _status_is(stack, urgent, "sent"), timeout=10)
    assert len(stack.provider.texts_to(e164)) == 2
    # START re-subscribes; notices flow again
    r = await post_signed(stack.http, stack.inbound_url, inbound_body(phone, "START"))
    assert r.status == 200
    assert not await channel.is_opted_out(e164)
    await wait_until(lambda: len(stack.provider.to(e164)) == 3, timeout=10)
    assert "notices again" in stack.provider.texts_to(e164)[-1]
    oid = await stack.enqueue(Reply(channel="sms", recipient_id=e164, text="您的账单已出。", kind="notice"))
    await wait_until(lambda: _status_is(stack, oid, "sent"), timeout=10)


async def _status_is(stack: Stack, oid: int, status: str) -> bool:
    return (await stack.row(oid)).status == status


async def test_english_stop_is_confirmed_in_english(stack: Stack) -> None:
    phone = new_phone()
    e164 = "+86" + phone
    r = await post_signed(stack.http, stack.inbound_url, inbound_body(phone, "stop"))
    assert r.status == 200
    await wait_until(lambda: stack.provider.to(e164), timeout=10)
    assert "unsubscribed" in stack.provider.texts_to(e164)[0]


# --------------------------------------------------------------------------- segments + reports
async def test_long_text_is_split_and_delivery_reports_update_the_outbox(stack: Stack) -> None:
    phone = new_phone()
    e164 = "+86" + phone
    text = "您好，" + "国网客服提醒您注意用电安全" * 11  # 3 + 143 = 146 UCS-2 units → 67 + 67 + 12
    oid = await stack.enqueue(Reply(channel="sms", recipient_id=e164, text=text), kind="reply")
    await wait_until(lambda: _status_is(stack, oid, "sent"), timeout=10)
    parts = stack.provider.to(e164)
    assert [len(p["text"]) for p in parts] == [67, 67, 12]
    assert "".join(p["text"] for p in parts) == text
    assert [(p["part"], p["parts"]) for p in parts] == [(1, 3), (2, 3), (3, 3)]
    row = await stack.row(oid)
    assert all(p["client_ref"].startswith(row.provider_id + "-") for p in parts)

    def report(p: dict, status: str) -> dict:
        return {"message_id": p["provider_id"], "status": status, "timestamp": int(time.time())}

    # forged report: refused, nothing changes
    r = await post_signed(stack.http, stack.status_url, report(parts[0], "failed"), secret="nope")
    assert r.status == 403
    # two of three delivered: still "sent"; all three: "delivered"
    for p in parts[:2]:
        assert (await post_signed(stack.http, stack.status_url, report(p, "delivered"))).status == 200
    assert (await stack.row(oid)).status == "sent"
    r = await post_signed(stack.http, stack.status_url, report(parts[2], "DELIVRD"), form=True)
    assert r.status == 200
    assert (await stack.row(oid)).status == "delivered"
    async with stack.sm()() as s:
        assert {p.status for p in (await s.execute(select(SmsPart).where(SmsPart.batch_ref == row.provider_id))).scalars()} == {"delivered"}
    # unknown id: acknowledged, ignored
    r = await post_signed(stack.http, stack.status_url, {"message_id": "nope", "status": "delivered", "timestamp": int(time.time())})
    assert r.status == 200


async def test_failed_delivery_report_marks_the_row_failed(stack: Stack) -> None:
    e164 = "+86" + new_phone()
    oid = await stack.enqueue(Reply(channel="sms", recipient_id=e164, text="您的工单已处理完毕。"), kind="reply")
    await wait_until(lambda: _status_is(stack, oid, "sent"), timeout=10)
    pid = stack.provider.to(e164)[0]["provider_id"]
    body = {"message_id": pid, "status": "undeliv", "error_code": "MK:0001", "timestamp": int(time.time())}
    assert (await post_signed(stack.http, stack.status_url, body)).status == 200
    row = await stack.row(oid)
    assert row.status == "failed" and "MK:0001" in (row.last_error or "")


async def test_provider_errors_retry_or_die(stack: Stack) -> None:
    e164 = "+86" + new_phone()
    stack.provider.fail_with = [400]
    oid = await stack.enqueue(Reply(channel="sms", recipient_id=e164, text="测试"), kind="reply")
    await wait_until(lambda: _status_is(stack, oid, "dead"), timeout=10)
    assert "refused" in (await stack.row(oid)).last_error
    stack.provider.fail_with = [503]
    oid = await stack.enqueue(Reply(channel="sms", recipient_id=e164, text="测试二"), kind="reply")
    await wait_until(lambda: _status_is(stack, oid, "sent"), timeout=15)  # retried after backoff
    row = await stack.row(oid)
    assert row.attempts == 2 and stack.provider.texts_to(e164) == ["测试二"]


# --------------------------------------------------------------------------- rate limit
async def test_inbound_rate_limit_refuses_politely_once(stack: Stack) -> None:
    phone = new_phone()
    e164 = "+86" + phone
    for i in range(14):
        r = await post_signed(stack.http, stack.inbound_url, inbound_body(phone, f"你好{i}"))
        assert r.status == 200
    await asyncio.sleep(0.5)
    assert await stack.count_inbound(e164) == 10
    await wait_until(lambda: any("频繁" in t for t in stack.provider.texts_to(e164)), timeout=20)
    await asyncio.sleep(1.0)
    assert sum("频繁" in t for t in stack.provider.texts_to(e164)) == 1


async def test_readiness_lists_sms_on_and_email_off(stack: Stack) -> None:
    async with stack.http.get(f"{stack.gateway.url}/readyz") as r:
        body = await r.json()
    assert body["channels"]["sms"]["on"] is True
    assert body["channels"]["email"] == {"on": False}
    assert "secret" not in json.dumps(body).lower() and SECRET not in json.dumps(body)
