"""The one rate limiter: hits per key over a sliding window, on the ``limits`` library.

``limits``' sliding-window counter (two fixed windows, the previous one weighted by how much
of it still overlaps the period) smooths the burst a plain fixed window lets through at its
boundary. A refused hit is not counted, so a sender over the limit gets through again as the
window slides.

Counters live in Redis when a URL is given, so a limit holds across processes (keys under
``powerbot:rl:``); otherwise — or while Redis is unreachable: a warning, then Redis is tried
again after ``REDIS_RETRY_SECONDS`` — this process counts alone. Callers pass keys that are
not personal data (a hash of the sender, not the phone number).

In this process the same sliding-window counter is kept by ``LocalWindows``, not by ``limits``'
``MemoryStorage``: that storage expires keys with a timer that wakes every 10 ms and scans
every key under a lock, and with a key per customer it was about 3% of the gateway's CPU per
WeChat message (``benchmarks/wechat_bench.py``); ``LocalWindows`` expires lazily, oldest first.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

log = logging.getLogger("powerbot.ratelimit")

REDIS_RETRY_SECONDS = 10.0
REDIS_TIMEOUT_SECONDS = 0.5
KEY_PREFIX = "powerbot:rl"


class LocalWindows:
    """Sliding-window counters in this process, as ``limits``' sliding-window counter keeps them
    in Redis: the current fixed window's count plus the previous one's, weighted by how much of
    it still overlaps the period. A key idle for two periods is forgotten: keys are kept per
    period in order of last use, so the idle ones are at the front and are dropped on a hit."""

    def __init__(self, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        self.clock = clock
        # period -> key -> [window index, count in it, count in the previous window]
        self._by_period: dict[float, OrderedDict[str, list[float]]] = {}

    def _window(self, key: str, period: float, now: float) -> list[float]:
        windows = self._by_period.get(period)
        if windows is None:
            windows = self._by_period[period] = OrderedDict()
        while windows:  # forget the idle ones, oldest first
            first = next(iter(windows.values()))
            if (first[0] + 2) * period > now:
                break
            windows.popitem(last=False)
        index = now // period
        w = windows.get(key)
        if w is None:
            w = windows[key] = [index, 0, 0]
        else:
            if w[0] != index:
                w[2] = w[1] if w[0] == index - 1 else 0
                w[0], w[1] = index, 0
            windows.move_to_end(key)
        return w

    @staticmethod
    def _weighted(w: list[float], period: float, now: float) -> float:
        overlap = 1.0 - (now - w[0] * period) / period
        return w[2] * overlap + w[1]

    def hit(self, key: str, limit: int, period: float) -> bool:
        now = self.clock()
        w = self._window(key, period, now)
        if self._weighted(w, period, now) + 1 > limit:
            return False
        w[1] += 1
        return True

    def retry_after(self, key: str, limit: int, period: float) -> float:
        """Seconds until one more hit fits under ``limit``."""
        now = self.clock()
        w = self._window(key, period, now)
        over = self._weighted(w, period, now) + 1 - limit
        if over <= 0:
            return 0.0
        next_window = (w[0] + 1) * period - now
        if w[1] + 1 > limit or not w[2]:  # the current window alone is full: wait for the next
            return next_window
        return min(next_window, over / w[2] * period)  # the previous window's weight shrinks


class Limiter:
    def __init__(self, redis_url: str | None = None) -> None:
        self._memory = LocalWindows()
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
        return self._memory.hit(key, limit, period)

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
            return max(1, math.ceil(self._memory.retry_after(key, limit, period)))
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
