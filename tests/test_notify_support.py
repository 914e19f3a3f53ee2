"""Local platforms for the notification tests: an SMS provider (aiohttp) and an SMTP relay
(aiosmtpd), both on 127.0.0.1, plus helpers to subscribe customers picked from the core store.

The provider checks our signed API calls independently of our code (``X-Api-Key`` and hex
HMAC-SHA256 ``X-Signature`` over the raw body) and can inject failures or hang requests to
simulate a crash while sends are in flight.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text

SMS_SECRET = "notify-sms-secret"
SMS_KEY = "notify-sms-key"


class SmsProvider:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self.fail_with: list[int] = []  # statuses answered (nothing recorded), one per call
        self.hang_after: int | None = None  # accept this many notices, then hang new ones unrecorded
        self.hanging = 0
        self.batch_calls = 0
        self.refuse: dict[str, tuple[str, bool]] = {}  # number -> (error code, retryable) per batch item
        self._release = asyncio.Event()
        self.url = ""

    def _check_auth(self, request: web.Request, body: bytes) -> web.Response | None:
        """The provider's own checks: API key, then the HMAC signature over the raw body."""
        if request.headers.get("X-Api-Key") != SMS_KEY:
            self.rejected.append("api_key")
            return web.json_response({"error": "bad api key"}, status=401)
        expected = hmac.new(SMS_SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Signature", "")):
            self.rejected.append("signature")
            return web.json_response({"error": "bad signature"}, status=403)
        return None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        refused = self._check_auth(request, body)
        if refused is not None:
            return refused
        data = json.loads(body)
        if self.fail_with:
            return web.json_response({"error": "injected"}, status=self.fail_with.pop(0))
        if (
            self.hang_after is not None
            and data.get("part", 1) == 1
            and sum(1 for m in self.messages if m.get("part", 1) == 1) >= self.hang_after
        ):
            self.hanging += 1
            await self._release.wait()  # the gateway dies before this send completes
            return web.json_response({"error": "gone"}, status=503)
        data["provider_id"] = f"p-{uuid.uuid4().hex[:10]}"
        self.messages.append(data)
        return web.json_response({"message_id": data["provider_id"]})

    async def handle_batch(self, request: web.Request) -> web.Response:
        """The batch endpoint: same checks; per-item results; ``refuse`` numbers get an item error.

        With ``hang_after`` a request that would take the accepted notices past it hangs whole
        (a batch request is answered at once or not at all).
        """
        body = await request.read()
        refused = self._check_auth(request, body)
        if refused is not None:
            return refused
        data = json.loads(body)
        self.batch_calls += 1
        if self.fail_with:
            return web.json_response({"error": "injected"}, status=self.fail_with.pop(0))
        items = data["messages"]
        if self.hang_after is not None:
            firsts = sum(1 for m in self.messages if m.get("part", 1) == 1)
            if firsts + sum(1 for m in items if m.get("part", 1) == 1) > self.hang_after:
                self.hanging += 1
                await self._release.wait()
                return web.json_response({"error": "gone"}, status=503)
        results = []
        for item in items:
            if item["to"] in self.refuse:
                code, retryable = self.refuse[item["to"]]
                results.append({"client_ref": item["client_ref"], "error": code, "retryable": retryable})
                continue
            msg = {**item, "from": data.get("from"), "timestamp": data.get("timestamp"),
                   "provider_id": f"p-{uuid.uuid4().hex[:10]}"}
            self.messages.append(msg)
            results.append({"client_ref": item["client_ref"], "message_id": msg["provider_id"]})
        return web.json_response({"results": results})

    def release(self) -> None:
        self.hang_after = None
        self._release.set()

    def to(self, phone: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["to"] == phone]


@asynccontextmanager
async def run_sms_provider() -> AsyncIterator[SmsProvider]:
    provider = SmsProvider()
    app = web.Application()
    app.router.add_post("/v1/messages", provider.handle)
    app.router.add_post("/v1/messages/batch", provider.handle_batch)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    provider.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    try:
        yield provider
    finally:
        provider.release()
        await runner.cleanup()


class RelayHandler:
    def __init__(self) -> None:
        self.mails: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def] # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.mails.append((list(envelope.rcpt_tos), msg))
        return "250 OK"

    def to(self, addr: str) -> list[email.message.EmailMessage]:
        return [m for rcpts, m in self.mails if addr in rcpts]


@asynccontextmanager
async def run_relay() -> AsyncIterator[tuple[RelayHandler, int]]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    handler = RelayHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def gateway_settings(provider: SmsProvider, relay_port: int, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sms_api_base_url": provider.url,
        "sms_api_key": SMS_KEY,
        "sms_secret": SMS_SECRET,
        "sms_outbound_per_minute": 0,
        "smtp_relay_host": "127.0.0.1",
        "smtp_relay_port": relay_port,
        "notify_quiet_hours": "",
        "notify_poll_seconds": 0.1,
        "operator_token": "op-token-for-tests",
    }
    base.update(extra)
    return base


def accounts_by_district(core_db_url: str) -> dict[str, list[tuple[str, str]]]:
    """(account_number, phone) per district with distinct phones, read from the core store (test setup only)."""
    url = core_db_url.replace("+aiosqlite", "")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT district, account_number, phone FROM accounts ORDER BY account_number")).all()
    finally:
        engine.dispose()
    out: dict[str, list[tuple[str, str]]] = {}
    seen: set[str] = set()
    for district, acc, phone in rows:
        if phone in seen:  # households sharing a phone get one SMS: keep the tests' counts simple
            continue
        seen.add(phone)
        out.setdefault(district, []).append((acc, phone))
    return out


def e164(phone: str) -> str:
    return "+86" + phone[-11:]
