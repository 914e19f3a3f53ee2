"""WeChat official account (公众号) channel at ``/channels/wechat``.

Inbound: URL verification (GET), messages and events (POST) in plaintext, compatible and
safe (AES) modes. Every request is checked before anything happens: size cap (1 MB), no
DTD/entity declarations (XXE, billion laughs), signature and timestamp (5 minutes), AES
decryption with our appid. A refused request leaves no trace but a log line without secrets.

Replies: passive (inside WeChat's 5-second deadline) when the dialogue answers within
``POWERBOT_WECHAT_REPLY_WAIT_SECONDS``; otherwise ``success`` at once and the answer goes out
later through the outbox and the customer-service message API (客服消息), within the window
the user opened (see ``channels.wechat_store``). Retries of one message (MsgId; events:
FromUserName + CreateTime) are deduplicated by the pipeline's unique (channel, message_id).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import defusedxml.ElementTree as _defused
from aiohttp import web
from defusedxml import DefusedXmlException

from channels.base import Channel, ChannelContext, DeliveryError, InvalidMessage, Message, Receipt, Reply, SideWrite
from channels.menu import CLICK_TEXT  # menu keys shared with the other platform's menu
from channels.wechat_api import WeChatAPI, WeChatAPIError
from channels.wechat_store import (
    ERR_QUOTA_USED,
    ERR_WINDOW_CLOSED,
    TokenCache,
    WeChatWindow,
    WindowLedger,
    WindowState,
)

log = logging.getLogger("powerbot.channels.wechat")

PATH = "/channels/wechat"
MAX_BODY = 1_048_576
MAX_SKEW_SECONDS = 300
MAX_TEXT = 2000  # WeChat caps text replies at 2048 bytes of content per message in practice
SUCCESS = "success"



def _mask_openid(openid: str) -> str:
    return (openid[:6] + "***") if openid else "-"


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def render_text_reply(to_user: str, from_user: str, content: str) -> str:
    """Passive text reply XML (like wechatpy's ``TextReply.render``, CDATA-safe)."""
    return (
        "<xml>"
        f"<ToUserName>{_cdata(to_user)}</ToUserName>"
        f"<FromUserName>{_cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{_cdata(content)}</Content>"
        "</xml>"
    )


def reply_text(reply: Reply) -> str:
    """Flatten one Reply into WeChat text (buttons become suggestions, links stay visible)."""
    text = reply.text or ""
    url = reply.metadata.get("pay_url") or reply.metadata.get("url")
    if url and str(url) not in text:
        text = f"{text}\n{url}" if text else str(url)
    if reply.buttons:
        options = "\n".join(f"· {b.title}" for b in reply.buttons)
        text = f"{text}\n{options}" if text else options
    return text


def join_replies(replies: Iterable[Reply]) -> str:
    text = "\n\n".join(t for t in (reply_text(r).strip() for r in replies) if t)
    return text[:MAX_TEXT]


def signature_of(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def safe_parse_xml(data: bytes | str) -> dict[str, Any]:
    """Parse a WeChat XML document (``<xml>`` with text fields, nested where WeChat nests) into
    a dict; refuse a DTD, an entity and anything malformed.

    ``defusedxml`` refuses a document type declaration in the parser itself (so nothing written
    inside CDATA or a comment can fool it), and an undefined entity is a parse error."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        root = _defused.fromstring(text, forbid_dtd=True)
    except DefusedXmlException:
        raise Refused(400, "xml declaration (DTD/entity) refused") from None
    except (_defused.ParseError, UnicodeDecodeError, ValueError) as exc:
        raise Refused(400, f"malformed xml ({type(exc).__name__})") from None
    xml = _xml_value(root) if root.tag == "xml" else None
    if not isinstance(xml, dict):
        raise Refused(400, "not a WeChat message")
    return xml


def _xml_value(el: Any) -> Any:
    """An element's text (stripped; None when empty), or a dict of its children (a repeated
    child becomes a list), the shape ``xmltodict`` gave."""
    if not len(el):
        return (el.text or "").strip() or None
    out: dict[str, Any] = {}
    for child in el:
        value = _xml_value(child)
        if child.tag not in out:
            out[child.tag] = value
        elif isinstance(prev := out[child.tag], list):
            prev.append(value)
        else:
            out[child.tag] = [prev, value]
    return out


def _field(d: Mapping[str, Any], name: str) -> str:
    v = d.get(name)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise Refused(400, f"field {name} is not text")
    return v.strip()


class WeChatChannel(Channel):
    name = "wechat"

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        s = ctx.settings
        # what the channel itself says (training_data/domain.yml), rendered once: in Chinese,
        # since an event, a picture or an unheard voice message shows no language
        t = ctx.texts
        self.welcome_text = t.text("utter_welcome", channel=self.name)
        self.bind_prompt = t.text("utter_bind_prompt", channel=self.name)
        self.image_text = t.text("utter_media_not_understood", channel=self.name)
        self.voice_unclear_text = t.text("utter_voice_unclear", channel=self.name)
        self.unsupported_text = t.text("utter_message_type_unsupported", channel=self.name)
        self.menu_unknown_text = t.text("utter_menu_unavailable", channel=self.name)
        self.appid: str = s.wechat_appid or ""
        self._token: str = s.wechat_token.get_secret_value() if s.wechat_token else ""
        self._secret: str = s.wechat_secret.get_secret_value() if s.wechat_secret else ""
        aes = s.wechat_aes_key.get_secret_value() if s.wechat_aes_key else ""
        self.reply_wait: float = float(getattr(s, "wechat_reply_wait_seconds", 4.0))
        # a passive reply written later than this after the request arrived may find WeChat
        # gone (it waits 5 s): such an answer goes through the customer-service API instead
        self.passive_deadline: float = min(4.5, self.reply_wait + 0.4)
        self.crypto = None
        if aes:
            from wechatpy.crypto import WeChatCrypto

            self.crypto = WeChatCrypto(self._token, aes, self.appid)
        self.api: WeChatAPI | None = None
        self.ledger: WindowLedger | None = None
        self._cache: TokenCache | None = None

    # ------------------------------------------------------------------ lifecycle
    def routes(self) -> Iterable[web.AbstractRouteDef]:
        return [web.get(PATH, self.verify_url), web.post(PATH, self.callback)]

    async def start(self) -> None:
        self.ledger = WindowLedger(self.ctx.sessionmaker, prepare=self.ctx.prepare)
        self._cache = TokenCache(self.ctx.sessionmaker, self.ctx.settings.redis_url)
        if self._secret:
            self.api = WeChatAPI(
                appid=self.appid,
                secret=self._secret,
                base_url=self.ctx.settings.wechat_api_base_url,
                cache=self._cache,
                http=self.ctx.http,
            )
        self.ctx.extras["wechat"] = self

    async def stop(self) -> None:
        if self._cache is not None:
            await self._cache.close()

    def readiness(self) -> dict[str, Any]:
        return {"on": True, "mode": "safe" if self.crypto else "plaintext", "outbound": bool(self._secret)}

    # ------------------------------------------------------------------ checks
    def _check_signature(self, query: Mapping[str, str]) -> tuple[str, str]:
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        signature = query.get("signature", "")
        if not timestamp or not nonce:
            raise Refused(400, "timestamp and nonce required")
        try:
            ts = int(timestamp)
        except ValueError:
            raise Refused(400, "bad timestamp") from None
        if abs(time.time() - ts) > MAX_SKEW_SECONDS:
            raise Refused(403, "stale timestamp")
        if signature or not self.crypto:
            expected = signature_of(self._token, timestamp, nonce)
            if not hmac.compare_digest(expected, signature.lower()):
                raise Refused(403, "bad signature")
        return timestamp, nonce

    async def _read_body(self, request: web.Request) -> bytes:
        length = request.content_length
        if length is not None:
            if length > MAX_BODY:
                raise Refused(413, "body too large")
            try:
                return await request.content.readexactly(length) if length else b""  # what WeChat sends
            except asyncio.IncompleteReadError:
                raise Refused(400, "body shorter than its Content-Length") from None
        buf = bytearray()  # chunked, no length: counted as it comes
        async for chunk in request.content.iter_chunked(65536):
            buf += chunk
            if len(buf) > MAX_BODY:
                raise Refused(413, "body too large")
        return bytes(buf)

    def _refuse(self, request: web.Request, exc: Refused) -> web.Response:
        log.warning("wechat request refused status=%s reason=%s remote=%s", exc.status, exc.reason, request.remote)
        return web.Response(status=exc.status, text=exc.reason)

    # ------------------------------------------------------------------ GET
    async def verify_url(self, request: web.Request) -> web.Response:
        try:
            if not request.query.get("signature"):
                raise Refused(403, "signature required")
            self._check_signature(request.query)
        except Refused as exc:
            return self._refuse(request, exc)
        return web.Response(text=request.query.get("echostr", ""), content_type="text/plain")

    # ------------------------------------------------------------------ POST
    async def callback(self, request: web.Request) -> web.Response:
        try:
            body = await self._read_body(request)
            timestamp, nonce = self._check_signature(request.query)
            encrypted = request.query.get("encrypt_type", "raw").lower() == "aes"
            outer = safe_parse_xml(body)
            if encrypted:
                xml = self._decrypt(outer, request.query.get("msg_signature", ""), timestamp, nonce)
            elif self.crypto is not None:
                raise Refused(403, "safe mode: encrypted messages only")
            else:
                xml = outer
            msg_type = _field(xml, "MsgType").lower()
            sender = _field(xml, "FromUserName")
            account = _field(xml, "ToUserName")
            if not msg_type or not sender or not account:
                raise Refused(400, "MsgType, FromUserName and ToUserName required")
            if len(sender) > 128:
                raise Refused(400, "FromUserName too long")
        except Refused as exc:
            return self._refuse(request, exc)
        started = time.monotonic()
        answered: list[Receipt] = []  # receipts whose replies this passive reply carries
        try:
            text = await self._handle(xml, msg_type, sender, answered)
        except Refused as exc:
            return self._refuse(request, exc)
        except InvalidMessage as exc:
            return self._refuse(request, Refused(400, str(exc)))
        if not text or (answered and time.monotonic() - started > self.passive_deadline):
            # nothing to say, or too late: WeChat stops waiting after 5 s (its retry of this
            # MsgId is answered "success" as a duplicate), so unmarked replies go out through
            # the customer-service API after the inline grace — once
            return web.Response(text=SUCCESS, content_type="text/plain")
        out = render_text_reply(sender, account, text)
        if encrypted and self.crypto is not None:
            out = self.crypto.encrypt_message(out, secrets.token_hex(8), str(int(time.time())))
        resp = web.Response(text=out, content_type="application/xml")
        # the replies count as delivered only once the answer was written: a connection gone
        # before leaves them to the outbox
        try:
            await resp.prepare(request)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            return resp
        for receipt in answered:
            self.ctx.processor.delivered_inline(receipt)
        return resp

    def _decrypt(self, outer: Mapping[str, Any], msg_signature: str, timestamp: str, nonce: str) -> dict[str, Any]:
        from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException

        if self.crypto is None:
            raise Refused(400, "encrypted message but no AES key configured")
        encrypt = outer.get("Encrypt")
        if not isinstance(encrypt, str) or not encrypt or not msg_signature:
            raise Refused(400, "Encrypt and msg_signature required")
        try:
            plain = self.crypto.decrypt_message({"Encrypt": encrypt}, msg_signature, timestamp, nonce)
        except InvalidSignatureException:
            raise Refused(403, "bad msg_signature") from None
        except InvalidAppIdException:
            raise Refused(403, "wrong appid") from None
        except Exception as exc:  # noqa: BLE001 - wrong key/garbage: padding, base64, utf-8...
            raise Refused(400, f"cannot decrypt ({type(exc).__name__})") from None
        return safe_parse_xml(plain)

    # ------------------------------------------------------------------ dispatch
    async def _handle(self, xml: Mapping[str, Any], msg_type: str, sender: str, answered: list[Receipt]) -> str:
        """Turn one verified message into the passive reply text ('' = answer ``success``);
        ``answered`` gets the receipt whose replies the text carries."""
        create_time = _field(xml, "CreateTime")
        msg_id = _field(xml, "MsgId")
        assert self.ledger is not None
        if msg_type == "event":
            event = _field(xml, "Event").lower()
            key = _field(xml, "EventKey")
            # WeChat dedupes events by FromUserName + CreateTime; the event and key only make
            # two different events in one second distinct (a retry repeats all of them).
            dedupe = f"ev:{sender}:{create_time}:{event}:{key[:60]}"
            if event == "unsubscribe":
                await self.ledger.unsubscribed(sender)
                log.info("wechat unsubscribe openid=%s", _mask_openid(sender))
                return ""
            if event in ("subscribe", "click", "view", "scan", "scancode_push", "scancode_waitmsg"):
                await self.ledger.user_event(sender)
            if event == "subscribe":
                meta = {"event": "subscribe"}
                if key.startswith("qrscene_"):
                    meta["scene"] = key[len("qrscene_"):][:64]
                msg = Message(self.name, sender, "绑定户号", dedupe, kind="event", metadata=meta)
                return await self._converse(msg, answered, prefix=self.welcome_text,
                                            fallback=f"{self.welcome_text}\n{self.bind_prompt}")
            if event == "click":
                said = CLICK_TEXT.get(key.upper())
                if said is None:
                    return self.menu_unknown_text
                msg = Message(self.name, sender, said, dedupe, kind="event",
                              metadata={"event": "CLICK", "key": key.upper()})
                return await self._converse(msg, answered)
            return ""  # VIEW, SCAN, LOCATION reports, template send results...: nothing to say
        if not msg_id:
            msg_id = f"msg:{sender}:{create_time}"
        msg: Message | None = None
        direct = ""
        if msg_type == "text":
            msg = Message(self.name, sender, _field(xml, "Content")[:MAX_TEXT], msg_id)
        elif msg_type == "voice":
            said = _field(xml, "Recognition")
            if said:
                msg = Message(self.name, sender, said[:MAX_TEXT], msg_id, kind="voice",
                              metadata={"media_id": _field(xml, "MediaId")[:128]})
            else:
                direct = self.voice_unclear_text
        elif msg_type == "location":
            try:
                lat, lon = float(_field(xml, "Location_X")), float(_field(xml, "Location_Y"))
            except ValueError:
                raise Refused(400, "bad location") from None
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise Refused(400, "bad location")
            label = _field(xml, "Label")[:200]
            location = {"lat": lat, "lon": lon, "label": label, "scale": _field(xml, "Scale")[:8]}
            place = label or f"{lat:.5f},{lon:.5f}"
            msg = Message(self.name, sender, f"我附近停电了吗？我的位置：{place}", msg_id,
                          kind="location", metadata={"location": location})
        elif msg_type == "image":
            direct = self.image_text
        else:
            direct = self.unsupported_text
        # any user message opens the 48-hour window: written with the message it came with
        if msg is None:
            await self.ledger.user_message(sender)
            return direct
        renewal = self.ledger.renewal(sender)
        return await self._converse(msg, answered, also=(renewal,) if renewal else ())

    async def _converse(
        self, msg: Message, answered: list[Receipt], *, prefix: str = "", fallback: str = "",
        also: Sequence[SideWrite] = (),
    ) -> str:
        log.info(
            "wechat inbound openid=%s kind=%s message_id=%s", _mask_openid(msg.sender_id), msg.kind, msg.message_id
        )
        receipt = await self.ctx.processor.receive(msg, wait=self.reply_wait, also=also)
        if receipt.duplicate:
            return ""
        if receipt.replies is None:
            return fallback  # the answer follows through the customer-service API
        replies = receipt.replies
        if any(r.metadata.get("template_id") for r in replies):
            return fallback  # template messages cannot be passive; the outbox sends everything
        # marked delivered by the caller once the answer is written (with the next grouped
        # write, not awaited: the replies are due to the outbox only after the inline grace)
        answered.append(receipt)
        text = join_replies(replies)
        if prefix:
            text = f"{prefix}\n{text}" if text else prefix
        return text[:MAX_TEXT]

    # ------------------------------------------------------------------ outbound
    async def window(self, openid: str) -> WindowState:
        if self.ledger is None:
            return WindowState(False, 0, None, ERR_WINDOW_CLOSED)
        return await self.ledger.state(openid)

    async def window_open(self, openid: str) -> bool:
        """Whether a free-text (customer-service) message can still reach this user."""
        return (await self.window(openid)).open

    def _require_api(self) -> WeChatAPI:
        if self.api is None:
            raise DeliveryError("wechat outbound needs POWERBOT_WECHAT_SECRET", retryable=False, code="no_secret")
        return self.api

    async def send(self, reply: Reply) -> str | None:
        template_id = reply.metadata.get("template_id")
        if template_id:
            data = reply.metadata.get("template_data") or {"content": reply.text}
            return await self.send_template(reply.recipient_id, str(template_id), dict(data), reply.metadata.get("url"))
        api = self._require_api()
        assert self.ledger is not None
        openid = reply.recipient_id
        refusal = await self.ledger.consume(openid)
        if refusal:
            raise DeliveryError(
                "customer-service window closed" if refusal == ERR_WINDOW_CLOSED else "window message quota used",
                retryable=False,
                code=refusal,
            )
        try:
            data = await api.send_text(openid, reply_text(reply)[:MAX_TEXT])
        except WeChatAPIError as exc:
            if exc.errcode in (45015, 45047):
                await self.ledger.close(openid)
                raise DeliveryError(f"wechat refused: {exc.errcode}", retryable=False, code=str(exc.errcode)) from None
            retryable = exc.errcode is None or exc.errcode in (-1, 45009, 40001, 40014, 42001)
            if retryable:
                await self.ledger.refund(openid)
            raise DeliveryError(
                f"wechat custom send failed: errcode={exc.errcode}",
                retryable=retryable,
                code=str(exc.errcode) if exc.errcode is not None else None,
            ) from None
        return str(data.get("msgid") or "ok")

    async def send_template(
        self, openid: str, template_id: str, data: Mapping[str, Any], url: str | None = None
    ) -> str:
        """Template message (outside the customer-service window). Raises ``DeliveryError``."""
        api = self._require_api()
        try:
            res = await api.send_template(openid, template_id, dict(data), url)
        except WeChatAPIError as exc:
            retryable = exc.errcode is None or exc.errcode in (-1, 45009)
            raise DeliveryError(
                f"wechat template send failed: errcode={exc.errcode}",
                retryable=retryable,
                code=str(exc.errcode) if exc.errcode is not None else None,
            ) from None
        return str(res.get("msgid") or "ok")


def from_context(ctx: ChannelContext) -> WeChatChannel | None:
    """The channel is on when the appid and the callback token are set."""
    s = ctx.settings
    if not s.wechat_appid or not s.wechat_token or not s.wechat_token.get_secret_value():
        return None
    return WeChatChannel(ctx)


__all__ = [
    "CLICK_TEXT",
    "ERR_QUOTA_USED",
    "ERR_WINDOW_CLOSED",
    "WeChatChannel",
    "WeChatWindow",
    "from_context",
    "join_replies",
    "render_text_reply",
    "safe_parse_xml",
    "signature_of",
]
