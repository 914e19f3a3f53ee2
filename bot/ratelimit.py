"""Hostile-traffic guards of the gateway: body-size cap, per-IP and per-sender rate limits.

Three layers, cheapest first:

1. **Body size** (middleware): a request whose ``Content-Length`` exceeds
   ``POWERBOT_MAX_BODY_BYTES`` is refused with 413 before a byte of the body is read. A
   chunked body without a length is cut off by aiohttp's ``client_max_size`` (same limit)
   the moment the handler reads past it.
2. **Per IP** (middleware): requests to the public customer endpoints
   (``POWERBOT_RATE_LIMIT_IP_PATHS``: the REST webhook/web chat, the console login) are
   counted per client address; over ``POWERBOT_RATE_LIMIT_PER_IP_PER_MINUTE`` → a polite 429
   with ``Retry-After``. Platform callbacks (``/channels/...``, ``/payments/...``) are NOT
   limited per IP: WeChat/Alipay/SMS gateways send every customer's traffic from a few
   addresses, so an IP limit there would punish everyone for one sender.
3. **Per sender** (around the message processor, so it covers every channel): more than
   ``POWERBOT_RATE_LIMIT_PER_SENDER_PER_MINUTE`` messages from one (channel, sender) in a
   sliding minute are not processed; the first refused one is answered with a polite notice
   ("您发送消息过于频繁…"), the rest of the flood is dropped silently (answering a flood would
   spend SMS/WeChat quota on the attacker). Other senders are not affected.

Counting is ``common.ratelimit`` (the ``limits`` library's sliding-window counter): in Redis
when ``POWERBOT_REDIS_URL`` is set, so the limits hold across gateway processes; otherwise (or
while Redis is unreachable — logged as a warning, retried every ``REDIS_RETRY_SECONDS``) each
process counts in memory. Keys hold a hash of the sender, never the raw phone number / openid.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.langs import detect_language, request_language
from bot.settings import Settings
from bot.texts import TextService
from channels.base import Message, Receipt, Reply, SideWrite
from common.ratelimit import Limiter

log = logging.getLogger("powerbot.ratelimit")

WINDOW_SECONDS = 60


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


@dataclass
class Decision:
    allowed: bool
    count: float  # the limit a refused request hit (0 when allowed)
    first_refusal: bool = False  # the first request refused since the key was last allowed (answer it politely)
    retry_after: int = 0


@dataclass
class RateLimiter:
    """Per-minute limits per key (``common.ratelimit.Limiter``), saying which refusal is the first."""

    redis_url: str | None = None
    limiter: Limiter = field(init=False)
    stats: dict[str, int] = field(default_factory=lambda: {"allowed": 0, "refused": 0})
    _refused_until: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.limiter = Limiter(self.redis_url)

    @property
    def backend(self) -> str:
        return self.limiter.backend

    async def hit(self, key: str, limit: int) -> Decision:
        """Count one request under ``key``; refuse it when over ``limit`` per minute (0 = off)."""
        if limit <= 0:
            return Decision(True, 0)
        hashed = _hash(key)
        if await self.limiter.hit(hashed, limit, WINDOW_SECONDS):
            self.stats["allowed"] += 1
            return Decision(True, 0)
        self.stats["refused"] += 1
        now = time.monotonic()
        retry = await self.limiter.retry_after(hashed, limit, WINDOW_SECONDS)
        first = self._refused_until.get(hashed, 0.0) <= now
        if first:
            self._refused_until[hashed] = now + retry
            if len(self._refused_until) > 100_000:
                self._refused_until = {k: t for k, t in self._refused_until.items() if t > now}
        return Decision(False, float(limit), first_refusal=first, retry_after=retry)

    async def close(self) -> None:
        await self.limiter.close()


class RateLimitedProcessor:
    """The pipeline as channels see it, minus floods: per-(channel, sender) limit.

    Anything else (``mark_delivered_inline``...) is passed through to the wrapped processor.
    """

    def __init__(self, inner: Any, limiter: RateLimiter, per_minute: int, texts: TextService | None = None) -> None:
        self.inner = inner
        self.limiter = limiter
        self.per_minute = per_minute
        self.texts = texts if texts is not None else TextService()

    async def receive(self, message: Message, *, wait: float | None = None, also: Sequence[SideWrite] = ()) -> Receipt:
        decision = await self.limiter.hit(f"s:{message.channel}:{message.sender_id}", self.per_minute)
        if decision.allowed:
            return await self.inner.receive(message, wait=wait, also=also)
        from bot.logs import mask_text

        log.warning(
            "rate limited sender channel=%s sender=%s (over %.0f msgs/min)",
            message.channel, mask_text(message.sender_id), decision.count,
        )
        if not decision.first_refusal:
            return Receipt(duplicate=False, replies=[])
        lang = detect_language(message.text)
        text = self.texts.text("utter_rate_limited", lang=lang, channel=message.channel)
        notice = Reply(channel=message.channel, recipient_id=message.sender_id, text=text)
        return Receipt(duplicate=False, replies=[notice])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class RateLimiting:
    """Installs the middleware on an app and wraps its message processor."""

    def __init__(self, settings: Settings, texts: TextService | None = None) -> None:
        self.settings = settings
        self.texts = texts if texts is not None else TextService(settings)
        self.max_body = settings.max_body_bytes
        self.per_ip = settings.rate_limit_per_ip_per_minute
        self.per_sender = settings.rate_limit_per_sender_per_minute
        self.ip_paths = tuple(p.strip() for p in settings.rate_limit_ip_paths.split(",") if p.strip())
        self.trust_forwarded = settings.rate_limit_trust_forwarded
        self.limiter = RateLimiter(settings.redis_url)

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self.middleware)

        async def close(_app: web.Application) -> None:
            await self.limiter.close()

        app.on_cleanup.append(close)

    def wrap(self, processor: Any) -> Any:
        if self.per_sender <= 0:
            return processor
        return RateLimitedProcessor(processor, self.limiter, self.per_sender, self.texts)

    def client_ip(self, request: web.Request) -> str:
        if self.trust_forwarded:
            fwd = request.headers.get("X-Forwarded-For", "")
            if fwd:
                return fwd.split(",")[-1].strip()  # the address our own proxy saw
        return request.remote or "-"

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > self.max_body:
            log.warning("refused body of %d bytes on %s (limit %d)", length, request.path, self.max_body)
            # The body was not read: close the connection instead of draining it.
            message = self.texts.text("utter_request_too_large", lang=request_language(request.headers))
            resp = web.json_response(
                {"type": "about:blank", "title": "Content Too Large", "status": 413, "detail": message,
                 "error": "payload_too_large", "message": message, "limit": self.max_body},
                status=413,
                headers={"Connection": "close"},
                content_type="application/problem+json",
            )
            resp.force_close()
            return resp
        if self.per_ip > 0 and request.method != "GET" and request.path.startswith(self.ip_paths):
            decision = await self.limiter.hit(f"ip:{self.client_ip(request)}", self.per_ip)
            if not decision.allowed:
                if decision.first_refusal:
                    log.warning("rate limited client ip on %s (over %.0f req/min)", request.path, decision.count)
                message = self.texts.text("utter_too_many_requests", lang=request_language(request.headers))
                return web.json_response(  # RFC 9457; error/message/retry_after kept for older clients
                    {"type": "about:blank", "title": "Too Many Requests", "status": 429, "detail": message,
                     "error": "rate_limited", "message": message, "retry_after": decision.retry_after},
                    status=429,
                    headers={"Retry-After": str(decision.retry_after)},
                    content_type="application/problem+json",
                )
        return await handler(request)
