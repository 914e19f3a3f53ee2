"""A customer on the REST channel (``Chat``) and the reference core in a thread of its own
(``CoreThread``: one core for a module of tests, each running its own event loop)."""

from __future__ import annotations

import asyncio
import threading
import uuid

import aiohttp

from tests.stack import run_core


class CoreThread:
    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.url: str | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                async with run_core(self.db_url) as core:
                    self.url = core.url
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:  # noqa: BLE001
                self._error = exc
                self._ready.set()

        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(main())

    def start(self) -> str:
        self._thread.start()
        self._ready.wait(120)
        if self._error or not self.url:
            raise RuntimeError(f"core did not start: {self._error!r}")
        return self.url

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


class Chat:
    def __init__(self, http: aiohttp.ClientSession, url: str, sender: str | None = None) -> None:
        self.http, self.url = http, url
        self.sender = sender or f"u-{uuid.uuid4().hex[:8]}"

    async def say(self, text: str) -> list[dict]:
        async with self.http.post(f"{self.url}/webhooks/rest/webhook", json={"sender": self.sender, "message": text}) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def text(self, text: str) -> str:
        return "\n".join(m.get("text", "") for m in await self.say(text))
