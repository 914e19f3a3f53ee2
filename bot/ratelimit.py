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

Counters live in Redis when ``POWERBOT_REDIS_URL`` is set, so the limits hold across gateway
processes; otherwise (or while Redis is unreachable — logged as a warning, retried every
``REDIS_RETRY_SECONDS``) each process counts in memory. Keys hold a hash of the sender, never
the raw phone number / openid.

The counter is a sliding-window estimate (two fixed windows, the previous one weighted by how
much of it still overlaps the last minute), which smooths the burst a plain fixed window lets
through at its boundary.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.langs import detect_language
from bot.settings import Settings
from bot.texts import TextService
from channels.base import Message, Receipt, Reply, SideWrite

log = logging.getLogger("powerbot.ratelimit")

WINDOW_SECONDS = 60.0
REDIS_RETRY_SECONDS = 10.0
REDIS_TIMEOUT_SECONDS = 0.5
KEY_PREFIX = "powerbot:rl:"

def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


@dataclass
class Decision:
    allowed: bool
    count: float  # estimated requests in the last minute, this one included
    first_refusal: bool = False  # the first request refused in this window (answer it politely)
    retry_after: int = 0


class MemoryCounter:
    """Sliding-window estimate per key, in this process."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self.window = window
        self._counts: dict[str, tuple[int, int, int]] = {}  # key -> (window index, current, previous)
        self._last_prune = 0

    def hit(self, key: str, now: float) -> tuple[float, int]:
        idx = int(now // self.window)
        cur_idx, cur, prev = self._counts.get(key, (idx, 0, 0))
        if cur_idx != idx:
            prev = cur if cur_idx == idx - 1 else 0
            cur = 0
        cur += 1
        self._counts[key] = (idx, cur, prev)
        if idx != self._last_prune:
            self._last_prune = idx
            self._counts = {k: v for k, v in self._counts.items() if v[0] >= idx - 1}
        overlap = 1.0 - (now % self.window) / self.window
        return prev * overlap + cur, cur


class RedisCounter:
    """The same estimate in Redis (INCR on the current window's key), shared by all processes."""

    def __init__(self, url: str, window: float = WINDOW_SECONDS) -> None:
        import redis.asyncio as aioredis

        self.window = window
        self.client = aioredis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
        )

    async def hit(self, key: str, now: float) -> tuple[float, int]:
        idx = int(now // self.window)
        cur_key, prev_key = f"{KEY_PREFIX}{key}:{idx}", f"{KEY_PREFIX}{key}:{idx - 1}"
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(cur_key)
            pipe.expire(cur_key, int(self.window * 2) + 1)
            pipe.get(prev_key)
            cur, _, prev = await pipe.execute()
        overlap = 1.0 - (now % self.window) / self.window
        return int(prev or 0) * overlap + int(cur), int(cur)

    async def close(self) -> None:
        await self.client.aclose()


@dataclass
class RateLimiter:
    """Counts hits per key; Redis when configured and reachable, memory otherwise."""

    redis_url: str | None = None
    clock: Callable[[], float] = time.time
    memory: MemoryCounter = field(default_factory=MemoryCounter)
    redis: RedisCounter | None = None
    redis_down_until: float = 0.0
    stats: dict[str, int] = field(default_factory=lambda: {"allowed": 0, "refused": 0, "redis_errors": 0})
    _refused_windows: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.redis_url:
            self.redis = RedisCounter(self.redis_url)

    @property
    def backend(self) -> str:
        if self.redis is not None and time.monotonic() >= self.redis_down_until:
            return "redis"
        return "memory"

    async def _count(self, key: str, now: float) -> tuple[float, int]:
        if self.redis is not None and time.monotonic() >= self.redis_down_until:
            try:
                return await self.redis.hit(key, now)
            except Exception as exc:  # noqa: BLE001 - any Redis failure: degrade, don't fail the request
                self.stats["redis_errors"] += 1
                self.redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
                log.warning(
                    "rate limit: Redis unavailable (%s); counting in this process only for %.0f s",
                    type(exc).__name__, REDIS_RETRY_SECONDS,
                )
        return self.memory.hit(key, now)

    async def hit(self, key: str, limit: int) -> Decision:
        """Count one request under ``key``; refuse it when over ``limit`` per minute (0 = off)."""
        if limit <= 0:
            return Decision(True, 0)
        now = self.clock()
        hashed = _hash(key)
        estimate, _ = await self._count(hashed, now)
        if estimate <= limit:
            self.stats["allowed"] += 1
            return Decision(True, estimate)
        self.stats["refused"] += 1
        idx = int(now // WINDOW_SECONDS)
        first = self._refused_windows.get(hashed) != idx
        self._refused_windows[hashed] = idx
        if len(self._refused_windows) > 100_000:
            self._refused_windows = {k: v for k, v in self._refused_windows.items() if v == idx}
        retry = max(1, int(WINDOW_SECONDS - now % WINDOW_SECONDS))
        return Decision(False, estimate, first_refusal=first, retry_after=retry)

    async def close(self) -> None:
        if self.redis is not None:
            try:
                await self.redis.close()
            except Exception:  # noqa: BLE001
                pass


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
            "rate limited sender channel=%s sender=%s (%.0f msgs/min)",
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


def _lang(request: web.Request) -> str:
    return "en" if request.headers.get("Accept-Language", "").lower().startswith("en") else "zh"


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
            message = self.texts.text("utter_request_too_large", lang=_lang(request))
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
                    log.warning("rate limited client ip on %s (%.0f req/min)", request.path, decision.count)
                message = self.texts.text("utter_too_many_requests", lang=_lang(request))
                return web.json_response(  # RFC 9457; error/message/retry_after kept for older clients
                    {"type": "about:blank", "title": "Too Many Requests", "status": 429, "detail": message,
                     "error": "rate_limited", "message": message, "retry_after": decision.retry_after},
                    status=429,
                    headers={"Retry-After": str(decision.retry_after)},
                    content_type="application/problem+json",
                )
        return await handler(request)
