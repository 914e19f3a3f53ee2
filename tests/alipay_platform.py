"""A local Alipay played by the tests.

``FakeAlipay`` owns its own RSA key pair (generated with ``cryptography`` at test time):

- it signs what Alipay sends us: service-window gateway posts (``sign_type`` kept in the
  signed string, bytes in the message's charset) and trade notifies (``sign``/``sign_type``
  left out, UTF-8);
- it serves ``/gateway.do`` like the Alipay open gateway (GET query or POST form), verifying
  every request's RSA2 signature with *our* app public key and answering with signed JSON:
  ``alipay.open.public.message.custom.send``, ``alipay.trade.precreate``, ``alipay.trade.query``.
"""


from __future__ import annotations

import base64
import json
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from loopback import serve_on_loopback


# --- keys -----------------------------------------------------------------------------------
@dataclass
class KeyPair:
    private: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @property
    def private_pem(self) -> str:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    @property
    def public_pem(self) -> str:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @property
    def public_b64(self) -> str:
        """The bare base64 the Alipay console shows."""
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode()

    def verify(self, data: bytes, signature: str) -> bool:
        try:
            self.private.public_key().verify(base64.b64decode(signature), data, padding.PKCS1v15(), hashes.SHA256())
            return True
        except (InvalidSignature, ValueError):
            return False


def verify_with_public(public_pem: str, data: bytes, signature: str) -> bool:
    key = serialization.load_pem_public_key(public_pem.encode())
    try:
        key.verify(base64.b64decode(signature), data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]
        return True
    except (InvalidSignature, ValueError):
        return False


def sorted_content(params: dict[str, str], *, drop: tuple[str, ...]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in drop and v != "")


def urlencode_bytes(params: dict[str, str], charset: str) -> bytes:
    return urllib.parse.urlencode(params, encoding=charset).encode("ascii")


# --- the fake platform ------------------------------------------------------------------------
@dataclass
class FakeAlipay:
    appid: str
    app_public_pem: str  # ours: verifies our requests
    keys: KeyPair = field(default_factory=KeyPair.generate)  # Alipay's own
    sent: list[dict[str, Any]] = field(default_factory=list)
    precreated: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    fail_send_with: str | None = None  # e.g. "40004": custom.send answers a business failure
    url: str = ""

    @property
    def gateway_url(self) -> str:
        return f"{self.url}/gateway.do"

    # what Alipay sends us ---------------------------------------------------------------
    def gateway_form(self, service: str, biz_xml: str, *, charset: str = "GBK",
                     keys: KeyPair | None = None, **extra: str) -> bytes:
        """A signed service-window post: sign_type kept in the signed string, bytes in ``charset``."""
        params = {"service": service, "biz_content": biz_xml, "charset": charset, "sign_type": "RSA2", **extra}
        content = sorted_content(params, drop=("sign",)).encode(charset)
        params["sign"] = (keys or self.keys).sign(content)
        return urlencode_bytes(params, charset)

    def message_xml(self, user_id: str, *, text: str | None = None, event: str | None = None,
                    action: str = "", msg_id: str | None = None, create_time: int | None = None,
                    appid: str | None = None) -> str:
        ct = create_time or int(time.time() * 1000)
        parts = [f"<AppId><![CDATA[{appid or self.appid}]]></AppId>",
                 f"<FromUserId><![CDATA[{user_id}]]></FromUserId>",
                 f"<CreateTime>{ct}</CreateTime>"]
        if text is not None:
            parts += ["<MsgType><![CDATA[text]]></MsgType>", f"<Text><Content><![CDATA[{text}]]></Content></Text>",
                      f"<MsgId><![CDATA[{msg_id or uuid.uuid4().hex}]]></MsgId>"]
        else:
            parts += ["<MsgType><![CDATA[event]]></MsgType>", f"<EventType><![CDATA[{event}]]></EventType>",
                      f"<ActionParam><![CDATA[{action}]]></ActionParam>"]
        return "<XML>" + "".join(parts) + "</XML>"

    def pay(self, out_trade_no: str, trade_no: str) -> None:
        """The customer pays at Alipay (trade.query reports it; no notify is sent)."""
        self.precreated[out_trade_no].update(paid=True, trade_no=trade_no)

    def trade_notify(self, out_trade_no: str, total_amount: str, *, trade_no: str | None = None,
                     trade_status: str = "TRADE_SUCCESS", appid: str | None = None,
                     keys: KeyPair | None = None) -> dict[str, str]:
        params = {
            "notify_time": time.strftime("%Y-%m-%d %H:%M:%S"), "notify_type": "trade_status_sync",
            "notify_id": uuid.uuid4().hex, "charset": "utf-8", "version": "1.0", "sign_type": "RSA2",
            "app_id": appid or self.appid, "out_trade_no": out_trade_no,
            "trade_no": trade_no or "2026" + uuid.uuid4().hex[:24], "trade_status": trade_status,
            "total_amount": total_amount, "receipt_amount": total_amount, "buyer_id": "2088102177846880",
            "subject": "电费缴纳", "gmt_payment": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        content = sorted_content(params, drop=("sign", "sign_type")).encode("utf-8")
        params["sign"] = (keys or self.keys).sign(content)
        return params

    def verify_answer(self, body: bytes, charset: str) -> str:
        """Check a signed XML answer from our gateway; return the <response> content."""
        text = body.decode(charset)
        inner = text.split("<response>", 1)[1].rsplit("</response>", 1)[0]
        sign = text.split("<sign>", 1)[1].split("</sign>", 1)[0]
        assert "<sign_type>RSA2</sign_type>" in text
        assert verify_with_public(self.app_public_pem, inner.encode(charset), sign), "answer signature invalid"
        return inner

    # the open gateway ---------------------------------------------------------------------
    def _answer(self, method: str, payload: dict[str, Any]) -> web.Response:
        key = method.replace(".", "_") + "_response"
        inner = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        sign = self.keys.sign(inner.encode("utf-8"))
        return web.Response(text=f'{{"{key}":{inner},"sign":"{sign}"}}', content_type="application/json")

    def _unsigned_error(self, code: str, sub: str) -> web.Response:
        body = {"error_response": {"code": code, "msg": "Invalid Arguments", "sub_code": sub}}
        return web.json_response(body)

    async def handle(self, request: web.Request) -> web.Response:
        params: dict[str, str] = dict(request.query)
        if request.method == "POST":
            params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        sign = params.pop("sign", "")
        content = sorted_content(params, drop=()).encode("utf-8")
        if not verify_with_public(self.app_public_pem, content, sign):
            self.rejected.append("bad signature")
            return self._unsigned_error("40002", "isv.invalid-signature")
        if params.get("app_id") != self.appid:
            self.rejected.append("bad app_id")
            return self._unsigned_error("40002", "isv.invalid-app-id")
        method = params.get("method", "")
        biz = json.loads(params.get("biz_content") or "{}")
        if method == "alipay.open.public.message.custom.send":
            if self.fail_send_with:
                return self._answer(method, {"code": self.fail_send_with, "msg": "Business Failed",
                                             "sub_code": "PUB.MSG_SEND_FAILED", "sub_msg": "发送失败"})
            self.sent.append(biz)
            return self._answer(method, {"code": "10000", "msg": "Success", "msg_id": uuid.uuid4().hex})
        if method == "alipay.trade.precreate":
            self.precreated[biz["out_trade_no"]] = {**biz, "notify_url": params.get("notify_url"), "paid": False}
            return self._answer(method, {"code": "10000", "msg": "Success", "out_trade_no": biz["out_trade_no"],
                                         "qr_code": f"https://qr.alipay.com/bax{uuid.uuid4().hex[:20]}"})
        if method == "alipay.trade.query":
            order = self.precreated.get(biz.get("out_trade_no", ""))
            if order is None:
                return self._answer(method, {"code": "40004", "msg": "Business Failed",
                                             "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"})
            return self._answer(method, {"code": "10000", "msg": "Success", "out_trade_no": order["out_trade_no"],
                                         "trade_status": "TRADE_SUCCESS" if order["paid"] else "WAIT_BUYER_PAY",
                                         "trade_no": order.get("trade_no", ""), "total_amount": order["total_amount"]})
        return self._answer(method, {"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method"})


@asynccontextmanager
async def run_fake_alipay(appid: str, app_public_pem: str) -> AsyncIterator[FakeAlipay]:
    fake = FakeAlipay(appid=appid, app_public_pem=app_public_pem)
    app = web.Application()
    app.router.add_route("*", "/gateway.do", fake.handle)
    async with serve_on_loopback(app) as base:
        fake.url = base
        yield fake


# --- unit tests of the rules ------------------------------------------------------------------
