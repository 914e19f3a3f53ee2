"""The gateway's own surface: health/readiness, the Rasa-shaped REST channel, the chat page."""

from __future__ import annotations

import aiohttp
import pytest_asyncio

from bot import outbox
from bot.app import CORE, OUTBOX, SESSIONMAKER
from channels.base import Reply
from stack import run_core, run_gateway, wait_until


@pytest_asyncio.fixture
async def stack(tmp_path, interpreter):  # type: ignore[no-untyped-def]
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as core:
        async with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter, data_dir=tmp_path) as gw:
            async with aiohttp.ClientSession() as http:
                yield core, gw, http


async def test_health_and_readiness_report_channels(stack) -> None:  # type: ignore[no-untyped-def]
    core, gw, http = stack
    async with http.get(gw.url + "/healthz") as r:
        assert r.status == 200 and (await r.json())["status"] == "ok"
    async with http.get(gw.url + "/readyz") as r:
        body = await r.json()
    assert r.status == 200 and body["ready"] is True
    assert body["checks"] == {"database": "ok", "core": "ok"}
    assert body["channels"]["rest"] == {"on": True}
    assert body["channels"]["wechat"] == {"on": False} and body["channels"]["sms"] == {"on": False}


async def test_not_ready_when_core_is_down(stack) -> None:  # type: ignore[no-untyped-def]
    core, gw, http = stack
    await core.runner.cleanup()  # the core goes away; the gateway stays up
    async with http.get(gw.url + "/readyz") as r:
        body = await r.json()
    assert r.status == 503 and body["ready"] is False
    assert body["checks"]["database"] == "ok" and body["checks"]["core"].startswith("error")
    async with http.get(gw.url + "/healthz") as r:
        assert r.status == 200


async def test_rest_webhook_shape_and_bad_input(stack) -> None:  # type: ignore[no-untyped-def]
    _, gw, http = stack
    url = gw.url + "/webhooks/rest/webhook"
    async with http.post(url, json={"sender": "shape-1", "message": "你好"}) as r:
        body = await r.json()
    assert r.status == 200 and isinstance(body, list) and body
    assert body[0]["recipient_id"] == "shape-1" and body[0]["text"]
    for bad in (b"{not json", b"[1,2]", b'{"sender": "", "message": "x"}', b'{"sender": "a", "message": 5}'):
        async with http.post(url, data=bad, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
            assert "reason" in await r.json()
    # A replayed message id is processed once: the retry gets no second answer.
    payload = {"sender": "shape-2", "message": "你好", "message_id": "fixed-1"}
    async with http.post(url, json=payload) as r:
        assert await r.json()
    async with http.post(url, json=payload) as r:
        assert await r.json() == []


async def test_chat_page_is_served_locally(stack) -> None:  # type: ignore[no-untyped-def]
    _, gw, http = stack
    async with http.get(gw.url + "/chat") as r:
        html = await r.text()
    assert r.status == 200 and "/webhooks/rest/webhook" in html
    assert "http://" not in html and "https://" not in html  # no CDN


async def test_poll_delivers_a_reply_queued_before_the_first_poll(stack) -> None:  # type: ignore[no-untyped-def]
    _, gw, http = stack
    sender = "poll-1"
    async with gw.app[SESSIONMAKER]() as s, s.begin():
        await outbox.enqueue(s, Reply(channel="rest", recipient_id=sender, text="客服回复：已为您处理"), delay=1.0)
    async with http.get(gw.url + "/webhooks/rest/messages", params={"sender": sender, "after": "0"}) as r:
        first = await r.json()
    assert first["messages"] == []

    async def delivered():  # type: ignore[no-untyped-def]
        async with http.get(
            gw.url + "/webhooks/rest/messages", params={"sender": sender, "after": str(first["cursor"])}
        ) as r:
            return (await r.json())["messages"]

    got = await wait_until(delivered, timeout=10)
    assert [m["text"] for m in got] == ["客服回复：已为您处理"]
    assert gw.app[OUTBOX] is not None and gw.app[CORE] is not None
