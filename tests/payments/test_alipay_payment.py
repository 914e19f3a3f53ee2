"""Online bill payment through Alipay, end to end, on SQLite and PostgreSQL bot stores.

The customer asks to pay on the REST channel; the real dialogue engine creates the payment
link through our Alipay provider (core order + ``alipay.trade.precreate`` at the fake gateway
+ signed wap link); the tests, playing Alipay, post signed trade notifies — duplicated,
concurrent, forged, inconsistent — and check the core records the payment exactly once and
the customer gets one confirmation on the channel they paid from.
"""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from backend_client import CoreClient
from bot.app import EXTRAS, SESSIONMAKER
from bot.models import OutboxMessage
from payments.alipay import AlipayOrder
from core.pricing import CN_TZ
from stack import Gateway, run_core, run_gateway, wait_until
from alipay_platform import FakeAlipay, KeyPair, run_fake_alipay, sorted_content, verify_with_public

pytestmark = pytest.mark.asyncio(loop_scope="module")

APPID = "2021000000000077"
ACCOUNT = "3100000001"  # seeded with two unpaid months; phone 13800138000


@dataclass
class Env:
    gw: Gateway
    fake: FakeAlipay
    app_keys: KeyPair
    http: aiohttp.ClientSession
    core: CoreClient
    core_db: str
    core_cm: Any
    core_port: int
    proxy: CountingProxy

    async def notify(self, params: dict[str, str]) -> tuple[int, str]:
        r = await self.http.post(self.gw.url + "/payments/alipay/notify", data=params)
        return r.status, await r.text()

    async def order(self, out_trade_no: str) -> AlipayOrder | None:
        async with self.gw.app[SESSIONMAKER]() as s:
            return await s.get(AlipayOrder, out_trade_no)

    async def confirmations(self, out_trade_no: str) -> int:
        async with self.gw.app[SESSIONMAKER]() as s:
            kinds = (await s.execute(select(OutboxMessage.kind).where(
                OutboxMessage.dedupe_key == f"alipay-paid:{out_trade_no}"))).scalars().all()
        # a confirmation answers the customer's own payment: a reply, never held by quiet hours
        assert set(kinds) <= {"reply"}, kinds
        return len(kinds)


class CountingProxy:
    """Loopback reverse proxy in front of the core: counts payment confirmations it forwards."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.confirms: dict[str, int] = {}
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method == "POST" and path.startswith("/api/v1/payments/") and path.endswith("/confirm"):
            key = path.split("/")[4]
            self.confirms[key] = self.confirms.get(key, 0) + 1
        async with aiohttp.ClientSession() as http:
            try:
                async with http.request(request.method, self.target + request.path_qs, data=await request.read(),
                                        headers={"Content-Type": request.headers.get("Content-Type", "application/json")}) as r:
                    return web.Response(body=await r.read(), status=r.status,
                                        content_type=r.content_type, charset=r.charset)
            except aiohttp.ClientConnectionError:
                return web.Response(status=502, text="core down")


@asynccontextmanager
async def run_proxy(target: str) -> AsyncIterator[CountingProxy]:
    proxy = CountingProxy(target)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    proxy.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield proxy
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def bot_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('alipay_pay') / 'bot.db'}"
    return request.getfixturevalue("postgres").new_database("alipay")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(bot_url: str, interpreter, tmp_path_factory) -> AsyncIterator[Env]:
    d: Path = tmp_path_factory.mktemp("alipay_pay_core")
    core_db = f"sqlite+aiosqlite:///{d / 'core.db'}"
    app_keys = KeyPair.generate()
    core_cm = run_core(core_db)
    core_server = await core_cm.__aenter__()
    holder: dict[str, Any] = {"cm": core_cm}
    try:
        async with run_fake_alipay(APPID, app_keys.public_pem) as fake, run_proxy(core_server.url) as proxy, \
                run_gateway(bot_url, proxy.url, interpreter, data_dir=d, public_url="https://pay.example.test",
                            alipay_appid=APPID, alipay_app_private_key=app_keys.private_pem,
                            alipay_public_key=fake.keys.public_pem, alipay_gateway_url=fake.gateway_url) as gw, \
                aiohttp.ClientSession() as http, CoreClient(core_server.url) as core:
            e = Env(gw=gw, fake=fake, app_keys=app_keys, http=http, core=core, core_db=core_db, core_cm=core_cm,
                    core_port=int(core_server.url.rsplit(":", 1)[1]), proxy=proxy)
            holder["env"] = e
            yield e
    finally:
        cm = holder["env"].core_cm if "env" in holder else core_cm
        if cm is not None:
            await cm.__aexit__(None, None, None)


async def say(env: Env, sender: str, text: str) -> list[dict[str, Any]]:
    r = await env.http.post(env.gw.url + "/webhooks/rest/webhook", json={"sender": sender, "message": text})
    assert r.status == 200
    return await r.json()


async def ask_for_payment_link(env: Env, sender: str) -> dict[str, Any]:
    """Drive the real pay_bill conversation until the bot offers the payment link."""
    for text in ["我要交电费", ACCOUNT, "8000", "确认"]:
        for reply in await say(env, sender, text):
            custom = reply.get("custom") or {}
            if custom.get("kind") == "payment_link":
                return custom
    raise AssertionError("the bot never offered a payment link")


def assert_signed_by_app(env: Env, pay_url: str) -> dict[str, str]:
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(pay_url).query, keep_blank_values=True))
    sign = params.pop("sign")
    assert verify_with_public(env.app_keys.public_pem, sorted_content(params, drop=()).encode(), sign)
    return params


async def test_pay_bill_link_notify_records_once_and_confirms_on_origin_channel(env: Env) -> None:
    sender = "web-" + uuid.uuid4().hex[:8]
    owed = (await env.core.get_arrears(ACCOUNT)).amount_owed
    assert owed > 0
    link = await ask_for_payment_link(env, sender)
    out_trade_no, amount = link["out_trade_no"], link["amount"]
    assert Decimal(amount) == owed
    # The trade exists at Alipay (precreate QR) and the wap link is signed with our app key.
    assert env.fake.precreated[out_trade_no]["total_amount"] == amount
    assert env.fake.precreated[out_trade_no]["notify_url"] == "https://pay.example.test/payments/alipay/notify"
    assert link.get("qr_code", "").startswith("https://qr.alipay.com/")
    assert link["pay_url"].startswith(env.fake.gateway_url + "?")
    params = assert_signed_by_app(env, link["pay_url"])
    assert params["method"] == "alipay.trade.wap.pay" and params["app_id"] == APPID
    assert (await env.core.get_payment(out_trade_no)).status == "pending"

    # Alipay notifies: concurrent duplicates, then later retries.
    notify = env.fake.trade_notify(out_trade_no, amount, trade_no="2026112622001400001234567890")
    results = await asyncio.gather(*(env.notify(dict(notify)) for _ in range(8)))
    assert results == [(200, "success")] * 8
    for _ in range(2):
        assert await env.notify(dict(notify)) == (200, "success")

    payment = await env.core.get_payment(out_trade_no)
    assert payment.status == "paid" and payment.trade_no == "2026112622001400001234567890"
    assert (await env.core.get_arrears(ACCOUNT)).amount_owed == 0
    assert all(b.status == "paid" for b in await env.core.list_bills(ACCOUNT))
    assert [p.out_trade_no for p in await env.core.list_payments(ACCOUNT) if p.status == "paid"].count(out_trade_no) == 1
    order = await env.order(out_trade_no)
    assert order is not None and order.status == "paid"
    assert env.proxy.confirms[out_trade_no] == 1  # core.confirm_payment called once for ten notifies
    assert await env.confirmations(out_trade_no) == 1

    async def confirmation() -> list[dict[str, Any]]:
        r = await env.http.get(env.gw.url + "/webhooks/rest/messages", params={"sender": sender, "after": "0"})
        return [m for m in (await r.json())["messages"] if "缴费成功" in m["text"]]

    msgs = await wait_until(confirmation, timeout=15)
    assert len(msgs) == 1 and amount in msgs[0]["text"]
    assert ACCOUNT not in msgs[0]["text"]  # account number masked in the message


def _unbilled_month(month: int) -> str:
    """``month`` of next year: later than every month the demo seed billed (the 12 before today)."""
    return f"{datetime.now(CN_TZ).year + 1}-{month:02d}"


async def _pending_order(env: Env, month: str, recipient: str, channel: str = "alipay") -> tuple[str, str]:
    await env.core.issue_bill(ACCOUNT, month, 120)
    owed = (await env.core.get_arrears(ACCOUNT)).amount_owed
    provider = env.gw.app[EXTRAS]["payments"]
    link = await provider.create_payment_link(account_number=ACCOUNT, amount=str(owed), channel=channel,
                                              recipient_id=recipient, subject="电费缴纳")
    return link.out_trade_no, link.amount


async def test_hostile_notifies_refused_without_side_effect(env: Env) -> None:
    user = "2088" + str(uuid.uuid4().int)[:12]
    out_trade_no, amount = await _pending_order(env, _unbilled_month(1), user)
    owed_before = (await env.core.get_arrears(ACCOUNT)).amount_owed
    other = KeyPair.generate()
    tampered = env.fake.trade_notify(out_trade_no, amount)
    tampered["total_amount"] = "0.01"
    no_sign = env.fake.trade_notify(out_trade_no, amount)
    no_sign.pop("sign")
    rsa1 = env.fake.trade_notify(out_trade_no, amount)
    rsa1["sign_type"] = "RSA"
    wrong_amount = str(Decimal(amount) - Decimal("1.00"))
    cases = [
        (env.fake.trade_notify(out_trade_no, amount, keys=other), 403),  # forged signature
        (env.fake.trade_notify(out_trade_no, amount, appid="2021000000009999"), 403),  # another merchant's app
        (env.fake.trade_notify(out_trade_no, wrong_amount), 409),  # genuine signature, amount mismatch
        (env.fake.trade_notify("PB20990101000000deadbeef0000", amount), 404),  # unknown out_trade_no
        (tampered, 403),  # amount changed after signing
        (no_sign, 400),
        (rsa1, 403),
        ({"garbage": "x" * 100}, 400),
    ]
    for params, status in cases:
        assert await env.notify(params) == (status, "fail"), params.get("total_amount")
    r = await env.http.post(env.gw.url + "/payments/alipay/notify", data={"out_trade_no": out_trade_no, "x": "a" * 1_100_000})
    assert r.status == 413
    # A genuine notify for an unpaid trade: acknowledged, nothing recorded.
    assert await env.notify(env.fake.trade_notify(out_trade_no, amount, trade_status="WAIT_BUYER_PAY")) == (200, "success")
    assert (await env.core.get_payment(out_trade_no)).status == "pending"
    assert (await env.core.get_arrears(ACCOUNT)).amount_owed == owed_before
    assert (await env.order(out_trade_no)).status == "pending"  # type: ignore[union-attr]
    assert await env.confirmations(out_trade_no) == 0
    assert out_trade_no not in env.proxy.confirms
    assert [m for m in env.fake.sent if m["to_user_id"] == user] == []

    # The same order is payable by the real thing; confirmation goes to the Alipay user.
    assert await env.notify(env.fake.trade_notify(out_trade_no, amount, trade_status="TRADE_FINISHED")) == (200, "success")
    assert (await env.core.get_payment(out_trade_no)).status == "paid"
    sent = await wait_until(lambda: [m for m in env.fake.sent if m["to_user_id"] == user], timeout=15)
    assert "缴费成功" in sent[0]["text"]["content"] and amount in sent[0]["text"]["content"]


async def test_lost_notify_recovered_by_trade_query_then_late_notify_is_harmless(env: Env) -> None:
    from datetime import timedelta

    user = "2088" + str(uuid.uuid4().int)[:12]
    out_trade_no, amount = await _pending_order(env, _unbilled_month(3), user)
    provider = env.gw.app[EXTRAS]["payments"]
    assert await provider.reconcile(out_trade_no) == "pending"  # not paid at Alipay yet
    assert await provider.reconcile("PB20990101000000nothere00000") == "unknown"
    env.fake.pay(out_trade_no, "2026112622001400009999999999")  # paid, but the notify is lost
    done = await provider.reconcile_pending(older_than=timedelta(0))
    assert done[out_trade_no] == "paid"
    payment = await env.core.get_payment(out_trade_no)
    assert payment.status == "paid" and payment.trade_no == "2026112622001400009999999999"
    # The late notify finally arrives: acknowledged, nothing recorded twice.
    notify = env.fake.trade_notify(out_trade_no, amount, trade_no="2026112622001400009999999999")
    assert await env.notify(notify) == (200, "success")
    assert env.proxy.confirms[out_trade_no] == 1
    assert await env.confirmations(out_trade_no) == 1
    assert out_trade_no not in await provider.reconcile_pending(older_than=timedelta(0))


async def test_core_down_answers_fail_then_alipay_retry_records_once(env: Env) -> None:
    user = "2088" + str(uuid.uuid4().int)[:12]
    out_trade_no, amount = await _pending_order(env, _unbilled_month(2), user)
    notify = env.fake.trade_notify(out_trade_no, amount)
    await env.core_cm.__aexit__(None, None, None)  # the core goes down
    env.core_cm = None
    try:
        status, body = await env.notify(dict(notify))
        assert (status, body) == (503, "fail")
        assert (await env.order(out_trade_no)).status == "pending"  # type: ignore[union-attr]
    finally:
        env.core_cm = run_core(env.core_db, seed=False, port=env.core_port)
        await env.core_cm.__aenter__()

    async def retried() -> bool:  # Alipay retries until it reads "success"
        return await env.notify(dict(notify)) == (200, "success")

    await wait_until(retried, timeout=40, interval=0.5)
    assert await env.notify(dict(notify)) == (200, "success")
    assert (await env.core.get_payment(out_trade_no)).status == "paid"
    assert await env.confirmations(out_trade_no) == 1
