"""Trust fixes of online payment (Alipay), through the real gateway, dialogue engine and core, with
the tests playing Alipay (signed gateway answers and trade notifies), on SQLite and PostgreSQL
(bot store and core store alike):

- asking to pay again gives the open order's link, not a second order for the same arrears;
- a payment confirmed after the bills were paid by another order is kept as a credit on the
  account (visible in the core's API) and raised to the back office as a work order;
- a gateway answer that cannot be read (unknown code, missing fields, not JSON...) is a
  ``PaymentUnavailable`` (a ``CoreUnavailable``: the pipeline answers "busy" and retries), and
  however often the creation is retried there is one order, finished once the gateway answers.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import time_machine
from aiohttp import web
from sqlalchemy import select

from backend_client import CoreClient, CoreUnavailable
from bot.app import EXTRAS, SESSIONMAKER
from bot.models import OutboxMessage
from payments.alipay import AlipayOrder, PaymentUnavailable
from loopback import serve_on_loopback
from stack import Gateway, run_core, run_gateway, wait_until
from alipay_platform import FakeAlipay, KeyPair

pytestmark = pytest.mark.asyncio(loop_scope="module")

APPID = "2021000000000078"
ZHANG = "3100000001"  # 张伟: phone ending 8000, two months in arrears
LI = "3100000002"  # 李娜: all paid
COMMERCIAL = "3100000003"


@dataclass
class BrokenAlipay(FakeAlipay):
    """The fake Alipay, able to answer ``alipay.trade.precreate`` with a broken answer."""

    precreate_answer: str | None = None
    precreate_calls: int = 0

    def _broken(self, kind: str, params: dict[str, str]) -> web.Response:
        method = "alipay.trade.precreate"
        out_trade_no = json.loads(params.get("biz_content") or "{}").get("out_trade_no", "")
        key = "alipay_trade_precreate_response"
        if kind == "unsigned_unknown_code":
            return web.json_response({key: {"code": "99999", "msg": "Unknown"}})
        if kind == "signed_unknown_code":
            return self._answer(method, {"code": "99999", "msg": "Unknown"})
        if kind == "empty_object":
            return web.json_response({})
        if kind == "json_list":
            return web.json_response([])
        if kind == "not_json":
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        if kind == "sign_not_string":
            return web.json_response({key: {"code": "10000", "msg": "Success"}, "sign": 12345})
        if kind == "signed_without_qr":
            return self._answer(method, {"code": "10000", "msg": "Success", "out_trade_no": out_trade_no})
        if kind == "another_order":
            return self._answer(method, {"code": "10000", "msg": "Success", "out_trade_no": "PB2099",
                                         "qr_code": "https://qr.alipay.com/bax00000000000000000000"})
        raise AssertionError(kind)

    async def handle(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if params.get("method") == "alipay.trade.precreate":
            self.precreate_calls += 1
            if self.precreate_answer is not None:
                return self._broken(self.precreate_answer, params)
        return await super().handle(request)


@dataclass
class Env:
    gw: Gateway
    fake: BrokenAlipay
    http: aiohttp.ClientSession
    core: CoreClient

    @property
    def payments(self) -> Any:
        return self.gw.app[EXTRAS]["payments"]

    async def notify(self, params: dict[str, str]) -> tuple[int, str]:
        r = await self.http.post(self.gw.url + "/payments/alipay/notify", data=params)
        return r.status, await r.text()

    async def orders(self, **where: str) -> list[AlipayOrder]:
        async with self.gw.app[SESSIONMAKER]() as s:
            q = select(AlipayOrder).where(*(getattr(AlipayOrder, k) == v for k, v in where.items()))
            return list((await s.execute(q.order_by(AlipayOrder.created_at))).scalars())

    async def replies(self, recipient: str) -> list[OutboxMessage]:
        async with self.gw.app[SESSIONMAKER]() as s:
            return list((await s.execute(select(OutboxMessage).where(OutboxMessage.recipient_id == recipient)
                                         .order_by(OutboxMessage.id))).scalars())

    async def say(self, sender: str, text: str) -> list[dict[str, Any]]:
        r = await self.http.post(self.gw.url + "/webhooks/rest/webhook", json={"sender": sender, "message": text})
        assert r.status == 200
        return await r.json()

    async def ask_for_link(self, sender: str, account: str = ZHANG, last4: str = "8000") -> dict[str, Any]:
        """Drive the real pay_bill conversation until the bot offers a payment link."""
        for text in ["我要交电费", account, last4, "确认", "确认"]:
            for reply in await self.say(sender, text):
                custom = reply.get("custom") or {}
                if custom.get("kind") == "payment_link":
                    return custom
        raise AssertionError("the bot never offered a payment link")



@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(bot store URL, core store URL), both on the backend under test."""
    if request.param == "sqlite":
        d = tmp_path_factory.mktemp("trust_pay")
        return f"sqlite+aiosqlite:///{d / 'bot.db'}", f"sqlite+aiosqlite:///{d / 'core.db'}"
    pg = request.getfixturevalue("postgres")
    return pg.new_database("trustpay"), pg.new_database("trustpaycore")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(stores: tuple[str, str], interpreter, tmp_path_factory) -> AsyncIterator[Env]:
    bot_url, core_url = stores
    d: Path = tmp_path_factory.mktemp("trust_pay_data")
    app_keys = KeyPair.generate()
    fake = BrokenAlipay(appid=APPID, app_public_pem=app_keys.public_pem)
    app = web.Application()
    app.router.add_route("*", "/gateway.do", fake.handle)
    async with serve_on_loopback(app) as base, run_core(core_url) as core_server:
        fake.url = base
        async with run_gateway(bot_url, core_server.url, interpreter, data_dir=d, public_url="https://pay.example.test",
                               alipay_appid=APPID, alipay_app_private_key=app_keys.private_pem,
                               alipay_public_key=fake.keys.public_pem, alipay_gateway_url=fake.gateway_url) as gw, \
                aiohttp.ClientSession() as http, CoreClient(core_server.url) as core:
            yield Env(gw=gw, fake=fake, http=http, core=core)


def later(minutes: float) -> time_machine.travel:
    """The clock moved on by ``minutes`` (and ticking), for the gateway, the core and Alipay alike."""
    return time_machine.travel(datetime.now(timezone.utc) + timedelta(minutes=minutes), tick=True)


# --------------------------------------------------------------------------- one open order
async def test_asking_again_gives_the_open_order_not_a_second_one(env: Env) -> None:
    owed = (await env.core.get_arrears(ZHANG)).amount_owed
    assert owed > 0
    sender = "web-" + uuid.uuid4().hex[:8]
    first = await env.ask_for_link(sender)
    assert Decimal(first["amount"]) == owed
    again = await env.ask_for_link(sender)  # the same customer asks again
    other = await env.ask_for_link("web-" + uuid.uuid4().hex[:8])  # another identity, same account
    assert again["out_trade_no"] == other["out_trade_no"] == first["out_trade_no"]
    assert again["qr_code"] == first["qr_code"]
    assert "time_expire" in again["pay_url"]
    pending = [p for p in await env.core.list_payments(ZHANG) if p.status == "pending"]
    assert [p.out_trade_no for p in pending] == [first["out_trade_no"]]
    assert [o.out_trade_no for o in await env.orders(account_number=ZHANG)] == [first["out_trade_no"]]
    # close to its expiry (Alipay closes the trade 30 minutes after it was made) the open order
    # is not offered any more: a new one is made
    with later(26):
        fresh = await env.payments.create_payment_link(account_number=ZHANG, amount=str(owed), channel="rest",
                                                       recipient_id=sender, subject="电费缴纳")
    assert fresh.out_trade_no != first["out_trade_no"]


# --------------------------------------------------------------------------- duplicate payment
async def test_a_late_duplicate_payment_is_kept_as_credit_and_raised_to_the_back_office(env: Env) -> None:
    await env.core.issue_bill(LI, "2031-01", 200)
    owed = (await env.core.get_arrears(LI)).amount_owed
    assert owed > 0
    user = "2088" + str(uuid.uuid4().int)[:12]
    first = await env.payments.create_payment_link(account_number=LI, amount=str(owed), channel="alipay",
                                                   recipient_id=user, subject="电费缴纳")
    with later(26):  # the first link is about to expire: asking again makes a second order
        second = await env.payments.create_payment_link(account_number=LI, amount=str(owed), channel="alipay",
                                                        recipient_id=user, subject="电费缴纳")
    assert second.out_trade_no != first.out_trade_no
    # ...and the customer pays both links
    assert await env.notify(env.fake.trade_notify(first.out_trade_no, first.amount)) == (200, "success")
    late = env.fake.trade_notify(second.out_trade_no, second.amount)
    assert await env.notify(late) == (200, "success")
    assert await env.notify(late) == (200, "success")  # Alipay's retry: nothing twice

    arrears = await env.core.get_arrears(LI)
    assert arrears.amount_owed == 0
    assert arrears.credit_balance == owed  # the second payment's money is not lost
    payments = {p.out_trade_no: p for p in await env.core.list_payments(LI)}
    assert payments[first.out_trade_no].status == "paid" and payments[first.out_trade_no].credit_amount == 0
    assert payments[second.out_trade_no].status == "paid" and payments[second.out_trade_no].credit_amount == owed
    # raised to the back office once: a high-priority work order on the account
    raised = [w for w in await env.core.list_work_orders(LI) if w.details.get("category") == "duplicate_payment"]
    assert len(raised) == 1
    assert raised[0].priority == "high" and raised[0].details["out_trade_no"] == second.out_trade_no
    assert raised[0].description.startswith("重复缴费")
    # ...and to an agent: a high-priority handoff in the customer's conversation, once
    from bot.dialogue.handoff import list_active_handoffs

    async with env.payments.ctx.sessionmaker() as session:
        handoffs = [h for h in await list_active_handoffs(session) if h.conversation_id == f"alipay:{user}"]
    assert [(h.reason, h.priority) for h in handoffs] == [("duplicate_payment", "high")]
    # the customer is told: the first payment confirmed, the second kept as credit
    def sent_to_user() -> list[str]:
        return [m["text"]["content"] for m in env.fake.sent if m["to_user_id"] == user]

    await wait_until(lambda: len(sent_to_user()) >= 2, timeout=15)
    sent = sent_to_user()
    assert len(sent) == 2
    assert any("缴费成功" in t for t in sent)
    credit_text = next(t for t in sent if "余额" in t)
    assert str(owed) in credit_text and "退款" in credit_text


# --------------------------------------------------------------------------- gateway answers
BROKEN = ["unsigned_unknown_code", "signed_unknown_code", "empty_object", "json_list", "not_json",
          "sign_not_string", "signed_without_qr", "another_order"]


@pytest.mark.parametrize("answer", BROKEN)
async def test_an_unreadable_gateway_answer_is_payment_unavailable_and_leaves_one_order(env: Env, answer: str) -> None:
    if (await env.core.get_arrears(COMMERCIAL)).amount_owed < 100:
        await env.core.issue_bill(COMMERCIAL, "2031-02", 300)
    owed = Decimal(10 + BROKEN.index(answer))  # an amount of its own: no open order of another case to reuse
    user = "2088" + str(uuid.uuid4().int)[:12]
    env.fake.precreate_answer = answer
    try:
        for _ in range(4):  # the pipeline runs the turn again: still one order
            with pytest.raises(PaymentUnavailable) as err:
                await env.payments.create_payment_link(account_number=COMMERCIAL, amount=str(owed), channel="alipay",
                                                       recipient_id=user, subject="电费缴纳")
            assert isinstance(err.value, CoreUnavailable)  # what the pipeline retries, telling the customer "busy"
    finally:
        env.fake.precreate_answer = None
    orders = await env.orders(recipient_id=user)
    assert [o.status for o in orders] == ["creating"]
    assert (await env.core.get_payment(orders[0].out_trade_no)).status == "pending"
    # the gateway answers again: the same order is finished and offered
    link = await env.payments.create_payment_link(account_number=COMMERCIAL, amount=str(owed), channel="alipay",
                                                  recipient_id=user, subject="电费缴纳")
    assert link.out_trade_no == orders[0].out_trade_no and link.qr_code
    assert [o.status for o in await env.orders(recipient_id=user)] == ["pending"]
    assert env.fake.precreated[link.out_trade_no]["total_amount"] == link.amount


async def test_the_customer_hears_busy_and_gets_the_link_once_the_gateway_answers(env: Env) -> None:
    if (await env.core.get_arrears(COMMERCIAL)).amount_owed < 100:
        await env.core.issue_bill(COMMERCIAL, "2031-03", 300)
    sender = "web-" + uuid.uuid4().hex[:8]
    env.fake.precreate_answer = "empty_object"
    calls = env.fake.precreate_calls
    try:
        for text in ["我要交电费", COMMERCIAL, "8000"]:
            await env.say(sender, text)

        async def busy() -> bool:
            return any("繁忙" in (r.payload or {}).get("text", "") for r in await env.replies(sender))

        await env.say(sender, "确认")
        await wait_until(busy, timeout=15)
        await wait_until(lambda: env.fake.precreate_calls >= calls + 2, timeout=20)  # the turn ran again
    finally:
        env.fake.precreate_answer = None

    async def link() -> list[dict[str, Any]]:
        return [r.payload for r in await env.replies(sender) if r.payload.get("kind") == "payment_link"]

    offered = await wait_until(link, timeout=30)
    orders = await env.orders(recipient_id=sender)
    assert len(orders) == 1 and orders[0].status == "pending"
    assert offered[0]["metadata"]["out_trade_no"] == orders[0].out_trade_no
