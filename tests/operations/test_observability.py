"""Observability: Prometheus ``/metrics`` on the gateway and the core (one process and
``serve --workers 2``), JSON logs with a request id from the HTTP request through the turn to
the outbox send, and customer data masked in every log field."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time

import aiohttp
import pytest
import pytest_asyncio
import structlog
from prometheus_client.parser import text_string_to_metric_families

from channels.rest import RestChannel
from stack import run_core, run_gateway, wait_until

PHONE = "13912345678"
ACCOUNT = "3101234567"

GATEWAY_METRICS = {
    "powerbot_messages_in", "powerbot_messages_out", "powerbot_turn_seconds", "powerbot_nlu_seconds",
    "powerbot_fallbacks", "powerbot_handoffs", "powerbot_inbound_wait_seconds", "powerbot_inbound_waiting",
    "powerbot_outbox_backlog", "powerbot_outbox_oldest_pending_age_seconds", "powerbot_outbox_dead_last_24h",
    "powerbot_outbox_retries", "powerbot_outbox_dead_letters", "powerbot_notices_sent",
    "powerbot_platform_errors", "powerbot_platform_api_errors", "powerbot_db_pool_connections_in_use",
    "powerbot_db_pool_capacity",
    "powerbot_http_requests", "powerbot_http_request_seconds",
}


def parse(text: str) -> tuple[set[str], dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    names: set[str] = set()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return names, samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: aiohttp.ClientSession, url: str, **kw) -> tuple[set[str], dict]:  # type: ignore[no-untyped-def]
    async with http.get(url + "/metrics", **kw) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/plain")
        return parse(await r.text())


@pytest_asyncio.fixture
async def stack(tmp_path, interpreter):  # type: ignore[no-untyped-def]
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", token="core-secret") as core:
        async with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter, data_dir=tmp_path,
                               core_api_token="core-secret", operator_token="op-secret") as gw:
            async with aiohttp.ClientSession() as http:
                yield core, gw, http


async def test_metrics_name_every_figure_and_move_with_a_message(stack) -> None:  # type: ignore[no-untyped-def]
    _, gw, http = stack
    names, before = await scrape(http, gw.url)
    assert GATEWAY_METRICS <= names, GATEWAY_METRICS - names
    async with http.post(gw.url + "/webhooks/rest/webhook", json={"sender": "metrics-1", "message": "你好"}) as r:
        assert r.status == 200 and await r.json()
    _, after = await scrape(http, gw.url)
    labels = {"channel": "rest", "status": "accepted"}
    assert value(after, "powerbot_messages_in_total", **labels) == value(before, "powerbot_messages_in_total", **labels) + 1
    assert value(after, "powerbot_turn_seconds_count", channel="rest") == \
        value(before, "powerbot_turn_seconds_count", channel="rest") + 1
    assert value(after, "powerbot_nlu_seconds_count") >= value(before, "powerbot_nlu_seconds_count") + 1
    assert value(after, "powerbot_messages_out_total", channel="rest", status="inline") >= 1
    assert value(after, "powerbot_db_pool_capacity", service="gateway") >= 1
    assert value(after, "powerbot_outbox_backlog") >= 0 and value(after, "powerbot_outbox_backlog_up") == 1
    route = {"service": "gateway", "method": "POST", "route": "/webhooks/rest/webhook", "status": "200"}
    assert value(after, "powerbot_http_requests_total", **route) == value(before, "powerbot_http_requests_total", **route) + 1


async def test_metrics_are_for_operators_only(stack) -> None:  # type: ignore[no-untyped-def]
    core, gw, http = stack
    relayed = {"X-Forwarded-For": "203.0.113.9"}  # through a proxy: not known to be local
    async with http.get(gw.url + "/metrics", headers=relayed) as r:
        assert r.status == 403
    await scrape(http, gw.url, headers={**relayed, "Authorization": "Bearer op-secret"})
    async with http.get(core.url + "/metrics") as r:
        assert r.status == 401
    names, samples = await scrape(http, core.url, headers={"Authorization": "Bearer core-secret"})
    assert {"powerbot_http_requests", "powerbot_db_pool_capacity"} <= names
    assert value(samples, "powerbot_db_pool_capacity", service="core") >= 1


@pytest.fixture
def json_logs():  # type: ignore[no-untyped-def]
    """JSON logging as the server sets it up, into a buffer; yields a function returning every
    line so far."""
    from common.logs import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("INFO", json_format=True)
    buf = io.StringIO()
    root.handlers[0].setStream(buf)  # type: ignore[attr-defined]

    def lines() -> list[str]:
        return buf.getvalue().splitlines()

    try:
        yield lines
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


async def test_request_id_from_request_through_turn_to_outbox_send(stack, json_logs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, gw, http = stack
    # no inline answer: the replies go through the outbox, whose send is logged
    monkeypatch.setattr(RestChannel, "wait_seconds", 0.0)
    rid = "req-obs-0001"
    text = f"你好，我的手机号{PHONE}，户号{ACCOUNT}"
    async with http.post(gw.url + "/webhooks/rest/webhook", json={"sender": "obs-1", "message": text},
                         headers={"X-Request-ID": rid}) as r:
        assert r.status == 200 and r.headers["X-Request-ID"] == rid

    def docs() -> list[dict]:
        return [json.loads(line) for line in json_logs() if line.startswith("{")]

    await wait_until(lambda: any(d.get("logger") == "powerbot.outbox" and d.get("msg") == "sent"
                                 and d.get("request_id") == rid for d in docs()), timeout=15)
    mine = [d for d in docs() if d.get("request_id") == rid]
    by_logger = {d["logger"]: d for d in mine}
    access = by_logger["powerbot.access"]
    assert access["msg"] == "request" and access["method"] == "POST" and access["status"] == 200
    assert access["path"] == "/webhooks/rest/webhook" and isinstance(access["duration_ms"], float)
    turn = by_logger["powerbot.turn"]
    assert turn["channel"] == "rest" and turn["replies"] >= 1
    sent = by_logger["powerbot.outbox"]
    assert sent["channel"] == "rest" and sent["kind"] == "reply"
    for d in mine:
        assert d["level"] in {"INFO", "WARNING", "ERROR"}
        assert time.strptime(d["ts"][:19], "%Y-%m-%dT%H:%M:%S") and d["ts"].endswith("Z")  # ISO 8601, UTC
    # an id that reads as personal data is replaced (ids are logged as they are)
    async with http.get(gw.url + "/healthz", headers={"X-Request-ID": PHONE}) as r:
        assert r.headers["X-Request-ID"] != PHONE
    # a request without an id gets a generated one, echoed back
    async with http.get(gw.url + "/healthz") as r:
        generated = r.headers["X-Request-ID"]
    assert len(generated) == 32
    assert any(d.get("request_id") == generated and d.get("path") == "/healthz" for d in docs())


async def test_customer_data_never_logged_in_clear(stack, json_logs, caplog) -> None:  # type: ignore[no-untyped-def]
    _, gw, http = stack
    text = f"我的手机号{PHONE}，户号{ACCOUNT}，帮我查电费"
    async with http.post(gw.url + "/webhooks/rest/webhook", json={"sender": PHONE, "message": text}) as r:
        assert r.status == 200
    async with http.get(gw.url + f"/webhooks/rest/{PHONE}/{ACCOUNT}") as r:  # the path is logged
        assert r.status == 404
    log = structlog.get_logger("powerbot.test")
    log.warning("customer wrote", text=text, phone=int(PHONE), account=ACCOUNT, nested={"to": [PHONE]})
    logging.getLogger("powerbot.test").warning("sender %s account %s", PHONE, ACCOUNT,
                                               extra={"contact": PHONE})
    try:
        raise ValueError(f"no customer for {PHONE}")
    except ValueError:
        logging.getLogger("powerbot.test").exception("lookup failed")
    await asyncio.sleep(0.2)
    lines = json_logs()
    docs = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(d.get("path") == "/webhooks/rest/139****5678/31******67" for d in docs)
    wrote = next(d for d in docs if d.get("msg") == "customer wrote")
    assert wrote["phone"] == "139****5678" and wrote["nested"] == {"to": ["139****5678"]}
    assert next(d for d in docs if d.get("msg", "").startswith("sender "))["contact"] == "139****5678"
    assert any("139****5678" in d.get("exception", "") for d in docs)
    for line in lines:
        assert PHONE not in line and ACCOUNT not in line, line
    # structlog lines are masked before any handler (a test's, a log shipper's) sees them
    access = [r.getMessage() for r in caplog.records if r.name == "powerbot.access"]
    assert any("139****5678" in m for m in access)
    assert not any(PHONE in m or ACCOUNT in m for m in access)


async def test_two_workers_report_the_totals_of_both(postgres_url, interpreter, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``serve --workers 2``: whichever worker answers a scrape reports both workers' figures."""
    from intents.model import save
    from processes import GatewayProcess, free_port

    model_dir = tmp_path / "models"
    save(interpreter.state, model_dir)
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as core:
        gw = GatewayProcess(
            {
                "POWERBOT_DATABASE_URL": postgres_url,
                "POWERBOT_CORE_URL": core.url,
                "POWERBOT_PORT": str(free_port()),
                "POWERBOT_DATA_DIR": str(tmp_path / "var"),
                "POWERBOT_NLU_MODEL_DIR": str(model_dir),
                "POWERBOT_NOTIFY_ENABLED": "false",
                "POWERBOT_RATE_LIMIT_PER_IP_PER_MINUTE": "0",
                "POWERBOT_DB_POOL_SIZE": "3",
                "POWERBOT_DB_MAX_OVERFLOW": "2",
            },
            tmp_path / "gateway.log",
            workers=2,
        )
        gw.start()
        try:
            await gw.ready()
            # a new connection per request: the kernel spreads them over the two workers
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:

                async def both_up() -> bool:
                    _, samples = await scrape(http, gw.url)
                    return value(samples, "powerbot_db_pool_capacity", service="gateway") == 2 * (3 + 2)

                await wait_until(both_up, timeout=60, interval=0.3)
                n = 8
                for i in range(n):
                    async with http.post(gw.url + "/webhooks/rest/webhook",
                                         json={"sender": f"mp-{i}", "message": "你好"}) as r:
                        assert r.status == 200 and await r.json()
                for _ in range(10):
                    _, samples = await scrape(http, gw.url)
                    assert value(samples, "powerbot_messages_in_total", channel="rest", status="accepted") == n
                    assert value(samples, "powerbot_turn_seconds_count", channel="rest") == n
                    assert value(samples, "powerbot_db_pool_capacity", service="gateway") == 10
        finally:
            gw.stop()
        assert "Traceback" not in (tmp_path / "gateway.log").read_text()


async def test_the_dashboard_uses_metrics_the_gateway_serves(stack) -> None:  # type: ignore[no-untyped-def]
    import re
    from pathlib import Path

    _, gw, http = stack
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy/grafana/powerbot.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {re.sub(r"_(bucket|total|count|sum)$", "", m) for e in exprs for m in re.findall(r"powerbot_[a-z0-9_]+", e)}
    names, _ = await scrape(http, gw.url)
    assert used and used <= names, used - names


async def test_platform_api_errors_counted_for_every_call(stack) -> None:  # type: ignore[no-untyped-def]
    """Calls to the loopback WeChat and Alipay, outside any outbox send (a token fetch, a
    template message whose token was revoked, a payment query), are counted by platform, API
    and code; the scrape shows them."""
    from channels import alipay_sdk
    from channels.base import DeliveryError
    from channels.wechat_api import WeChatAPI, WeChatAPIError
    from channels.wechat_store import TokenCache
    from alipay_platform import KeyPair, run_fake_alipay
    from wechat_platform import APPID, SECRET, new_openid, run_wechat_api

    _, gw, http = stack
    _, before = await scrape(http, gw.url)

    def api_errors(samples: dict, platform: str, api: str, code: str) -> float:
        return value(samples, "powerbot_platform_api_errors_total", platform=platform, api=api, code=code) - \
            value(before, "powerbot_platform_api_errors_total", platform=platform, api=api, code=code)

    async with run_wechat_api() as wechat, aiohttp.ClientSession() as out:
        good = WeChatAPI(appid=APPID, secret=SECRET, base_url=wechat.url, cache=TokenCache(None, None), http=out)
        wechat.next_errcodes.append(45015)  # "response out of time limit": the 48 h window closed
        with pytest.raises(WeChatAPIError):
            await good.send_text(new_openid(), "您好")
        wechat.revoke_all()  # the next call's token is refused once (40001), then refetched: it succeeds
        assert (await good.send_template(new_openid(), "TPL_OUTAGE", {"first": "停电通知"}))["errcode"] == 0
        wrong = WeChatAPI(appid=APPID, secret="not-the-secret", base_url=wechat.url, cache=TokenCache(None, None),
                          http=out)
        with pytest.raises(WeChatAPIError):
            await wrong.access_token()  # 40125 invalid appsecret
    ours = KeyPair.generate()
    async with run_fake_alipay("2021000000000001", ours.public_pem) as alipay:
        client = alipay_sdk.make_client("2021000000000001", ours.private_pem, alipay.keys.public_pem, alipay.gateway_url)
        with pytest.raises(DeliveryError):
            await alipay_sdk.call(client, "api_alipay_trade_query", out_trade_no="PB-NO-SUCH-ORDER")
        alipay.fail_send_with = "40004"
        biz = {"to_user_id": "2088000000000001", "msg_type": "text", "text": {"content": "测试"}, "chat": "1"}
        with pytest.raises(DeliveryError):
            await alipay_sdk.call(client, "server_api", "alipay.open.public.message.custom.send", biz_content=biz)

    _, after = await scrape(http, gw.url)
    assert api_errors(after, "wechat", "message/custom/send", "45015") == 1
    assert api_errors(after, "wechat", "message/template/send", "40001") == 1
    assert api_errors(after, "wechat", "token", "40125") == 1
    assert api_errors(after, "alipay", "alipay.trade.query", "ACQ.TRADE_NOT_EXIST") == 1
    assert api_errors(after, "alipay", "alipay.open.public.message.custom.send", "PUB.MSG_SEND_FAILED") == 1


async def test_db_pool_use_is_exported(stack) -> None:  # type: ignore[no-untyped-def]
    """The in-use gauge follows a connection checked out of the gateway's pool and back."""
    from bot.app import SESSIONMAKER
    from common.metrics import render

    _, gw, http = stack

    def in_use() -> float:  # read from the registry: a scrape would wait for the one SQLite connection
        return value(parse(render()[0].decode())[1], "powerbot_db_pool_connections_in_use", service="gateway")

    async with gw.app[SESSIONMAKER]() as session:
        await session.connection()
        assert in_use() == 1  # SQLite: the pool's one connection, held here
    # back in the pool (the gateway's own background work may take it again for a moment)
    await wait_until(lambda: in_use() == 0, timeout=5, interval=0.01)
    _, samples = await scrape(http, gw.url)
    assert value(samples, "powerbot_db_pool_capacity", service="gateway") == \
        gw.settings.db_pool_size + gw.settings.db_max_overflow


async def test_postgres_statements_and_new_connections_are_counted(postgres_url, interpreter, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL the gateway counts statements sent and connections opened; a fixed pool
    (the default, no overflow) opens no new connection for later messages."""
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as core, run_gateway(
        postgres_url, core.url, interpreter, data_dir=tmp_path,
    ) as gw, aiohttp.ClientSession() as http:
        async def say(n: int) -> None:
            async with http.post(gw.url + "/webhooks/rest/webhook",
                                 json={"sender": "pg-metrics", "message": "电价是多少", "message_id": f"m{n}"}) as r:
                assert r.status == 200 and await r.json()

        await say(0)
        _, first = await scrape(http, gw.url)
        for n in range(1, 6):
            await say(n)
        _, later = await scrape(http, gw.url)
    stmts = [value(s, "powerbot_db_statements_total", service="gateway") for s in (first, later)]
    opened = [value(s, "powerbot_db_connections_opened_total", service="gateway") for s in (first, later)]
    assert stmts[0] > 0 and stmts[1] - stmts[0] >= 5  # at least one statement a message
    assert opened[0] >= 1 and opened[1] == opened[0]  # the pool kept its connections
