"""Rasa-shaped REST channel and the small web chat page built on it.

``POST /webhooks/rest/webhook`` answers with the bot's replies like Rasa's REST channel.
Replies that arrive later (an agent's answer, a delayed answer after a core outage) are
picked up by the page with ``GET /webhooks/rest/messages?sender=...&after=...``.
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from channels.base import (
    POLL_PROVIDER_ID,
    Channel,
    InvalidMessage,
    Message,
    Reply,
    Texts,
    clean_json,
    clean_text,
    is_clean,
)

STATIC = Path(__file__).resolve().parent / "static"
MAX_TEXT = 4000


def reply_json(reply: Reply) -> dict[str, Any]:
    out: dict[str, Any] = {"recipient_id": reply.recipient_id, "text": reply.text}
    if reply.buttons:
        out["buttons"] = [{"title": b.title, "payload": b.payload} for b in reply.buttons]
    if reply.kind != "text" or reply.metadata:
        out["custom"] = {"kind": reply.kind, **reply.metadata}
    return out


def _bad_request(reason: str) -> web.Response:
    """An RFC 9457 problem document (``error``/``reason`` kept for older web chat clients)."""
    return web.json_response(
        {"type": "about:blank", "title": "Bad Request", "status": 400, "detail": reason,
         "error": "bad_request", "reason": reason},
        status=400, content_type="application/problem+json")


def render_chat_page(texts: Texts) -> bytes:
    """static/chat.html with its texts (``utter_web_chat_*`` of domain.yml) filled in."""
    page = (STATIC / "chat.html").read_text(encoding="utf-8")
    for key in ("title", "header", "input_hint", "send", "pay_link", "network_error", "greeting"):
        text = texts.text(f"utter_web_chat_{key}", channel=RestChannel.name)
        js = json.dumps(text, ensure_ascii=False).replace("</", "<\\/")
        page = page.replace("{{%s_js}}" % key, js).replace("{{%s}}" % key, html.escape(text))
    return page.encode("utf-8")


class RestChannel(Channel):
    name = "rest"
    wait_seconds = 30.0
    _page: bytes | None = None  # the web chat page, rendered on first request

    def routes(self) -> Iterable[web.AbstractRouteDef]:
        return [
            web.post("/webhooks/rest/webhook", self.webhook),
            web.get("/webhooks/rest/messages", self.poll),
            web.get("/webhooks/rest", self.health),
            web.get("/chat", self.chat_page),
        ]

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def webhook(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=json.loads)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _bad_request("body must be a JSON object with 'sender' and 'message'")
        if not isinstance(body, dict):
            return _bad_request("body must be a JSON object with 'sender' and 'message'")
        sender, text = body.get("sender"), body.get("message")
        if not isinstance(sender, str) or not sender.strip() or len(sender) > 128 or not is_clean(sender):
            return _bad_request("'sender' must be a non-empty string of at most 128 characters, without control characters")
        if not isinstance(text, str):
            return _bad_request("'message' must be a string")
        text = clean_text(text)[:MAX_TEXT]
        metadata = body.get("metadata", {})
        if not isinstance(metadata, dict):
            return _bad_request("'metadata' must be a JSON object")
        message_id = body.get("message_id", metadata.get("message_id"))
        if message_id is None:
            message_id = str(uuid.uuid4())
        elif isinstance(message_id, bool) or not isinstance(message_id, (str, int)) or not is_clean(str(message_id)) \
                or not 0 < len(str(message_id)) <= 200:
            return _bad_request("'message_id' must be a string or integer of 1 to 200 characters")
        try:
            message = Message(
                channel=self.name,
                sender_id=sender.strip(),
                text=text,
                message_id=str(message_id),
                metadata=clean_json({k: v for k, v in metadata.items() if k != "message_id"}),
            )
            receipt = await self.ctx.processor.receive(message, wait=self.wait_seconds)
        except InvalidMessage as exc:
            return _bad_request(str(exc))
        if receipt.duplicate or receipt.replies is None:
            return web.json_response([])
        # Write the answer first, then mark it delivered: a process killed (or a client gone)
        # before the answer left leaves the replies to the outbox, which makes them pollable
        # after the grace period. Marking first would lose them for good (at-least-once,
        # not at-most-once: only a crash between write and mark can show a reply twice).
        resp = web.json_response([reply_json(r) for r in receipt.replies])
        try:
            await resp.prepare(request)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            return resp
        await self.ctx.processor.mark_delivered_inline(receipt)
        return resp

    async def poll(self, request: web.Request) -> web.Response:
        sender = request.query.get("sender", "")
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            return _bad_request("'after' must be an integer cursor")
        if not -1 <= after < 2**63 or len(sender) > 128 or not is_clean(sender):
            return _bad_request("'after' must be a cursor and 'sender' a sender id")
        if not sender:
            return _bad_request("'sender' is required")
        replies, cursor = await self.ctx.store.poll(self.name, sender, after)
        return web.json_response({"messages": [reply_json(r) for r in replies], "cursor": cursor})

    async def chat_page(self, request: web.Request) -> web.StreamResponse:
        if self._page is None:
            self._page = render_chat_page(self.ctx.texts)
        return web.Response(body=self._page, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def send(self, reply: Reply) -> str | None:
        # Delivery for REST means "ready to be polled": marking the row sent is the delivery.
        return POLL_PROVIDER_ID
