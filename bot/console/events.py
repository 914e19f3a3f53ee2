"""Live console events: in-process fan-out, or Redis pub/sub across gateway processes.

Events are small JSON objects (``type``, ``handoff_id``, ``conversation_id``...) without
customer text: the browser re-reads what changed through the authenticated API.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

log = logging.getLogger("powerbot.console.events")

REDIS_CHANNEL = "powerbot:console:events"


class EventBus:
    def __init__(self, redis_url: str | None = None) -> None:
        self.redis_url = redis_url
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._redis: Any = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        if not self.redis_url:
            self._ready.set()
            return
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self.redis_url, decode_responses=True)
        self._task = asyncio.create_task(self._listen(), name="console-redis-listener")
        try:
            await asyncio.wait_for(self._ready.wait(), timeout=5)
        except asyncio.TimeoutError:
            log.warning("console events: Redis subscription not confirmed yet; retrying in background")

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(REDIS_CHANNEL)
                async for msg in pubsub.listen():
                    if msg.get("type") == "subscribe":
                        self._ready.set()
                    elif msg.get("type") == "message":
                        self._fanout(msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("console events: Redis subscription lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # noqa: BLE001
                    pass

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()

    async def publish(self, event: dict[str, Any]) -> None:
        data = json.dumps(event, ensure_ascii=False, default=str)
        if self._redis is not None:
            try:
                await self._redis.publish(REDIS_CHANNEL, data)
                return
            except Exception as exc:  # noqa: BLE001
                log.warning("console events: Redis publish failed (%s); local only", type(exc).__name__)
        self._fanout(data)

    def _fanout(self, data: str) -> None:
        for q in list(self._subscribers):
            try:
                q.put_nowait(data)
            except asyncio.QueueFull:
                pass  # a stuck browser loses live events; it re-reads on its periodic refresh

    def subscribe(self) -> asyncio.Queue[str]:
        q: asyncio.Queue[str] = asyncio.Queue(maxsize=500)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[str]) -> None:
        self._subscribers.discard(q)
