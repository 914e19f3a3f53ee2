"""/readyz: everyone learns ready or not; only an operator learns the details.

An operator is a caller on this host (loopback, not relayed by a proxy), the bearer of
POWERBOT_OPERATOR_TOKEN or a console supervisor. The detailed view also states the outbox
backlog (pending rows, the oldest one's age) and the dead letters of the last day. On SQLite
and on PostgreSQL; the non-local callers are real: the gateway also listens on a Unix socket
and, when the host has one, on a non-loopback address."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path

import aiohttp
from aiohttp import web
from yarl import URL

from bot.app import SESSIONMAKER
from bot.models import OutboxMessage, utcnow
from stack import run_core, run_gateway
from console_support import AgentClient, make_agent


OPERATOR_TOKEN = "op-token-4b1d6f0e9a"
PROVIDER_HOST = "sms-provider.internal.example:9"
SECRETS_AND_HOSTS = (PROVIDER_HOST, "sms-provider", "channels", "checks", "outbox")


def non_loopback_ipv4() -> str | None:
    """This host's own address on its default route (no packet is sent), if it has one."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("198.51.100.1", 9))
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") else ip


async def _seed_outbox(gw) -> None:  # type: ignore[no-untyped-def]
    """Rows in id order = creation order (as the outbox writes them); none is due, none is
    on a channel that is on (sms rows wait until next year), so the worker leaves them."""
    now = utcnow()
    later = now + timedelta(days=365)
    rows = [
        ("dead", "notice", now - timedelta(days=3)),  # dead, but not in the last day
        ("dead", "notice", now - timedelta(hours=2)),
        ("sent", "reply", now - timedelta(hours=1, minutes=30)),
        ("pending", "notice", now - timedelta(hours=1)),  # the oldest pending one
        ("dead", "reply", now - timedelta(minutes=30)),
        ("pending", "reply", now - timedelta(minutes=1)),
    ]
    async with gw.app[SESSIONMAKER]() as s, s.begin():
        for i, (status, kind, created) in enumerate(rows):
            s.add(OutboxMessage(channel="wechat", recipient_id=f"o{i}", kind=kind, payload={"text": "x"},
                                status=status, created_at=created, next_attempt_at=later))
            await s.flush()


async def _get(http: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, dict]:
    async with http.get(url, headers=headers) as r:
        assert r.content_type == "application/json"
        return r.status, await r.json()


def _minimal(status: int, body: dict) -> None:
    assert status == 200 and body == {"ready": True}, body
    assert not any(s in json.dumps(body) for s in SECRETS_AND_HOSTS)


def _detailed(status: int, body: dict) -> None:
    assert status == 200 and body["ready"] is True
    assert body["checks"] == {"database": "ok", "core": "ok"}
    assert body["channels"]["sms"] == {"on": True, "provider": PROVIDER_HOST}
    out = body["outbox"]
    assert out["pending"] == 2 and out["pending_at_least"] is False
    assert 3600 <= out["oldest_pending_age_seconds"] < 3600 + 120
    assert out["dead_last_24h"] == 2


async def test_readyz_details_only_for_operators(store_url: str, interpreter, tmp_path: Path) -> None:
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as core, \
            run_gateway(store_url, core.url, interpreter, operator_token=OPERATOR_TOKEN,
                        sms_api_base_url=f"http://{PROVIDER_HOST}/", sms_secret="sms-shared-secret") as gw, \
            aiohttp.ClientSession() as http:
        await make_agent(gw, "alice")
        await make_agent(gw, "sue", role="supervisor")
        await _seed_outbox(gw)

        # the gateway also listens where callers are not local: a Unix socket, a real address
        sock = str(tmp_path / "gw.sock")
        await web.UnixSite(gw.runner, sock).start()
        ip = non_loopback_ipv4()
        if ip is not None:
            site = web.TCPSite(gw.runner, ip, 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            _minimal(*await _get(http, f"http://{ip}:{port}/readyz"))
            # an operator token works from anywhere; a wrong one is nobody
            _detailed(*await _get(http, f"http://{ip}:{port}/readyz", Authorization=f"Bearer {OPERATOR_TOKEN}"))
            _minimal(*await _get(http, f"http://{ip}:{port}/readyz", Authorization="Bearer wrong"))
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as unix:
            _minimal(*await _get(unix, "http://gateway/readyz"))
            _detailed(*await _get(unix, "http://gateway/readyz", Authorization=f"Bearer {OPERATOR_TOKEN}"))
            _minimal(*await _get(unix, "http://gateway/readyz", Authorization=f"Bearer {OPERATOR_TOKEN}x"))
            _minimal(*await _get(unix, "http://gateway/readyz", Authorization="Bearer é"))

        # loopback is this host's own operator ... unless a proxy relays the call
        _detailed(*await _get(http, gw.url + "/readyz"))
        _minimal(*await _get(http, gw.url + "/readyz", **{"X-Forwarded-For": "203.0.113.9"}))
        _minimal(*await _get(http, gw.url + "/readyz", Forwarded="for=203.0.113.9"))
        _detailed(*await _get(http, gw.url + "/readyz", **{"X-Forwarded-For": "203.0.113.9",
                                                          "Authorization": f"Bearer {OPERATOR_TOKEN}"}))

        # a supervisor's console session sees the details; an agent's does not
        async with AgentClient(gw.url) as sup, AgentClient(gw.url) as agent:
            assert (await sup.login("sue")).status == 302
            assert (await agent.login("alice")).status == 302
            for client, check in ((sup, _detailed), (agent, _minimal)):
                cookie = client.http.cookie_jar.filter_cookies(URL(gw.url + "/console"))["pb_console"].value
                check(*await _get(http, gw.url + "/readyz", **{"X-Forwarded-For": "203.0.113.9",
                                                               "Cookie": f"pb_console={cookie}"}))
            _minimal(*await _get(http, gw.url + "/readyz", **{"X-Forwarded-For": "203.0.113.9",
                                                              "Cookie": "pb_console=forged"}))


async def test_readyz_not_ready_says_only_that(sqlite_url: str, interpreter, tmp_path: Path) -> None:
    """With the core down the answer is 503 for everybody; only an operator learns why."""
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as core:
        core_url = core.url
    async with run_gateway(sqlite_url, core_url, interpreter, operator_token=OPERATOR_TOKEN) as gw, \
            aiohttp.ClientSession() as http:
        status, body = await _get(http, gw.url + "/readyz", **{"X-Forwarded-For": "203.0.113.9"})
        assert status == 503 and body == {"ready": False}
        status, body = await _get(http, gw.url + "/readyz", Authorization=f"Bearer {OPERATOR_TOKEN}",
                                  **{"X-Forwarded-For": "203.0.113.9"})
        assert status == 503 and body["ready"] is False and body["checks"]["core"].startswith("error")
        assert body["checks"]["database"] == "ok" and body["outbox"]["pending"] == 0
