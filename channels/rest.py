"""Rasa-shaped REST channel and the web chat page built on it.

``POST /webhooks/rest/webhook`` answers with the bot's replies like Rasa's REST channel, waiting
at most ``POWERBOT_REST_REPLY_WAIT_SECONDS`` (2 s) for them: a turn that takes longer (the core
is down and the conversation waits behind a postponed message) is answered ``[]`` with the
header ``X-Reply-Pending: 1`` and its replies follow through the outbox. Replies that arrive
later (an agent's answer, a delayed answer after a core outage) are picked up with
``GET /webhooks/rest/messages?sender=...&after=...``.

Every reply says who is talking (``sender``: ``{"role": "bot"|"agent"|"system", "name": ...}``;
an agent's reply carries its role and name in ``Reply.metadata["sender"]``), and replies the
channel recognises get what a screen needs: the satisfaction question its five score buttons,
the "no agent online" notice its callback button, a bill its figures (``custom.bill``).

The page (``/chat``) restores its transcript from ``GET /webhooks/rest/transcript?sender=...``:
the customer's messages and every reply delivered to the sender (inline or through the outbox),
kept in the gateway store's shared ``cache_entries`` table (``rest-transcript:`` keys, one row
per entry, expiring ``POWERBOT_HISTORY_RETENTION_DAYS`` after they are written; the channel
deletes expired ones every ``POWERBOT_RETENTION_INTERVAL_SECONDS``).
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

from aiohttp import web
from sqlalchemy import delete, func, insert, select

from channels.base import (
    POLL_PROVIDER_ID,
    Channel,
    DeliveryError,
    InvalidMessage,
    Message,
    Reply,
    Texts,
    clean_json,
    clean_text,
    is_clean,
)
from common.clock import utcnow
from common.db import CacheEntry, in_transaction

log = logging.getLogger("powerbot.channels.rest")

STATIC = Path(__file__).resolve().parent / "static"
MAX_TEXT = 4000
ROLES = ("bot", "agent", "system")
TRANSCRIPT_PREFIX = "rest-transcript:"
TRANSCRIPT_LIMIT = 200  # entries a page restores
PENDING_HEADER = "X-Reply-Pending"
# the page's texts (``utter_web_chat_<key>`` unless named in full), zh and en
PAGE_TEXTS = ("title", "header", "input_hint", "send", "pay_link", "network_error", "greeting", "typing", "roles",
              "agent_left", "bill_labels")
PAGE_FULL_TEXTS = {"busy": "utter_busy"}
BILL_FIELDS = ("account", "month", "amount", "kwh", "paid", "balance", "status", "due", "owed")


def reply_json(reply: Reply, *, sender: Mapping[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"recipient_id": reply.recipient_id, "text": reply.text}
    if reply.buttons:
        out["buttons"] = [{"title": b.title, "payload": b.payload} for b in reply.buttons]
    meta = {k: v for k, v in reply.metadata.items() if k != "delivery_key"}
    if reply.kind != "text" or meta:
        out["custom"] = {"kind": reply.kind, **meta}
    if sender is not None:
        out["sender"] = dict(sender)
    return out


def _bad_request(reason: str) -> web.Response:
    """An RFC 9457 problem document (``error``/``reason`` kept for older web chat clients)."""
    return web.json_response(
        {"type": "about:blank", "title": "Bad Request", "status": 400, "detail": reason,
         "error": "bad_request", "reason": reason},
        status=400, content_type="application/problem+json")


def _labels(text: str) -> list[str]:
    return [part.strip() for part in text.split("|")]


# --------------------------------------------------------------------------- recognised replies
_MARK = re.compile("\ue000([a-z_]+)\ue001")


class Template:
    """A response of domain.yml recognised in a reply's text: its placeholders read back."""

    def __init__(self, texts: Texts, name: str, fields: Sequence[str], channel: str) -> None:
        self.patterns: list[re.Pattern[str]] = []
        for lang in ("zh", "en"):
            try:
                shown = texts.text(name, lang=lang, channel=channel, **{f: f"\ue000{f}\ue001" for f in fields})
            except Exception:  # noqa: BLE001 - a text service without the response: nothing to recognise
                continue
            if not _MARK.search(shown) and not fields:
                self.patterns.append(re.compile(re.escape(shown)))
                continue
            seen: set[str] = set()
            parts, last = [], 0
            for m in _MARK.finditer(shown):
                parts.append(re.escape(shown[last:m.start()]))
                f = m.group(1)
                parts.append(f"(?P={f})" if f in seen else f"(?P<{f}>.+?)")
                seen.add(f)
                last = m.end()
            parts.append(re.escape(shown[last:]))
            self.patterns.append(re.compile("".join(parts), re.S))

    def match(self, text: str) -> dict[str, str] | None:
        for p in self.patterns:
            m = p.fullmatch(text)
            if m:
                return {k: v.strip() for k, v in m.groupdict().items()}
        return None


def _lang_of(text: str) -> str:
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"


# --------------------------------------------------------------------------- page
def _page_texts(texts: Texts) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for lang in ("zh", "en"):
        d = {key: texts.text(f"utter_web_chat_{key}", lang=lang, channel=RestChannel.name) for key in PAGE_TEXTS}
        for key, name in PAGE_FULL_TEXTS.items():
            d[key] = texts.text(name, lang=lang, channel=RestChannel.name)
        d["joined"] = texts.text("utter_agent_joined", lang=lang, channel=RestChannel.name, name="{name}")
        out[lang] = d
    return out


def _quick_replies(texts: Texts) -> dict[str, list[dict[str, str]]]:
    """The greeting's quick replies: the buttons of ``utter_greet`` on this channel."""
    render = getattr(texts, "render", None)
    out: dict[str, list[dict[str, str]]] = {"zh": [], "en": []}
    if render is None:
        return out
    for lang in out:
        try:
            rendered = render("utter_greet", lang=lang, channel=RestChannel.name)
        except Exception:  # noqa: BLE001
            continue
        out[lang] = [{"title": t, "payload": p} for t, p in getattr(rendered, "buttons", [])]
    return out


def render_chat_page(texts: Texts, settings: Any = None) -> bytes:
    """static/chat.html with its texts (``utter_web_chat_*`` of domain.yml), the brand's colour
    and the channel's timing filled in."""
    page = (STATIC / "chat.html").read_text(encoding="utf-8")
    for key in ("title", "header", "input_hint", "send"):
        text = texts.text(f"utter_web_chat_{key}", channel=RestChannel.name)
        page = page.replace("{{%s}}" % key, html.escape(text))
    wait = RestChannel.wait_for(settings)
    config = {
        "texts": _page_texts(texts),
        "quick": _quick_replies(texts),
        "assistant": getattr(settings, "assistant_name", "") if settings is not None else "",
        "wait_ms": int(wait * 1000),
    }
    js = json.dumps(config, ensure_ascii=False).replace("</", "<\\/")
    color = getattr(settings, "chat_primary_color", None) or "#00706b"
    if not re.fullmatch(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})", color):
        color = "#00706b"
    return page.replace("{{config_js}}", js).replace("{{primary_color}}", color).encode("utf-8")


# --------------------------------------------------------------------------- transcript store
def _transcript_prefix(sender: str, end: str = "x") -> str:
    """The keys of a sender's entries start with this (``end`` "x"); they sort before the same
    with "y" under any collation (letters and digits only after the shared start), so a range
    of the primary key finds them on PostgreSQL whatever the database's collation."""
    return TRANSCRIPT_PREFIX + hashlib.sha256(sender.encode("utf-8")).hexdigest()[:32] + end


_INSERT_ENTRY = insert(CacheEntry.__table__)


class TranscriptLog:
    """What a web chat customer saw, per sender: appended in groups (one transaction for every
    entry queued while the last group was written), read oldest first."""

    def __init__(self, sessionmaker: Any, retention_days: int) -> None:
        self._sessionmaker = sessionmaker  # a callable giving the sessionmaker (filled in at start)
        self.retention_days = retention_days
        self._queue: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._seq = 0

    def add(self, sender: str, entries: Sequence[Mapping[str, Any]], *, at_ns: int | None = None) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if not entries:
            fut.set_result(None)
            return fut
        now = utcnow()
        expires = now + timedelta(days=self.retention_days) if self.retention_days else None
        base = at_ns or time.time_ns()
        prefix = _transcript_prefix(sender)
        for i, entry in enumerate(entries):
            self._seq = (self._seq + 1) % 1000
            key = f"{prefix}{base + i:020d}{self._seq:03d}{os.urandom(2).hex()}"
            value = json.dumps({**entry, "at": now.isoformat()}, ensure_ascii=False)
            row_fut = fut if i == len(entries) - 1 else loop.create_future()
            self._queue.append(({"key": key, "value": value, "expires_at": expires}, row_fut))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._write_loop())
        return fut

    @property
    def sessionmaker(self) -> Any:
        return self._sessionmaker()

    async def _write_loop(self) -> None:
        await asyncio.sleep(0)
        while self._queue:
            batch, self._queue = self._queue[:500], self._queue[500:]
            rows = [r for r, _ in batch]
            try:
                # Core executemany on a plain connection: the ORM's bulk insert cost ~5% of the
                # gateway's CPU per message on the load benchmark, for the same rows
                await in_transaction(self.sessionmaker.kw["bind"], lambda conn: conn.execute(_INSERT_ENTRY, rows))
            except Exception as exc:  # noqa: BLE001 - handed to whoever waits (the outbox retries)
                log.warning("web chat transcript: %d entries not written: %s", len(rows), type(exc).__name__, exc_info=True)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                        fut.exception()  # retrieved: nobody may be waiting
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    async def flush(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def read(self, sender: str, limit: int = TRANSCRIPT_LIMIT) -> list[dict[str, Any]]:
        prefix = _transcript_prefix(sender)
        async with self.sessionmaker() as session:
            rows = (await session.execute(
                select(CacheEntry.value)
                .where(CacheEntry.key > prefix, CacheEntry.key < _transcript_prefix(sender, "y"),
                       CacheEntry.key.startswith(prefix))
                .order_by(CacheEntry.key.desc())
                .limit(limit)
            )).scalars().all()
        out = []
        for value in reversed(rows):
            try:
                out.append(json.loads(value))
            except ValueError:
                continue
        return out


async def purge_transcripts(engine: Any, cutoff: datetime, batch_size: int, dry_run: bool) -> int:
    """Transcript entries past their time (``expires_at``: written + the history retention)."""
    t = CacheEntry.__table__
    now = utcnow()
    old = (t.c.key.startswith(TRANSCRIPT_PREFIX), t.c.expires_at.is_not(None), t.c.expires_at < now)
    if dry_run:
        return await in_transaction(engine, lambda conn: conn.execute(select(func.count()).select_from(t).where(*old)).scalar_one())
    deleted = 0
    while True:
        some = select(t.c.key).where(*old).limit(batch_size)
        n = await in_transaction(engine, lambda conn: conn.execute(delete(t).where(t.c.key.in_(some.scalar_subquery()))).rowcount)
        deleted += n
        if n < batch_size:
            return deleted
        await asyncio.sleep(0)


# --------------------------------------------------------------------------- the channel
class RestChannel(Channel):
    name = "rest"
    # how long the webhook waits for a turn's replies; None: POWERBOT_REST_REPLY_WAIT_SECONDS
    wait_seconds: float | None = None
    _page: bytes | None = None  # the web chat page, rendered on first request

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        settings = ctx.settings
        self.transcript = TranscriptLog(lambda: self.ctx.sessionmaker, int(getattr(settings, "history_retention_days", 365) or 0))
        self._recognisers: tuple[Template, Template, Template] | None = None
        self._janitor: asyncio.Task[None] | None = None

    @classmethod
    def wait_for(cls, settings: Any) -> float:
        if cls.wait_seconds is not None:
            return cls.wait_seconds
        return float(getattr(settings, "rest_reply_wait_seconds", 2.0)) if settings is not None else 2.0

    def routes(self) -> Iterable[web.AbstractRouteDef]:
        return [
            web.post("/webhooks/rest/webhook", self.webhook),
            web.get("/webhooks/rest/messages", self.poll),
            web.get("/webhooks/rest/transcript", self.transcript_view),
            web.get("/webhooks/rest", self.health),
            web.get("/chat", self.chat_page),
        ]

    async def start(self) -> None:
        # the transcript's rows past their time go in the background, like the retention run's
        interval = float(getattr(self.ctx.settings, "retention_interval_seconds", 3600.0) or 3600.0)

        async def janitor() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    n = await purge_transcripts(self.ctx.sessionmaker.kw["bind"], utcnow(), 1000, False)
                    if n:
                        log.info("web chat transcript: %d old entries deleted", n)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - next time
                    log.warning("web chat transcript purge failed", exc_info=True)

        self._janitor = asyncio.ensure_future(janitor())

    async def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
        await self.transcript.flush()

    # ----------------------------------------------------------------- what a reply carries
    def _templates(self) -> tuple[Template, Template, Template]:
        if self._recognisers is None:
            texts = self.ctx.texts
            self._recognisers = (
                Template(texts, "utter_csat_ask", (), self.name),
                Template(texts, "utter_handoff_nobody_online", ("minutes",), self.name),
                Template(texts, "utter_bill", BILL_FIELDS, self.name),
            )
        return self._recognisers

    def payload(self, reply: Reply) -> dict[str, Any]:
        """The reply as the REST channel shows it: Rasa's shape, who is talking, and the buttons
        or figures of a reply the channel recognises."""
        meta = reply.metadata if isinstance(reply.metadata, dict) else {}
        given = meta.get("sender") if isinstance(meta.get("sender"), dict) else {}
        role = given.get("role") if given.get("role") in ROLES else "bot"
        name = given.get("name") if isinstance(given.get("name"), str) else None
        if name is None and role == "bot":
            name = getattr(self.ctx.settings, "assistant_name", "") or ""
        out = reply_json(reply, sender={"role": role, "name": name or ""})
        if role != "bot":
            return out
        csat, nobody, bill = self._templates()
        texts = self.ctx.texts
        lang = _lang_of(reply.text)
        custom = out.setdefault("custom", {"kind": reply.kind})
        if csat.match(reply.text) is not None:
            custom["csat"] = True
            if not reply.buttons:
                labels = _labels(texts.text("utter_web_chat_csat_buttons", lang=lang, channel=self.name))
                out["buttons"] = [{"title": t, "payload": str(i)} for i, t in enumerate(labels[:5], start=1)]
        elif not reply.buttons and nobody.match(reply.text) is not None:
            title = texts.text("utter_web_chat_callback_button", lang=lang, channel=self.name)
            out["buttons"] = [{"title": title, "payload": title}]
            custom["callback_offer"] = True
        elif isinstance(meta.get("bill"), dict):
            custom["bill"] = meta["bill"]
        else:
            fields = bill.match(reply.text)
            if fields is not None:
                custom["bill"] = fields
        if custom == {"kind": "text"}:
            del out["custom"]
        return out

    # ----------------------------------------------------------------- routes
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def webhook(self, request: web.Request) -> web.Response:
        arrived = time.time_ns()
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
        sender = sender.strip()
        try:
            message = Message(
                channel=self.name,
                sender_id=sender,
                text=text,
                message_id=str(message_id),
                metadata=clean_json({k: v for k, v in metadata.items() if k != "message_id"}),
            )
        except InvalidMessage as exc:
            return _bad_request(str(exc))
        # what the customer's own line shows in the transcript: a button's title, not its payload
        shown = metadata.get("shown")
        shown = clean_text(shown)[:200] if isinstance(shown, str) and shown.strip() else text
        receipt, refused = None, False
        try:
            receipt = await self.ctx.processor.receive(message, wait=self.wait_for(self.ctx.settings))
        except InvalidMessage as exc:
            refused = True
            return _bad_request(str(exc))
        finally:
            if not refused and (receipt is None or not receipt.duplicate):
                # recorded even when the client went away meanwhile (the message is stored)
                self.transcript.add(sender, [{"sender": {"role": "customer", "name": ""}, "text": shown}], at_ns=arrived)
        if receipt.duplicate:
            return web.json_response([])
        if receipt.replies is None:
            # not answered within the wait: the replies follow through the outbox (poll them)
            return web.json_response([], headers={PENDING_HEADER: "1"})
        payloads = [self.payload(r) for r in receipt.replies]
        self.transcript.add(sender, payloads)
        # Write the answer first, then mark it delivered: a process killed (or a client gone)
        # before the answer left leaves the replies to the outbox, which makes them pollable
        # after the grace period. Marking first would lose them for good (at-least-once,
        # not at-most-once: only a crash between write and mark can show a reply twice).
        resp = web.json_response(payloads)
        try:
            await resp.prepare(request)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            return resp
        await self.ctx.processor.mark_delivered_inline(receipt)
        return resp

    def _sender_and_cursor(self, request: web.Request, *, cursor: bool) -> tuple[str, int] | web.Response:
        sender = request.query.get("sender", "")
        try:
            after = int(request.query.get("after", "0")) if cursor else 0
        except ValueError:
            return _bad_request("'after' must be an integer cursor")
        if not -1 <= after < 2**63 or len(sender) > 128 or not is_clean(sender):
            return _bad_request("'after' must be a cursor and 'sender' a sender id")
        if not sender:
            return _bad_request("'sender' is required")
        return sender, after

    async def poll(self, request: web.Request) -> web.Response:
        got = self._sender_and_cursor(request, cursor=True)
        if isinstance(got, web.Response):
            return got
        sender, after = got
        replies, cursor = await self.ctx.store.poll(self.name, sender, after)
        return web.json_response({"messages": [self.payload(r) for r in replies], "cursor": cursor})

    async def transcript_view(self, request: web.Request) -> web.Response:
        """What this sender wrote and was answered, oldest first (at most the last 200 entries),
        and the poll cursor after everything delivered so far (where a restored page goes on)."""
        got = self._sender_and_cursor(request, cursor=False)
        if isinstance(got, web.Response):
            return got
        sender, _ = got
        await self.transcript.flush()
        entries = await self.transcript.read(sender)
        cursor = 0
        for _ in range(100):  # 100 replies a page: the end of any real conversation
            replies, nxt = await self.ctx.store.poll(self.name, sender, cursor)
            if not replies or nxt == cursor:
                cursor = nxt
                break
            cursor = nxt
        return web.json_response({"messages": entries, "cursor": cursor})

    async def chat_page(self, request: web.Request) -> web.StreamResponse:
        if self._page is None:
            self._page = render_chat_page(self.ctx.texts, self.ctx.settings)
        return web.Response(body=self._page, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def send(self, reply: Reply) -> str | None:
        # Delivery for REST means "ready to be polled": marking the row sent is the delivery.
        # The transcript gets it first, so a page reloaded later shows it in its place.
        try:
            await self.transcript.add(reply.recipient_id, [self.payload(reply)])
        except Exception as exc:  # noqa: BLE001
            raise DeliveryError(f"transcript not written: {type(exc).__name__}", retryable=True) from exc
        return POLL_PROVIDER_ID
