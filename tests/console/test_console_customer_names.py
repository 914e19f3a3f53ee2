"""Customers' names in the console: the queue shows the masked name and account from the first
load (one batched core call, cached for a short while), a search by (part of) a customer's name
finds their conversations on every channel, full names never leave the server, the queue still
renders when the core is slow or down, and two gateway processes never show a wrong name."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import update

from backend_client import CoreClient
from bot.app import CORE, SESSIONMAKER
from bot.console import NAMES
from bot.console.customer_names import CustomerNames, label, looks_like_name
from bot.dialogue.handoff import request_handoff
from bot.dialogue.store import Customer as DlgCustomer
from bot.dialogue.store import CustomerAccount, Identity
from core import models as m
from bot.db import make_engine, make_sessionmaker
from stack import run_core, run_gateway
from console_support import AgentClient, Customer, make_agent
from loopback import serve_on_loopback

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Clock:
    """A pinned monotonic clock the cache reads; the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def slow_core(delay: float, seen: list[str]) -> web.Application:
    """A core that takes ``delay`` seconds to answer the batch lookup (what a loaded core does)."""

    async def customers(request: web.Request) -> web.Response:
        seen.append(request.query.get("account_numbers", ""))
        await asyncio.sleep(delay)
        numbers = request.query["account_numbers"].split(",")
        return web.json_response({"customers": [{"account_number": n, "masked_name": "慢*"} for n in numbers]})

    app = web.Application()
    app.router.add_get("/api/v1/customers", customers)
    return app


async def rename(core_db: str, account: str, name: str) -> None:
    engine = make_engine(core_db)
    try:
        async with make_sessionmaker(engine)() as s, s.begin():
            await s.execute(update(m.Account).where(m.Account.account_number == account).values(holder_name=name))
    finally:
        await engine.dispose()


async def escalate(gw, http, account: str | None) -> Customer:  # type: ignore[no-untyped-def]
    """A web-chat customer (bound to ``account`` in the core first, so the bot links them) who
    asks for a human."""
    c = Customer(http, gw.url, "names-" + uuid.uuid4().hex[:8])
    if account:
        await gw.app[CORE].bind_account(account, "rest", c.sender)
    texts = await c.say("转人工")
    assert any("人工" in t for t in texts), texts
    return c


async def other_channel(gw, account: str, channel: str = "wechat") -> str:  # type: ignore[no-untyped-def]
    """The same account's customer escalated on another channel (a WeChat follower the bot
    linked to the account): its conversation id."""
    sender = "oNAMES_" + uuid.uuid4().hex[:8]
    async with gw.app[SESSIONMAKER]() as s, s.begin():
        cust = DlgCustomer()
        s.add(cust)
        await s.flush()
        s.add(Identity(channel=channel, sender_id=sender, customer_id=cust.id))
        s.add(CustomerAccount(customer_id=cust.id, account_number=account, how="bound"))
        await request_handoff(s, f"{channel}:{sender}", "request_human")
    return f"{channel}:{sender}"


def item_of(queue: list[dict], conversation_id: str) -> dict:
    found = [i for i in queue if i["conversation_id"] == conversation_id]
    assert found, [i["conversation_id"] for i in queue]
    return found[0]


# ------------------------------------------------------------------ units
async def test_label_and_name_test() -> None:
    assert label("3100000001", "张*") == "张* · 31******01"
    assert label("3100000001", "张伟") == "张* · 31******01"  # whatever the core sends, masked here
    assert label("3100000001", None) == "31******01"
    assert looks_like_name("张伟") and looks_like_name("浦江餐饮") and looks_like_name("Wei")
    assert not looks_like_name("张") and not looks_like_name("3100000001") and not looks_like_name("x" * 65)


# ------------------------------------------------------------------ the cache against a core
async def test_names_are_batched_cached_and_expire(core) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    async with CoreClient(core.url) as client:
        names = CustomerNames(client, clock=clock, ttl=60)
        got = await names.masked_names(["3100000001", "3100000002", "3199999999", "3100000001"])
        assert got == {"3100000001": "张*", "3100000002": "李*"} and names.calls == 1  # one call for all
        assert await names.masked_names(["3100000002", "3199999999"]) == {"3100000002": "李*"}
        assert names.calls == 1  # fresh, unknown ones too: no second call
        clock.now += 59.9
        await names.masked_names(["3100000001"])
        assert names.calls == 1
        await rename(core.db_url, "3100000002", "王芳")
        try:
            assert (await names.masked_names(["3100000002"]))["3100000002"] == "李*"  # within the TTL
            clock.now += 0.2
            assert (await names.masked_names(["3100000002"]))["3100000002"] == "王*"  # expired: asked again
            assert names.calls == 2
        finally:
            await rename(core.db_url, "3100000002", "李娜")
        # concurrent queue loads share one call
        clock.now += 120
        results = await asyncio.gather(*(names.masked_names(["3100000001", "3100000002"]) for _ in range(5)))
        assert all(r == {"3100000001": "张*", "3100000002": "李*"} for r in results) and names.calls == 3
        # a search remembers what it found
        assert await names.search("浦江餐饮") == ["3100000003"]
        assert names.known("3100000003") == (True, "上*********")
        assert await names.search("3100000001") == [] and await names.search("张") == []  # not names
        await names.close()


async def test_a_slow_core_does_not_hold_the_queue() -> None:
    seen: list[str] = []
    async with serve_on_loopback(slow_core(1.5, seen)) as url, CoreClient(url, retries=0) as client:
        names = CustomerNames(client, budget=0.3, call_timeout=5)
        started = time.perf_counter()
        assert await names.masked_names(["3100000001"]) == {}
        assert time.perf_counter() - started < 1.0  # the budget, not the core's 1.5 s
        assert await names.masked_names(["3100000001"]) == {}  # still under way: no second call
        assert seen == ["3100000001"]
        for _ in range(40):  # the call finishes in the background and fills the cache
            if names.known("3100000001")[0]:
                break
            await asyncio.sleep(0.1)
        assert await names.masked_names(["3100000001"]) == {"3100000001": "慢*"} and seen == ["3100000001"]
        # a search waits up to its own budget, then answers "unavailable"
        names.search_budget = 0.2
        assert await names.search("张伟") is None
        await names.close()


async def test_a_down_core_fails_fast() -> None:
    async with CoreClient("http://127.0.0.1:9", retries=0) as client:  # nothing listens on port 9
        names = CustomerNames(client)
        started = time.perf_counter()
        assert await names.masked_names(["3100000001"]) == {}
        assert await names.search("张伟") is None
        assert time.perf_counter() - started < 2.0
        await names.close()


# ------------------------------------------------------------------ through the console API
async def test_queue_names_customers_from_the_first_load_and_search_finds_them(core, interpreter, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path_factory.mktemp("names") / "bot.db"
    async with run_gateway(f"sqlite+aiosqlite:///{db}", core.url, interpreter) as gw, aiohttp.ClientSession() as http:
        for name in ("amy", "ben"):
            await make_agent(gw, name)
        zhang = await escalate(gw, http, "3100000001")
        zhang_wechat = await other_channel(gw, "3100000001")
        shop = await escalate(gw, http, "3100000003")
        anon = await escalate(gw, http, None)
        async with AgentClient(gw.url) as amy, AgentClient(gw.url) as ben, AgentClient(gw.url) as nobody:
            await amy.login("amy")
            await ben.login("ben")
            # the first load, nobody having opened anything: masked name and account
            status, body = await amy.get("/console/api/queue")
            assert status == 200
            queue = body["queue"]
            assert item_of(queue, zhang.conversation_id)["customer_label"] == "张* · 31******01"
            assert item_of(queue, zhang_wechat)["customer_label"] == "张* · 31******01"
            assert item_of(queue, shop.conversation_id)["customer_label"] == "上********* · 31******03"
            assert item_of(queue, anon.conversation_id)["customer_label"] is None  # not linked to an account
            assert gw.app[NAMES].calls == 1  # the whole queue in one core call
            text = str(body)
            assert "张伟" not in text and "3100000001" not in text and "浦江餐饮" not in text

            # a search by the full name or part of it finds the conversations on every channel
            status, body = await amy.get("/console/api/queue?q=张伟")
            assert status == 200 and body["name_search"] == "ok"
            assert {i["conversation_id"] for i in body["queue"]} == {zhang.conversation_id, zhang_wechat}
            assert "张伟" not in str(body["queue"])
            status, body = await amy.get("/console/api/queue?q=" + "浦江餐饮")
            assert [i["conversation_id"] for i in body["queue"]] == [shop.conversation_id]
            assert body["queue"][0]["customer_label"] == "上********* · 31******03"
            status, body = await amy.get("/console/api/queue?q=无此客户姓名")
            assert body["queue"] == [] and body["name_search"] == "ok"
            # an account number is not a name: searched as before, without the core
            status, body = await amy.get("/console/api/queue?q=3100000003")
            assert body["name_search"] == "skipped" and [i["conversation_id"] for i in body["queue"]] == [shop.conversation_id]

            # the access rule holds for name search too: ben's conversation is not listed to amy
            hid = item_of(await ben.queue(), zhang_wechat)["handoff_id"]
            assert (await ben.post(f"/console/api/handoffs/{hid}/take"))[0] == 200
            status, body = await amy.get("/console/api/queue?q=张伟")
            assert [i["conversation_id"] for i in body["queue"]] == [zhang.conversation_id]
            status, body = await amy.get("/console/api/queue")
            assert item_of(body["queue"], zhang_wechat)["customer_label"] is None  # not amy's to see
            # only logged-in agents search
            status, body = await nobody.get("/console/api/queue?q=张伟")
            assert status == 401 and "张" not in str(body)
            # opening a conversation shows the same masked name (and refreshes the cache)
            hz = item_of(await amy.queue(), zhang.conversation_id)["handoff_id"]
            status, body = await amy.get(f"/console/api/handoffs/{hz}")
            assert body["customer"]["name"] == "张*"


async def test_core_down_queue_shows_accounts_and_search_the_rest(interpreter, tmp_path) -> None:  # type: ignore[no-untyped-def]
    core_db = f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"
    async with contextlib.AsyncExitStack() as stack:
        core = await stack.enter_async_context(run_core(core_db))
        gw = await stack.enter_async_context(run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        await make_agent(gw, "amy")
        c = Customer(http, gw.url, "down-" + uuid.uuid4().hex[:8])
        await gw.app[CORE].bind_account("3100000002", "rest", c.sender)
        await c.say("我要投诉 zq-down-marker")
        await c.say("转人工")
        await core.runner.cleanup()  # the core goes away
        async with AgentClient(gw.url) as amy:
            await amy.login("amy")
            started = time.perf_counter()
            status, body = await amy.get("/console/api/queue")
            assert status == 200
            assert item_of(body["queue"], c.conversation_id)["customer_label"] == "31******02"  # the account only
            status, body = await amy.get("/console/api/queue?q=李娜")
            assert status == 200 and body["name_search"] == "unavailable" and body["queue"] == []
            status, body = await amy.get("/console/api/queue?q=zq-down-marker")  # the rest of the search works
            assert [i["conversation_id"] for i in body["queue"]] == [c.conversation_id]
            assert time.perf_counter() - started < 6.0


async def test_two_gateways_never_show_a_wrong_name(interpreter, postgres_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    core_db = f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"
    async with run_core(core_db) as core, \
            run_gateway(postgres_url, core.url, interpreter) as gw_a, \
            run_gateway(postgres_url, core.url, interpreter) as gw_b, \
            aiohttp.ClientSession() as http:
        await make_agent(gw_a, "amy")
        c = await escalate(gw_a, http, "3100000001")
        async with AgentClient(gw_a.url) as on_a, AgentClient(gw_b.url) as on_b:
            await on_a.login("amy")
            await on_b.login("amy")
            # B never saw the conversation: its first load names the customer too
            assert item_of(await on_b.queue(), c.conversation_id)["customer_label"] == "张* · 31******01"
            assert item_of(await on_a.queue(), c.conversation_id)["customer_label"] == "张* · 31******01"
            # the customer is linked to another account since (through either process): both
            # processes show the new account's name at once, not their cached one
            async with gw_a.app[SESSIONMAKER]() as s, s.begin():
                from sqlalchemy import select

                customer_id = (await s.execute(select(Identity.customer_id).where(
                    Identity.channel == "rest", Identity.sender_id == c.sender))).scalar_one()
                s.add(CustomerAccount(customer_id=customer_id, account_number="3100000002", how="verified"))
            for agent in (on_a, on_b):
                assert item_of(await agent.queue(), c.conversation_id)["customer_label"] == "李* · 31******02"
            # a name changed in the core shows in both within the TTL (pinned clocks moved past it)
            await rename(core_db, "3100000002", "王芳")
            for gw in (gw_a, gw_b):
                gw.app[NAMES].clock = Clock()
                gw.app[NAMES].clock.now = time.monotonic() + gw.app[NAMES].ttl + 1
            for agent in (on_a, on_b):
                assert item_of(await agent.queue(), c.conversation_id)["customer_label"] == "王* · 31******02"
