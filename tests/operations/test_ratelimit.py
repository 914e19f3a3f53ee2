"""Hostile traffic against the real gateway (real dialogue engine and core):

- a flood from one sender is cut at the per-sender limit, answered once politely, and other
  customers keep getting real answers;
- the per-IP limit on the public REST webhook answers a polite 429 with Retry-After, while
  platform callbacks (WeChat) are never limited per IP;
- a body over the limit is refused with 413 before it is read (the test never sends it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import aiohttp
import pytest
import time_machine
from sqlalchemy import func, select

from bot.app import SESSIONMAKER
from bot.models import InboundMessage
from bot.ratelimit import RateLimiter
from stack import run_gateway
from wechat_platform import APPID, TOKEN, WeChatPusher, new_openid, text_xml

# the one notice a flooding sender gets (utter_rate_limited in domain.yml, default brand)
SENDER_NOTICE = {
    "zh": "您发送消息过于频繁，请稍候一分钟再试。如遇停电、电线断落等紧急情况，请远离危险并拨打95598。",
    "en": "You are sending messages too quickly; please wait a minute and try again. "
    "For emergencies (fallen wires, sparks) keep away and call 95598.",
}
pytestmark = pytest.mark.asyncio(loop_scope="module")


async def say(http: aiohttp.ClientSession, gw_url: str, sender: str, text: str) -> tuple[int, object]:
    async with http.post(gw_url + "/webhooks/rest/webhook", json={"sender": sender, "message": text}) as r:
        return r.status, await r.json()


async def inbound_count(gw, sender: str) -> int:  # type: ignore[no-untyped-def]
    async with gw.app[SESSIONMAKER]() as s:
        return (
            await s.execute(select(func.count()).select_from(InboundMessage).where(InboundMessage.sender_id == sender))
        ).scalar_one()


async def test_flood_from_one_sender_is_limited_without_hurting_others(core, interpreter, http, tmp_path) -> None:
    limit = 8
    async with run_gateway(
        f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter,
        rate_limit_per_sender_per_minute=limit, rate_limit_per_ip_per_minute=0,
    ) as gw:
        flood = [say(http, gw.url, "flooder", f"你好{i}") for i in range(40)]

        async def polite_customer() -> list[tuple[int, object]]:
            out = []
            for text in ("你好", "电价是多少", "谢谢"):
                out.append(await say(http, gw.url, "customer-b", text))
            return out

        results = await asyncio.gather(*flood, polite_customer())
        flood_res, b_res = results[:-1], results[-1]

        assert all(status == 200 for status, _ in flood_res)
        bodies = [body for _, body in flood_res]
        notices = [b for b in bodies if b and b[0]["text"] == SENDER_NOTICE["zh"]]
        answered = [b for b in bodies if b and b[0]["text"] != SENDER_NOTICE["zh"]]
        silent = [b for b in bodies if b == []]
        assert len(notices) == 1, "the flood gets exactly one polite notice"
        assert len(answered) == limit
        assert len(silent) == 40 - limit - 1
        assert await inbound_count(gw, "flooder") == limit  # the rest never reached the pipeline

        # The other customer is untouched: three real answers, no notice.
        assert [s for s, _ in b_res] == [200, 200, 200]
        for _, body in b_res:
            assert body and body[0]["text"] and body[0]["text"] != SENDER_NOTICE["zh"]
        assert await inbound_count(gw, "customer-b") == 3

        # English flooders are told in English.
        for i in range(limit + 1):
            status, body = await say(http, gw.url, "flooder-en", f"hello there {i}")
        assert [(m["recipient_id"], m["text"]) for m in body] == [("flooder-en", SENDER_NOTICE["en"])]


async def test_per_ip_limit_answers_polite_429_but_never_limits_platform_callbacks(
    core, interpreter, http, tmp_path
) -> None:
    async with run_gateway(
        f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter,
        rate_limit_per_ip_per_minute=5, rate_limit_per_sender_per_minute=0,
        wechat_appid=APPID, wechat_token=TOKEN,
    ) as gw:
        statuses = []
        for i in range(7):
            async with http.post(gw.url + "/webhooks/rest/webhook", json={"sender": f"ip-user-{i}", "message": "你好"}) as r:
                statuses.append(r.status)
                if r.status == 429:
                    body = await r.json()
                    assert body["error"] == "rate_limited" and "请稍后再试" in body["message"]
                    assert int(r.headers["Retry-After"]) >= 1
        assert statuses == [200] * 5 + [429] * 2
        async with http.post(
            gw.url + "/webhooks/rest/webhook", json={"sender": "x", "message": "hi"}, headers={"Accept-Language": "en"}
        ) as r:
            assert r.status == 429 and "try again" in (await r.json())["message"]
        # GETs (health, web chat page, polling) are not counted.
        async with http.get(gw.url + "/healthz") as r:
            assert r.status == 200

        # WeChat's servers carry every customer's traffic from a few IPs: not limited per IP.
        p = WeChatPusher(gw.url, mode="plain")
        answers = [await p.post(http, text_xml(new_openid(), "你好")) for _ in range(8)]
        assert [a.status for a in answers] == [200] * 8
        assert all(a.text for a in answers)


async def test_body_over_limit_is_refused_before_it_is_read(core, interpreter, tmp_path) -> None:
    async with run_gateway(
        f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter, max_body_bytes=64 * 1024,
    ) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # Announce 50 MB and send none of it: an answer can only come from the headers alone.
        writer.write(
            b"POST /webhooks/rest/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\n\r\n"
        )
        await writer.drain()
        t0 = time.monotonic()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        assert head.startswith(b"HTTP/1.1 413"), head
        assert time.monotonic() - t0 < 5
        writer.close()

        async with aiohttp.ClientSession() as http:
            # Chunked upload (no Content-Length) over the limit: cut off while reading.
            async def chunks():  # type: ignore[no-untyped-def]
                for _ in range(8):
                    yield b"a" * 32 * 1024

            async with http.post(gw.url + "/webhooks/rest/webhook", data=chunks()) as r:
                assert r.status == 413
            # Normal traffic is unaffected.
            status, body = await say(http, gw.url, "after-413", "你好")
            assert status == 200 and body


async def test_sliding_window_counts_the_previous_minute() -> None:
    """The previous minute still counts, weighted by how much of it overlaps the last 60 s."""
    from common.ratelimit import Limiter

    with time_machine.travel(dt.datetime(2026, 3, 2, 10, 0, 59, tzinfo=dt.timezone.utc), tick=False) as clock:
        lim = Limiter(None)
        assert all([await lim.hit("k", 10) for _ in range(10)])  # end of one minute
        clock.shift(1)  # start of the next: the previous minute still counts fully
        assert not await lim.hit("k", 10)
        clock.shift(30)  # half-way: half of it (5) counts
        assert [await lim.hit("k", 10) for _ in range(6)] == [True] * 5 + [False]
        clock.shift(120)  # two minutes later: forgotten
        assert all([await lim.hit("k", 10) for _ in range(10)])
        assert await lim.retry_after("k", 10) >= 1


async def test_limiter_first_refusal_then_silent() -> None:
    lim = RateLimiter(None)
    decisions = [await lim.hit("s:rest:a", 3) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 3 + [False] * 3
    assert [d.first_refusal for d in decisions[3:]] == [True, False, False]
    assert (await lim.hit("s:rest:b", 3)).allowed  # another sender
    assert (await lim.hit("s:rest:a", 0)).allowed  # 0 = off


async def test_limits_hold_across_processes_through_redis(redis_url: str) -> None:
    """Two gateway processes share one count per sender when Redis is configured."""
    import subprocess
    import sys
    import uuid

    key = f"s:rest:two-processes-{uuid.uuid4().hex}"
    script = (
        "import asyncio, sys\n"
        "from bot.ratelimit import RateLimiter\n"
        "async def main():\n"
        "    lim = RateLimiter(sys.argv[1])\n"
        "    print(sum([(await lim.hit(sys.argv[2], 5)).allowed for _ in range(3)]), lim.backend)\n"
        "    await lim.close()\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", script, redis_url, key], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["3", "redis"]  # the other process: 3 of 5 used
    lim = RateLimiter(redis_url)
    try:
        decisions = [await lim.hit(key, 5) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, False, False] and lim.backend == "redis"
        assert decisions[2].first_refusal and not decisions[3].first_refusal and decisions[2].retry_after >= 1
    finally:
        await lim.close()
