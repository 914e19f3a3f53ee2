"""A local SMS provider played by the tests (aiohttp on 127.0.0.1), for the SMS channel and the
notification tests alike.

It checks every API call the way a real aggregator would — ``X-Api-Key`` and the hex
HMAC-SHA256 ``X-Signature`` over the raw body, computed here independently of our code — and
records accepted messages. It also signs what it sends us (inbound SMS, delivery reports).
Failures are injected per call (``fail_with``), per number or segment (``refuse``,
``refuse_parts``), as slowness (``delay``, ``answer_delay``: accepted, answered too late) or as
requests that hang until ``release()`` (``hang_after``: a gateway dying with sends in flight).
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

from loopback import serve_on_loopback

SECRET = "sms-shared-secret-for-tests"
API_KEY = "sms-api-key-for-tests"


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _firsts(messages: list[dict[str, Any]]) -> int:
    """Notices among ``messages`` (a multi-part SMS counts once)."""
    return sum(1 for m in messages if m.get("part", 1) == 1)


class FakeSmsProvider:
    """``honour_refs``: a repeated ``client_ref`` is answered with the first message id and not
    sent again (the provider contract our retries rely on); off, every accepted request is
    recorded, so a test sees each send our code made."""

    def __init__(self, secret: str = SECRET, api_key: str = API_KEY, *, honour_refs: bool = True) -> None:
        self.secret = secret
        self.api_key = api_key
        self.honour_refs = honour_refs
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
        self.hang_after: int | None = None  # accept this many notices, then hang new requests unrecorded
        self.hanging = 0
        self._release = asyncio.Event()

    def _check_auth(self, request: web.Request, body: bytes) -> web.Response | None:
        """The provider's own checks: API key, then the HMAC signature over the raw body."""
        if request.headers.get("X-Api-Key") != self.api_key:
            self.rejected.append("api_key")
            return web.json_response({"error": "bad api key"}, status=401)
        if not hmac.compare_digest(hmac_hex(self.secret, body), request.headers.get("X-Signature", "")):
            self.rejected.append("signature")
            return web.json_response({"error": "bad signature"}, status=403)
        return None

    async def _hang_if_past(self, new: list[dict[str, Any]]) -> web.Response | None:
        """With ``hang_after``: a request that would take the accepted notices past it hangs
        whole (answered at once or not at all) until ``release()``."""
        if self.hang_after is None or _firsts(self.messages) + _firsts(new) <= self.hang_after:
            return None
        self.hanging += 1
        await self._release.wait()  # the gateway dies before this send completes
        return web.json_response({"error": "gone"}, status=503)

    def _accept(self, item: dict[str, Any], **extra: Any) -> str:
        """Record one message (or find the one sent for its ``client_ref``): its message id."""
        ref = item.get("client_ref", "")
        known = self.by_ref.get(ref) if self.honour_refs else None
        if known is not None:  # a retry of a request we accepted: same id, nothing sent again
            self.repeats += 1
            return known
        self._n += 1
        msg = {**item, **extra, "provider_id": f"prov-{self._n}-{uuid.uuid4().hex[:6]}"}
        self.messages.append(msg)
        self.by_ref[ref] = msg["provider_id"]
        return msg["provider_id"]

    async def _checked(self, request: web.Request, *, batch: bool = False) -> tuple[dict[str, Any], web.Response | None]:
        """The request's JSON, or the refusal to answer instead (bad credentials, an injected
        failure); ``batch_calls`` counts the authenticated batch requests."""
        body = await request.read()
        refused = self._check_auth(request, body)
        if refused is not None:
            return {}, refused
        self.batch_calls += batch
        if self.fail_with:
            return {}, web.json_response({"error": "injected"}, status=self.fail_with.pop(0))
        return json.loads(body), None

    async def handle(self, request: web.Request) -> web.Response:
        data, refused = await self._checked(request)
        if refused is not None:
            return refused
        hung = await self._hang_if_past([data])
        if hung is not None:
            return hung
        return web.json_response({"message_id": self._accept(data), "status": "accepted"})

    async def handle_batch(self, request: web.Request) -> web.Response:
        """The batch endpoint: same checks, one result per item (``refuse``: per-number errors)."""
        data, refused = await self._checked(request, batch=True)
        if refused is not None:
            return refused
        if self.delay:
            await asyncio.sleep(self.delay)
        hung = await self._hang_if_past(data["messages"])
        if hung is not None:
            return hung
        results = []
        for item in data["messages"]:
            if item["to"] in self.refuse or item.get("part") in self.refuse_parts:
                code, retryable = self.refuse.get(item["to"], ("segment_rejected", True))
                results.append({"client_ref": item["client_ref"], "error": code, "retryable": retryable})
                continue
            message_id = self._accept(item, **{"from": data.get("from"), "timestamp": data.get("timestamp")})
            results.append({"client_ref": item["client_ref"], "message_id": message_id, "status": "accepted"})
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)  # accepted and sent; the answer comes too late
        return web.json_response({"results": results})

    def release(self) -> None:
        self.hang_after = None
        self._release.set()

    def to(self, phone: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["to"] == phone]

    def texts_to(self, phone: str) -> list[str]:
        return [m["text"] for m in self.to(phone)]


@asynccontextmanager
async def run_provider(**options: Any) -> AsyncIterator[FakeSmsProvider]:
    """A provider (``FakeSmsProvider(**options)``) listening on a free port of 127.0.0.1."""
    provider = FakeSmsProvider(**options)
    app = web.Application()
    app.router.add_post("/v1/messages", provider.handle)
    app.router.add_post("/v1/messages/batch", provider.handle_batch)
    async with serve_on_loopback(app, shutdown_timeout=0.5) as base:
        provider.url = f"{base}/v1"
        try:
            yield provider
        finally:
            provider.release()


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
