"""A local SMS provider played by the tests (aiohttp on 127.0.0.1).

It checks every API call the way a real aggregator would — ``X-Api-Key`` and the hex
HMAC-SHA256 ``X-Signature`` over the raw body, computed here independently of our code — and
records accepted messages. It also signs what it sends us (inbound SMS, delivery reports).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

SECRET = "sms-shared-secret-for-tests"
API_KEY = "sms-api-key-for-tests"


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class FakeSmsProvider:
    def __init__(self, secret: str = SECRET, api_key: str = API_KEY) -> None:
        self.secret = secret
        self.api_key = api_key
        self.messages: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self.fail_with: list[int] = []  # statuses to answer with, one per call, before accepting
        self.url = ""
        self._n = 0
        self.batch_calls = 0
        self.delay = 0.0  # seconds the batch endpoint waits before answering (timeouts)
        self.refuse: dict[str, tuple[str, bool]] = {}  # number -> (error code, retryable) per batch item
        self.refuse_parts: set[int] = set()  # segment numbers refused (retryable) whatever the number
        self.answer_delay = 0.0  # seconds between accepting a batch and answering (a lost answer)
        self.by_ref: dict[str, str] = {}  # client_ref -> message id: a repeated ref is not sent again
        self.repeats = 0

    def _check_auth(self, request: web.Request, body: bytes) -> web.Response | None:
        """The provider's own checks: API key, then the HMAC signature over the raw body."""
        if request.headers.get("X-Api-Key") != self.api_key:
            self.rejected.append("api_key")
            return web.json_response({"error": "bad api key"}, status=401)
        if not hmac.compare_digest(hmac_hex(self.secret, body), request.headers.get("X-Signature", "")):
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
        known = self.by_ref.get(data.get("client_ref", ""))
        if known is not None:
            self.repeats += 1
            return web.json_response({"message_id": known, "status": "accepted"})
        self._n += 1
        data["provider_id"] = f"prov-{self._n}-{uuid.uuid4().hex[:6]}"
        self.messages.append(data)
        self.by_ref[data.get("client_ref", "")] = data["provider_id"]
        return web.json_response({"message_id": data["provider_id"], "status": "accepted"})

    async def handle_batch(self, request: web.Request) -> web.Response:
        """The batch endpoint: same checks, one result per item (``refuse``: per-number errors)."""
        body = await request.read()
        refused = self._check_auth(request, body)
        if refused is not None:
            return refused
        data = json.loads(body)
        self.batch_calls += 1
        if self.fail_with:
            return web.json_response({"error": "injected"}, status=self.fail_with.pop(0))
        if self.delay:
            await asyncio.sleep(self.delay)
        results = []
        for item in data["messages"]:
            if item["to"] in self.refuse or item.get("part") in self.refuse_parts:
                code, retryable = self.refuse.get(item["to"], ("segment_rejected", True))
                results.append({"client_ref": item["client_ref"], "error": code, "retryable": retryable})
                continue
            known = self.by_ref.get(item["client_ref"])
            if known is not None:  # a retry of a request we accepted: same id, nothing sent again
                self.repeats += 1
                results.append({"client_ref": item["client_ref"], "message_id": known, "status": "accepted"})
                continue
            self._n += 1
            msg = {**item, "from": data.get("from"), "timestamp": data.get("timestamp"),
                   "provider_id": f"prov-{self._n}-{uuid.uuid4().hex[:6]}"}
            self.messages.append(msg)
            self.by_ref[item["client_ref"]] = msg["provider_id"]
            results.append({"client_ref": item["client_ref"], "message_id": msg["provider_id"], "status": "accepted"})
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)  # accepted and sent; the answer comes too late
        return web.json_response({"results": results})

    def to(self, phone: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["to"] == phone]

    def texts_to(self, phone: str) -> list[str]:
        return [m["text"] for m in self.to(phone)]


@asynccontextmanager
async def run_provider() -> AsyncIterator[FakeSmsProvider]:
    provider = FakeSmsProvider()
    app = web.Application()
    app.router.add_post("/v1/messages", provider.handle)
    app.router.add_post("/v1/messages/batch", provider.handle_batch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    provider.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    try:
        yield provider
    finally:
        await runner.cleanup()


def inbound_body(phone: str, text: str, *, message_id: str | None = None, ts: float | None = None,
                 to: str = "95598") -> dict[str, Any]:
    return {
        "from": phone,
        "to": to,
        "text": text,
        "message_id": message_id or f"in-{uuid.uuid4().hex}",
        "timestamp": int(ts if ts is not None else time.time()),
    }


async def post_signed(http: aiohttp.ClientSession, url: str, data: dict[str, Any], *, form: bool = False,
                      secret: str = SECRET, signature: str | None = None) -> aiohttp.ClientResponse:
    if form:
        from urllib.parse import urlencode

        body = urlencode(data).encode()
        ctype = "application/x-www-form-urlencoded"
    else:
        body = json.dumps(data, ensure_ascii=False).encode()
        ctype = "application/json"
    headers = {"Content-Type": ctype}
    sig = hmac_hex(secret, body) if signature is None else signature
    if sig:
        headers["X-Signature"] = sig
    async with http.post(url, data=body, headers=headers) as resp:
        await resp.read()
        return resp


# --- unit tests of the pure helpers the provider and our channel share -------------------
def test_our_signature_matches_the_providers_independent_hmac() -> None:
    from channels.sms import sign, verify_signature

    body = json.dumps({"from": "+8613800138000", "text": "查电费"}, ensure_ascii=False).encode()
    assert sign(SECRET, body) == hmac_hex(SECRET, body)
    assert verify_signature(SECRET, body, hmac_hex(SECRET, body).upper())
    assert not verify_signature(SECRET, body, hmac_hex("other", body))
    assert not verify_signature(SECRET, body + b" ", hmac_hex(SECRET, body))
    assert not verify_signature(SECRET, body, None)


def test_phone_numbers_are_normalised_to_e164() -> None:
    from channels.sms import normalize_phone

    for raw in ("13800138000", "+8613800138000", "8613800138000", "+86 138-0013-8000", "008613800138000"):
        assert normalize_phone(raw) == "+8613800138000", raw
    assert normalize_phone("010-12345678") == "+861012345678"
    assert normalize_phone("+14155550100") == "+14155550100"
    for bad in ("", None, "abc", "12345", "1380013800x"):
        assert normalize_phone(bad) is None, bad


def test_segments_follow_the_ucs2_rule() -> None:
    from channels.sms import MAX_PARTS, split_segments

    assert split_segments("电" * 70) == ["电" * 70]
    parts = split_segments("电" * 71)
    assert [len(p) for p in parts] == [67, 4]
    assert "".join(parts) == "电" * 71
    # a character outside the BMP takes two UCS-2 units and is never split
    emoji = "😀" * 40  # 80 units
    parts = split_segments(emoji)
    assert [len(p) for p in parts] == [33, 7] and "".join(parts) == emoji
    long = split_segments("电" * 2000)
    assert len(long) == MAX_PARTS and long[-1].endswith("…") and len(long[-1]) <= 67


def test_keywords_are_whole_message_and_case_insensitive() -> None:
    from channels.sms import keyword_of

    for t in ("STOP", "stop", " Stop. ", "TD", "td", "退订", "退订。", "Unsubscribe"):
        assert keyword_of(t) == "stop", t
    for t in ("START", "恢复"):
        assert keyword_of(t) == "start", t
    for t in ("stop the outage", "我要退订电费通知吗", "TDX", "查电费"):
        assert keyword_of(t) is None, t


def test_sliding_window_counts_per_number() -> None:
    from channels.sms import SlidingWindow

    w = SlidingWindow(3, period=60)
    assert [w.hit("a", now=t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert w.hit("b", now=3)
    assert w.hit("a", now=60.5)  # the first hit left the window


def test_plain_english_uses_gsm7_limits() -> None:
    from channels.sms import split_segments

    assert split_segments("a" * 160) == ["a" * 160]
    assert [len(p) for p in split_segments("a" * 161)] == [153, 8]
    assert split_segments("€" * 80) == ["€" * 80]
    assert [len(p) for p in split_segments("€" * 81)] == [76, 5]  # extension chars count twice
    assert [len(p) for p in split_segments("a" * 100 + "电")] == [67, 34]  # one CJK char → UCS-2


def test_timestamps_in_seconds_milliseconds_and_iso() -> None:
    from channels.sms import parse_timestamp

    assert parse_timestamp(1764150000) == 1764150000
    assert parse_timestamp("1764150000000") == 1764150000
    assert parse_timestamp("2025-11-26T09:40:00Z") == parse_timestamp("2025-11-26T17:40:00+08:00") == 1764150000
    assert parse_timestamp("2025-11-26T09:40:00") == 1764150000  # naive = UTC
    assert parse_timestamp("yesterday") is None and parse_timestamp(None) is None
