"""Live console events across gateway processes: two gateways on one bot database and one
Redis; what happens on one reaches the agents' websockets on the other."""

from __future__ import annotations

import asyncio
import json
import uuid


import aiohttp
import pytest

from stack import run_gateway, wait_until
from console_support import AgentClient, Customer, make_agent

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def next_event(ws, type_: str, conversation_id: str, timeout: float = 10.0) -> dict:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError(f"no {type_!r} event within {timeout}s")
        msg = await ws.receive(timeout=left)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        ev = json.loads(msg.data)
        if ev.get("type") == type_ and ev.get("conversation_id") == conversation_id:
            return ev


async def test_events_cross_gateways_through_redis(core, interpreter, postgres_url, redis_url) -> None:
    async with run_gateway(postgres_url, core.url, interpreter, redis_url=redis_url) as gw_a, \
            run_gateway(postgres_url, core.url, interpreter, redis_url=redis_url) as gw_b, \
            aiohttp.ClientSession() as http:
        await make_agent(gw_a, "alice")
        await make_agent(gw_a, "bob")
        async with AgentClient(gw_b.url) as on_b, AgentClient(gw_a.url) as on_a:
            await on_b.login("alice")
            await on_a.login("bob")
            ws_b = await on_b.http.ws_connect(gw_b.url.replace("http", "ws") + "/console/ws")
            ws_a = await on_a.http.ws_connect(gw_a.url.replace("http", "ws") + "/console/ws")
            assert (await ws_b.receive_json(timeout=5))["type"] == "hello"
            assert (await ws_a.receive_json(timeout=5))["type"] == "hello"

            # a customer escalates through gateway A; alice, connected to B, hears of it at once
            c = Customer(http, gw_a.url, "redis-" + uuid.uuid4().hex[:8])
            await c.say("转人工")
            await c.poll()
            ev = await next_event(ws_b, "queued", c.conversation_id)
            hid = ev["handoff_id"]
            # presence is shared too (database): nobody was told "no agent online"
            assert not any("暂无人工客服在线" in t for t in c.received)

            # alice takes it on B; bob's websocket on A sees it taken
            assert (await on_b.post(f"/console/api/handoffs/{hid}/take"))[0] == 200
            assert (await next_event(ws_a, "taken", c.conversation_id))["agent"] == "alice"
            # the customer is told alice joined (queued on B, polled from A)
            assert await wait_until(c.poll, timeout=10) == ["人工客服alice已接入，正在为您服务。"]
            # bob, on the other gateway, loses the race
            assert (await on_a.post(f"/console/api/handoffs/{hid}/take"))[0] == 409

            # the customer writes through A: alice's websocket on B gets the new message
            await c.say("请问什么时候来电？")
            await next_event(ws_b, "message", c.conversation_id)
            # alice answers on B; the customer receives it from A's poll endpoint
            assert (await on_b.post(f"/console/api/handoffs/{hid}/reply", {"text": "预计一小时内恢复供电。"}))[0] == 200
            assert await wait_until(c.poll, timeout=10) == ["预计一小时内恢复供电。"]
            assert (await on_b.post(f"/console/api/handoffs/{hid}/close"))[0] == 200
            await next_event(ws_a, "closed", c.conversation_id)
            await ws_a.close()
            await ws_b.close()


async def test_without_redis_events_stay_in_process(core, interpreter, tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    async with run_gateway(url, core.url, interpreter) as gw, aiohttp.ClientSession() as http:
        await make_agent(gw, "alice")
        async with AgentClient(gw.url) as a:
            await a.login("alice")
            ws = await a.http.ws_connect(gw.url.replace("http", "ws") + "/console/ws")
            await ws.receive_json(timeout=5)
            c = Customer(http, gw.url, "local-" + uuid.uuid4().hex[:8])
            await c.say("人工客服")
            ev = await next_event(ws, "queued", c.conversation_id)
            assert ev["reason"] == "request_human"
            await ws.close()
