"""A small Rasa server played by the tests: it speaks Rasa's REST input channel.

The protocol as Rasa Open Source 3.6.2 implements it (``rasa/core/channels/rest.py``,
``RestInput`` with ``CollectingOutputChannel`` of ``rasa/core/channels/channel.py``):

- ``GET /webhooks/rest/`` → ``{"status": "ok"}``;
- ``POST /webhooks/rest/webhook`` with ``{"sender", "message", "input_channel"?, "metadata"?}``
  → ``200`` and a JSON list of the bot's messages, each ``{"recipient_id", ...}`` with the
  ``None`` values left out. A response of the domain is put into that list the way
  ``OutputChannel.send_response`` sends it to a ``CollectingOutputChannel``: text with buttons
  (or quick replies) as one message, a text alone split at blank lines into one message per
  part, then ``custom``, ``image`` and ``attachment`` each as a message of its own.

What the assistant answers is scripted per message text (``script``), with the request
recorded (``requests``) so a test can see what the gateway sent. It can be made slow
(``delay``), failing (``status``) or down (``stop()``: connection refused; ``start()`` on the
same port again).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Response = dict[str, Any]  # a response as a Rasa domain writes it: text, buttons, image, custom, attachment


def collect(recipient_id: str, response: Response) -> list[dict[str, Any]]:
    """What ``CollectingOutputChannel`` holds after ``send_response(recipient_id, response)``."""

    def message(**parts: Any) -> dict[str, Any]:
        obj = {"recipient_id": recipient_id, "text": parts.get("text"), "image": parts.get("image"),
               "buttons": parts.get("buttons"), "attachment": parts.get("attachment"), "custom": parts.get("custom")}
        return {k: v for k, v in obj.items() if v is not None}

    out: list[dict[str, Any]] = []
    if response.get("quick_replies"):
        out.append(message(text=response.get("text"), buttons=response["quick_replies"]))
    elif response.get("buttons"):
        out.append(message(text=response.get("text"), buttons=response["buttons"]))
    elif response.get("text"):
        out.extend(message(text=part) for part in response["text"].strip().split("\n\n"))
    if response.get("custom"):
        out.append(message(custom=response["custom"]))
    if response.get("image"):
        out.append(message(image=response["image"]))
    if response.get("attachment"):
        out.append(message(attachment=response["attachment"]))
    return out


@dataclass
class FakeRasa:
    """The assistant: ``script[text]`` is the list of responses to a message (or a function of
    the request body giving it); anything unscripted gets ``default``."""

    script: dict[str, list[Response] | Callable[[dict[str, Any]], list[Response]]] = field(default_factory=dict)
    default: list[Response] = field(default_factory=lambda: [{"text": "Rasa: 我没听懂，请换个说法。"}])
    requests: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0  # seconds before answering (a slow assistant)
    status: int = 200  # another status: Rasa failing
    url: str = ""
    port: int = 0
    _runner: web.AppRunner | None = None

    def sent(self, sender: str) -> list[str]:
        """The messages the gateway posted for this Rasa sender, in order."""
        return [r["message"] for r in self.requests if r.get("sender") == sender]

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        # the request as RestInput reads it: sender and message, and the optional parts
        assert isinstance(body, dict) and isinstance(body.get("sender"), str) and isinstance(body.get("message"), str), body
        assert isinstance(body.get("metadata", {}), dict) and isinstance(body.get("input_channel", "rest"), str), body
        self.requests.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.json_response({"version": "3.6.2", "status": "failure", "message": "scripted failure"},
                                     status=self.status)
        scripted = self.script.get(body["message"], self.default)
        responses = scripted(body) if callable(scripted) else scripted
        out = [m for r in responses for m in collect(body["sender"], r)]
        return web.json_response(out)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/webhooks/rest/", self.health)
        app.router.add_post("/webhooks/rest/webhook", self.webhook)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        """Down: the port refuses connections until ``start()``."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def run_fake_rasa(**kw: Any) -> AsyncIterator[FakeRasa]:
    rasa = FakeRasa(**kw)
    await rasa.start()
    try:
        yield rasa
    finally:
        await rasa.stop()
