"""With the core down a new customer's greeting is still answered (who they are is looked up
again once the core is back); what needs the core gets the polite "busy" answer."""

from __future__ import annotations

import aiohttp
from sqlalchemy import select

from bot.app import SESSIONMAKER
from bot.dialogue.store import Conversation
from processes import free_port
from stack import run_core, run_gateway, wait_until

BUSY = "系统繁忙"


async def say(http: aiohttp.ClientSession, url: str, sender: str, text: str, mid: str) -> list[str]:
    async with http.post(url + "/webhooks/rest/webhook", json={"sender": sender, "message": text, "message_id": mid},
                         timeout=aiohttp.ClientTimeout(total=30)) as r:
        assert r.status == 200
        return [m["text"] for m in await r.json()]


async def customer_of(gw, cid: str):  # type: ignore[no-untyped-def]
    async with gw.app[SESSIONMAKER]() as s:
        return (await s.execute(select(Conversation.customer_id).where(Conversation.id == cid))).scalar_one_or_none()


async def test_greeting_answered_while_the_core_is_down_identity_linked_later(interpreter, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    async with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", f"http://127.0.0.1:{port}", interpreter,
                           data_dir=tmp_path) as gw, aiohttp.ClientSession() as http:
        hello = await say(http, gw.url, "core-down-1", "你好", "m1")
        assert hello and not any(BUSY in t for t in hello), hello
        assert await customer_of(gw, "rest:core-down-1") is None  # not linked to anyone yet
        ask = await say(http, gw.url, "core-down-1", "查一下我的电费", "m2")
        assert any("户号" in t for t in ask), ask  # asking needs no core
        bill = await say(http, gw.url, "core-down-1", "3100000001", "m2b")
        assert bill == [] or any(BUSY in t for t in bill), bill  # reading the account does: busy (or later)
        async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", port=port):
            # once the core answers again (the client's circuit breaker waits out its cooldown),
            # the next turn links the sender
            n = 0

            async def linked() -> bool:
                nonlocal n
                n += 1
                # (an answer may come later: the postponed account message goes first, in order)
                await say(http, gw.url, "core-down-1", "谢谢", f"m3-{n}")
                return await customer_of(gw, "rest:core-down-1") is not None

            await wait_until(linked, timeout=30, interval=1.0)
