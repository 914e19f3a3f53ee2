"""The one rate limiter: hits per key over a sliding window, on the ``limits`` library.

``limits``' sliding-window counter (two fixed windows, the previous one weighted by how much
of it still overlaps the period) smooths the burst a plain fixed window lets through at its
boundary. A refused hit is not counted, so a sender over the limit gets through again as the
window slides.

Counters live in Redis when a URL is given, so a limit holds across processes (keys under
``powerbot:rl:``); otherwise — or while Redis is unreachable: a warning, then Redis is tried
again after ``REDIS_RETRY_SECONDS`` — this process counts alone. Callers pass keys that are
not personal data (a hash of the sender, not the phone number).
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

log = logging.getLogger("powerbot.ratelimit")

REDIS_RETRY_SECONDS = 10.0
REDIS_TIMEOUT_SECONDS = 0.5
KEY_PREFIX = "powerbot:rl"


class Limiter:
    def __init__(self, redis_url: str | None = None) -> None:
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._redis: SlidingWindowCounterRateLimiter | None = None
        if redis_url:
            storage = RedisStorage(
                "async+" + redis_url, implementation="redispy", key_prefix=KEY_PREFIX,
                socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            self._redis = SlidingWindowCounterRateLimiter(storage)
        self.redis_down_until = 0.0
        self.redis_errors = 0
        self._items: dict[tuple[int, int], RateLimitItem] = {}

    @property
    def backend(self) -> str:
        return "redis" if self._redis is not None and time.monotonic() >= self.redis_down_until else "memory"

    def _item(self, limit: int, period: float) -> RateLimitItem:
        key = (limit, int(period))
        item = self._items.get(key)
        if item is None:
            item = self._items[key] = RateLimitItemPerSecond(limit, int(period))
        return item

    async def hit(self, key: str, limit: int, period: float = 60) -> bool:
        """Count one hit under ``key``; False (not counted) when ``limit`` hits in ``period``
        seconds were reached already. ``limit`` 0 = no limit."""
        if limit <= 0:
            return True
        item = self._item(limit, period)
        if self._redis is not None and time.monotonic() >= self.redis_down_until:
            try:
                return await self._redis.hit(item, key)
            except Exception as exc:  # noqa: BLE001 - any Redis failure: degrade, don't fail the caller
                self._redis_failed(exc)
        return await self._memory.hit(item, key)

    async def retry_after(self, key: str, limit: int, period: float = 60) -> int:
        """Whole seconds until ``key`` may hit again (at least 1)."""
        item = self._item(limit, period)
        stats = None
        if self._redis is not None and time.monotonic() >= self.redis_down_until:
            try:
                stats = await self._redis.get_window_stats(item, key)
            except Exception as exc:  # noqa: BLE001
                self._redis_failed(exc)
        if stats is None:
            stats = await self._memory.get_window_stats(item, key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def _redis_failed(self, exc: Exception) -> None:
        self.redis_errors += 1
        self.redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        log.warning("rate limit: Redis unavailable (%s); counting in this process only for %.0f s",
                    type(exc).__name__, REDIS_RETRY_SECONDS)

    async def close(self) -> None:
        client = getattr(getattr(self._redis.storage, "bridge", None), "storage", None) if self._redis else None
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # noqa: BLE001
                pass
