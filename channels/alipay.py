"""Alipay service window (生活号) channel and Alipay online payment, path ``/channels/alipay``.

Inbound: the Alipay gateway posts form fields ``service``, ``biz_content`` (XML), ``charset``
(often GBK), ``sign_type`` and ``sign``. The RSA2 signature is checked over the sorted string
*in the message's own charset* with ``sign_type`` kept in it (the service-window rule; the
SDK's ``verify`` uses the payment-notify rule and UTF-8 only). Two services:

- ``alipay.service.check`` (``verifygw``): answered with a signed XML echoing our app public key.
- ``alipay.mobile.public.message.notify``: answered at once with a signed ``ack``; the message
  (text, follow/unfollow, menu click) goes into the pipeline, deduplicated by ``MsgId`` (events
  by sender + CreateTime + event type), and the bot's answer is delivered later by ``send`` →
  ``alipay.open.public.message.custom.send`` through python-alipay-sdk ``server_api``.

Online payment (payment links, the payment notify, the reconciler) is not the channel's: the
wiring hands the channel a ``ChannelContext.payment_service`` (``payments.alipay``), which the
channel builds on its signed client, registers as ``ctx.extras["payments"]`` and whose notify it
serves at ``POST /payments/alipay/notify``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import urllib.parse
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import defusedxml.ElementTree as _defused
from aiohttp import web
from defusedxml import DefusedXmlException

from channels import alipay_sdk
from channels.base import Channel, ChannelContext, DeliveryError, Message, PaymentService, Reply
from channels.menu import CLICK_TEXT  # menu keys shared with the other platform's menu

log = logging.getLogger("powerbot.channels.alipay")

SERVICE_CHECK = "alipay.service.check"
SERVICE_NOTIFY = "alipay.mobile.public.message.notify"
CUSTOM_SEND = "alipay.open.public.message.custom.send"
MAX_TEXT = 2000  # Alipay text message limit (characters)
MAX_INBOUND_TEXT = 4000
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")



class BadRequest(Exception):
    """Refused inbound request; ``reason`` is safe to log and to answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def parse_form(raw: bytes, content_type_charset: str | None) -> tuple[dict[str, str], str]:
    """Decode an urlencoded body in the charset it declares (field ``charset``, else header, else GBK)."""
    if _DTD.search(raw):
        raise BadRequest("document type declarations are not accepted")
    pairs: list[tuple[bytes, bytes]] = []
    for part in raw.split(b"&"):
        if not part:
            continue
        k, _, v = part.partition(b"=")
        pairs.append((urllib.parse.unquote_to_bytes(k.replace(b"+", b" ")),
                      urllib.parse.unquote_to_bytes(v.replace(b"+", b" "))))
    declared = next((v for k, v in pairs if k == b"charset"), None)
    try:
        charset = alipay_sdk.normalise_charset(
            declared.decode("ascii") if declared else content_type_charset, default="gbk"
        )
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("unsupported charset") from None
    form: dict[str, str] = {}
    try:
        for k, v in pairs:
            key = k.decode("ascii")
            if key in form:
                raise BadRequest(f"duplicate field {key!r}")
            form[key] = v.decode(charset)
    except UnicodeDecodeError:
        raise BadRequest(f"body is not valid {charset}") from None
    return form, charset


def parse_biz_xml(text: str) -> dict[str, Any]:
    """Parse ``biz_content`` XML safely (``defusedxml``: no DTD, no entities), flat fields +
    ``Text/Content``."""
    try:
        root = _defused.fromstring(text.strip(), forbid_dtd=True)
    except DefusedXmlException:
        raise BadRequest("document type declarations are not accepted") from None
    except (_defused.ParseError, ValueError):
        raise BadRequest("biz_content is not well-formed XML") from None
    out: dict[str, Any] = {}
    for child in root:
        if len(child):
            out[child.tag] = {g.tag: (g.text or "").strip() for g in child}
        else:
            out[child.tag] = (child.text or "").strip()
    return out


class AlipayChannel(Channel):
    name = "alipay"

    def __init__(self, ctx: ChannelContext, *, appid: str, app_private_pem: str, alipay_public_pem: str) -> None:
        super().__init__(ctx)
        s = ctx.settings
        # what the channel itself says (training_data/domain.yml), rendered once, in Chinese
        self.welcome_text = ctx.texts.text("utter_welcome", channel=self.name)
        self.media_text = ctx.texts.text("utter_media_not_understood", channel=self.name)
        self.menu_unknown_text = ctx.texts.text("utter_menu_unavailable", channel=self.name)
        self.appid = appid
        public = (s.public_url or f"http://{s.host}:{s.port}").rstrip("/")
        self.notify_url = f"{public}/payments/alipay/notify"
        self.client = alipay_sdk.make_client(
            appid, app_private_pem, alipay_public_pem, s.alipay_gateway_url, notify_url=self.notify_url
        )
        self.app_public_key = alipay_sdk.app_public_key_b64(self.client)
        make_payments = ctx.payment_service
        self.payments: PaymentService | None = None if make_payments is None else make_payments(
            ctx, self.client, appid=appid, notify_url=self.notify_url, return_url=s.public_url)

    # ------------------------------------------------------------------ routes
    def routes(self) -> Iterable[web.AbstractRouteDef]:
        routes = [web.post("/channels/alipay", self.gateway)]
        if self.payments is not None:
            routes.append(web.post("/payments/alipay/notify", self.payments.notify))
        return routes

    async def start(self) -> None:
        if self.payments is not None:
            self._reconciler = asyncio.create_task(self.payments.run_reconciler(), name="alipay-reconciler")

    async def stop(self) -> None:
        task = getattr(self, "_reconciler", None)
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def readiness(self) -> dict[str, Any]:
        return {"on": True, "appid": self.appid, "gateway": urlsplit(alipay_sdk.gateway_of(self.client)).netloc,
                "payments": self.payments is not None}

    # ------------------------------------------------------------------ inbound
    async def gateway(self, request: web.Request) -> web.Response:
        try:
            raw = await request.read()
            form, charset = parse_form(raw, request.charset)
            service = form.get("service", "")
            sign, sign_type = form.get("sign", ""), form.get("sign_type", "RSA2")
            if sign_type != "RSA2":
                raise BadRequest("sign_type must be RSA2")
            if not sign or "biz_content" not in form:
                raise BadRequest("sign and biz_content are required")
            content = alipay_sdk.sign_content(form).encode(charset)
            if not alipay_sdk.verify_bytes(self.client, content, sign, sign_type):
                log.warning("alipay gateway: signature check failed service=%s from=%s",
                            service[:64], request.remote)
                raise BadRequest("signature verification failed", status=403)
            biz = parse_biz_xml(form["biz_content"])
            app_id = biz.get("AppId")
            if app_id and app_id != self.appid:
                log.warning("alipay gateway: foreign app_id service=%s", service[:64])
                raise BadRequest("app_id mismatch", status=403)
            if service == SERVICE_CHECK:
                return self._signed_answer(
                    f"<success>true</success><biz_content>{self.app_public_key}</biz_content>", charset
                )
            if service == SERVICE_NOTIFY:
                return await self._notify(biz, charset)
            raise BadRequest("unknown service")
        except BadRequest as exc:
            return web.json_response({"error": "bad_request", "reason": exc.reason}, status=exc.status)

    def _signed_answer(self, response_xml: str, charset: str) -> web.Response:
        sign = alipay_sdk.sign_bytes(self.client, response_xml.encode(charset))
        body = (
            f'<?xml version="1.0" encoding="{charset.upper()}"?>'
            f"<alipay><response>{response_xml}</response><sign>{sign}</sign><sign_type>RSA2</sign_type></alipay>"
        )
        return web.Response(body=body.encode(charset), content_type="text/xml", charset=charset.upper())

    def _ack(self, user_id: str, charset: str) -> web.Response:
        ack = (
            f"<XML><ToUserId><![CDATA[{escape(user_id)}]]></ToUserId><AppId><![CDATA[{self.appid}]]></AppId>"
            f"<CreateTime>{int(time.time() * 1000)}</CreateTime><MsgType><![CDATA[ack]]></MsgType></XML>"
        )
        return self._signed_answer(ack, charset)

    async def _notify(self, biz: dict[str, Any], charset: str) -> web.Response:
        user_id = str(biz.get("FromAlipayUserId") or biz.get("FromUserId") or "")
        if not _ID_RE.match(user_id):
            raise BadRequest("FromUserId missing or malformed")
        msg_type = str(biz.get("MsgType", "")).lower()
        create_time = str(biz.get("CreateTime", ""))[:20]
        msg_id = str(biz.get("MsgId", ""))[:64]
        metadata: dict[str, Any] = {"create_time": create_time}
        if msg_type == "text":
            text_node = biz.get("Text")
            text = text_node.get("Content", "") if isinstance(text_node, dict) else ""
            kind = "text"
        elif msg_type == "event":
            event = str(biz.get("EventType", "")).lower()
            dedupe = f"ev:{user_id}:{create_time}:{event}"
            if event == "follow":
                kind, text = "event", "绑定户号"  # welcome + the bind prompt, like WeChat's subscribe
                metadata.update(event="subscribe")
                await self._queue_direct(user_id, self.welcome_text, f"welcome:{dedupe}")
            elif event == "click":
                key = str(biz.get("ActionParam", "")).strip()[:60]
                said = CLICK_TEXT.get(key.upper())
                if said is None:
                    await self._queue_direct(user_id, self.menu_unknown_text, f"menu:{dedupe}")
                    return self._ack(user_id, charset)
                kind, text = "event", said
                metadata.update(event="CLICK", key=key.upper())
            else:
                # unfollow (nothing can reach the customer any more), enter, and anything else:
                # acknowledged, nothing to answer.
                log.info("alipay event=%s acknowledged", event[:32])
                return self._ack(user_id, charset)
            message = Message(channel=self.name, sender_id=user_id, text=text, message_id=dedupe,
                              kind=kind, metadata=metadata)
            await self.ctx.processor.receive(message, wait=0)
            return self._ack(user_id, charset)
        else:
            # Images, voice, stickers, links...: a polite fixed answer, once per message.
            ref = msg_id or f"{user_id}:{create_time}"
            await self._queue_direct(user_id, self.media_text, f"media:{msg_type[:16]}:{ref}")
            return self._ack(user_id, charset)
        if len(text) > MAX_INBOUND_TEXT:
            text = text[:MAX_INBOUND_TEXT]
        dedupe = f"msg:{msg_id}" if msg_id else f"msg:{user_id}:{create_time}:{msg_type}"
        message = Message(channel=self.name, sender_id=user_id, text=text, message_id=dedupe,
                          kind=kind, metadata=metadata)
        # Alipay wants an immediate ack; the answer always goes out by custom.send via the outbox.
        receipt = await self.ctx.processor.receive(message, wait=0)
        if receipt.duplicate:
            log.info("alipay notify duplicate dedupe=%s", dedupe[:80])
        return self._ack(user_id, charset)

    async def _queue_direct(self, user_id: str, text: str, dedupe_key: str) -> None:
        """A fixed channel text (welcome, unknown menu) straight to the outbox, once per event."""
        await self.ctx.store.enqueue(Reply(channel=self.name, recipient_id=user_id, text=text),
                                     dedupe_key=dedupe_key[:200])

    # ------------------------------------------------------------------ outbound
    @staticmethod
    def render(reply: Reply) -> str:
        text = reply.text or ""
        pay_url = reply.metadata.get("pay_url") if reply.metadata else None
        if pay_url and pay_url not in text:
            text = f"{text}\n{pay_url}" if text else str(pay_url)
        if reply.buttons:
            text += "\n" + "\n".join(f"· {b.title}" for b in reply.buttons)
        return text[:MAX_TEXT]

    async def send(self, reply: Reply) -> str | None:
        if not _ID_RE.match(reply.recipient_id or ""):
            raise DeliveryError("recipient is not an Alipay user id", retryable=False, code="bad_recipient")
        biz = {"to_user_id": reply.recipient_id, "msg_type": "text",
               "text": {"content": self.render(reply)}, "chat": "1"}
        result = await alipay_sdk.call(self.client, "server_api", CUSTOM_SEND, biz_content=biz)
        return str(result.get("msg_id") or result.get("msgId") or "alipay")


def from_context(ctx: ChannelContext) -> AlipayChannel | None:
    """The channel (and online payment) is on when appid and both keys are configured."""
    s = ctx.settings
    if not s.alipay_appid:
        return None
    private = alipay_sdk.load_key(s.alipay_app_private_key, s.alipay_app_private_key_file,
                                  private=True, what="POWERBOT_ALIPAY_APP_PRIVATE_KEY")
    public = alipay_sdk.load_key(s.alipay_public_key, s.alipay_public_key_file,
                                 private=False, what="POWERBOT_ALIPAY_PUBLIC_KEY")
    if private is None or public is None:
        log.warning("alipay: appid set but a key is missing; channel off")
        return None
    channel = AlipayChannel(ctx, appid=s.alipay_appid, app_private_pem=private, alipay_public_pem=public)
    if channel.payments is not None:
        ctx.extras["payments"] = channel.payments
    return channel
