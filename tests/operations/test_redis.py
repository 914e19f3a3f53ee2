"""Redis unavailable: the gateway degrades to database-only behaviour with a warning.

Two situations, each through the real gateway, dialogue engine and core:

- ``POWERBOT_REDIS_URL`` points at a closed port from the start;
- a private Redis serves the gateway and is killed (SIGKILL) mid-run, then comes back.

What must keep working: customers' messages are answered, the WeChat access token is cached
in the database (and customer-service messages go out), console events reach subscribers in
this process, rate limits count in memory; and when Redis comes back it is used again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import pytest
import pytest_asyncio
import redis
from sqlalchemy import select

from bot.app import CHANNELS, SESSIONMAKER
from bot.console import BUS
from bot.models import CacheEntry
from channels.base import Reply
from stack import run_gateway, wait_until
from wechat_platform import APPID, SECRET, TOKEN, WeChatPusher, new_openid, run_wechat_api, text_xml

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN_KEY = f"wechat:access_token:{APPID}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def private_redis(port: int) -> Iterator[subprocess.Popen]:
    """A throw-away redis-server on loopback (no persistence)."""
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port, socket_timeout=0.5).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def wechat_api() -> AsyncIterator:
    async with run_wechat_api() as api:
        yield api


def settings_for(api, redis_url: str) -> dict:  # type: ignore[no-untyped-def]
    return dict(
        redis_url=redis_url, wechat_appid=APPID, wechat_token=TOKEN, wechat_secret=SECRET,
        wechat_api_base_url=api.url, rate_limit_per_sender_per_minute=5,
    )


async def rest(http: aiohttp.ClientSession, gw, sender: str, text: str) -> list:  # type: ignore[no-untyped-def]
    async with http.post(gw.url + "/webhooks/rest/webhook", json={"sender": sender, "message": text}) as r:
        assert r.status == 200
        return await r.json()


async def db_token(gw) -> str | None:  # type: ignore[no-untyped-def]
    async with gw.app[SESSIONMAKER]() as s:
        row = (await s.execute(select(CacheEntry).where(CacheEntry.key == TOKEN_KEY))).scalar_one_or_none()
    return row.value if row else None


async def wechat_round(gw, http, api, text: str) -> None:  # type: ignore[no-untyped-def]
    """A WeChat customer writes (passive answer), then the bot sends a customer-service message."""
    oid = new_openid()
    ans = await WeChatPusher(gw.url, mode="plain").post(http, text_xml(oid, "你好"))
    assert ans.status == 200 and ans.text
    await gw.app[CHANNELS]["wechat"].send(Reply(channel="wechat", recipient_id=oid, text=text))
    assert api.texts_to(oid) == [text]


async def console_event_arrives(gw, marker: str, timeout: float = 5) -> bool:  # type: ignore[no-untyped-def]
    bus = gw.app[BUS]
    q = bus.subscribe()
    try:
        await bus.publish({"type": "test", "marker": marker})
        try:
            data = await asyncio.wait_for(q.get(), timeout=timeout)
        except asyncio.TimeoutError:
            return False  # published to a Redis nobody here listens to yet
        return marker in data
    finally:
        bus.unsubscribe(q)


async def test_redis_unreachable_from_the_start(core, interpreter, wechat_api, tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    closed = f"redis://127.0.0.1:{free_port()}/0"
    async with run_gateway(
        f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter, **settings_for(wechat_api, closed)
    ) as gw, aiohttp.ClientSession() as http:
        assert await rest(http, gw, "no-redis-1", "你好")
        await wechat_round(gw, http, wechat_api, "您的工单已受理")
        assert await db_token(gw) in wechat_api.valid_tokens  # the token cache fell back to the database
        assert await console_event_arrives(gw, "local-only")
        # Per-sender limits still hold (in memory).
        replies = [await rest(http, gw, "no-redis-flood", f"你好{i}") for i in range(7)]
        assert sum(1 for r in replies if r == []) == 1 and "过于频繁" in replies[5][0]["text"]
        async with http.get(gw.url + "/healthz") as r:
            assert r.status == 200
    text = caplog.text
    assert "token cache: Redis unavailable" in text
    assert "rate limit: Redis unavailable" in text
    assert "console events" in text


async def test_redis_goes_away_mid_run_and_comes_back(
    core, interpreter, wechat_api, tmp_path, caplog, monkeypatch
) -> None:
    caplog.set_level(logging.WARNING)
    import common.ratelimit as rl
    from channels.wechat_store import TokenCache

    monkeypatch.setattr(rl, "REDIS_RETRY_SECONDS", 0.5)
    monkeypatch.setattr(TokenCache, "REDIS_RETRY_SECONDS", 0.5)
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with private_redis(port) as server:
        async with run_gateway(
            f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter, **settings_for(wechat_api, url)
        ) as gw, aiohttp.ClientSession() as http:
            r = redis.Redis(port=port)
            assert await rest(http, gw, "mid-1", "你好")
            await wechat_round(gw, http, wechat_api, "第一条")
            assert r.get(TOKEN_KEY) is not None and await db_token(gw) is None  # Redis holds the token
            assert any(k.startswith(b"powerbot:rl:") for k in r.keys())  # limits counted in Redis
            assert await console_event_arrives(gw, "via-redis")

            os.kill(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
            caplog.clear()

            # Customers keep being answered; the token is refetched into the database.
            for i in range(3):
                assert await rest(http, gw, f"mid-down-{i}", "电价是多少")
            wechat_api.revoke_all()  # force a token refresh while Redis is gone
            await wechat_round(gw, http, wechat_api, "第二条")
            assert await db_token(gw) in wechat_api.valid_tokens
            assert await console_event_arrives(gw, "redis-down")
            assert "Redis unavailable" in caplog.text

            # Redis returns on the same port: it is used again, without a restart.
            with private_redis(port):
                await asyncio.sleep(0.6)
                assert await rest(http, gw, "mid-back", "你好")
                await wait_until(
                    lambda: any(k.startswith(b"powerbot:rl:") for k in redis.Redis(port=port).keys()), timeout=10
                )
                await wait_until(lambda: console_event_arrives(gw, "redis-back", timeout=1), timeout=15)
                assert redis.Redis(port=port).pubsub_numsub("powerbot:console:events")[0][1] >= 1
