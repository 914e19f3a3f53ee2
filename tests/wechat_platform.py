"""A local WeChat played by the tests: it signs and encrypts like WeChat, posts to the gateway,
retries slow answers, and serves the server APIs (token, 客服消息, template, menu) on loopback,
checking the access token we present.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import xmltodict
from aiohttp import web
from wechatpy.crypto import WeChatCrypto

from loopback import serve_on_loopback

APPID = "wx1234567890abcdef"
SECRET = "test-app-secret-0123456789"
TOKEN = "powerbotTestToken"
AES_KEY = base64.b64encode(hashlib.sha256(b"powerbot-aes").digest()).decode().rstrip("=")  # 43 chars
OTHER_AES_KEY = base64.b64encode(hashlib.sha256(b"someone-else").digest()).decode().rstrip("=")
ACCOUNT = "gh_powerbot0001"


def sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def new_openid() -> str:
    return "o" + secrets.token_urlsafe(20)[:27]


# ---------------------------------------------------------------------------- server side
@dataclass
class FakeWeChatAPI:
    """WeChat's server API on loopback."""

    appid: str = APPID
    secret: str = SECRET
    url: str = ""
    tokens_issued: list[str] = field(default_factory=list)
    valid_tokens: set[str] = field(default_factory=set)
    custom: list[dict[str, Any]] = field(default_factory=list)
    templates: list[dict[str, Any]] = field(default_factory=list)
    menus: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    next_errcodes: list[int] = field(default_factory=list)  # forced errcodes for the next sends
    token_requests: int = 0

    def revoke_all(self) -> None:
        """Every issued token becomes invalid (WeChat answers 40001)."""
        self.valid_tokens.clear()

    def _check(self, request: web.Request) -> dict[str, Any] | None:
        token = request.query.get("access_token", "")
        if token not in self.valid_tokens:
            self.refusals.append({"path": request.path, "token": token})
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
        return None

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        q = request.query
        if q.get("grant_type") != "client_credential" or q.get("appid") != self.appid or q.get("secret") != self.secret:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        tok = "ACCESS_" + secrets.token_hex(12)
        self.tokens_issued.append(tok)
        self.valid_tokens.add(tok)
        return web.json_response({"access_token": tok, "expires_in": 7200})

    async def _json(self, request: web.Request) -> dict[str, Any]:
        import json

        return json.loads((await request.read()).decode("utf-8"))

    async def custom_send(self, request: web.Request) -> web.Response:
        bad = self._check(request)
        if bad:
            return web.json_response(bad)
        body = await self._json(request)
        if self.next_errcodes:
            code = self.next_errcodes.pop(0)
            return web.json_response({"errcode": code, "errmsg": "forced"})
        self.custom.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def template_send(self, request: web.Request) -> web.Response:
        bad = self._check(request)
        if bad:
            return web.json_response(bad)
        body = await self._json(request)
        self.templates.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": 200228332 + len(self.templates)})

    async def menu_create(self, request: web.Request) -> web.Response:
        bad = self._check(request)
        if bad:
            return web.json_response(bad)
        self.menus.append(await self._json(request))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    def texts_to(self, openid: str) -> list[str]:
        return [m["text"]["content"] for m in self.custom if m.get("touser") == openid]


@asynccontextmanager
async def run_wechat_api() -> AsyncIterator[FakeWeChatAPI]:
    api = FakeWeChatAPI()
    app = web.Application()
    app.router.add_get("/cgi-bin/token", api.token)
    app.router.add_post("/cgi-bin/message/custom/send", api.custom_send)
    app.router.add_post("/cgi-bin/message/template/send", api.template_send)
    app.router.add_post("/cgi-bin/menu/create", api.menu_create)
    async with serve_on_loopback(app) as base:
        api.url = f"{base}/cgi-bin/"
        yield api


# ---------------------------------------------------------------------------- pushing side
def text_xml(openid: str, content: str, msg_id: int | None = None, create_time: int | None = None) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id or new_msg_id()}</MsgId></xml>"
    )


def event_xml(openid: str, event: str, key: str | None = None, create_time: int | None = None) -> str:
    k = f"<EventKey><![CDATA[{key}]]></EventKey>" if key is not None else ""
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event>{k}</xml>"
    )


def voice_xml(openid: str, recognition: str, msg_id: int | None = None) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[voice]]></MsgType>"
        f"<MediaId><![CDATA[media123]]></MediaId><Format><![CDATA[amr]]></Format>"
        f"<Recognition><![CDATA[{recognition}]]></Recognition><MsgId>{msg_id or new_msg_id()}</MsgId></xml>"
    )


def location_xml(openid: str, lat: float, lon: float, label: str, msg_id: int | None = None) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[location]]></MsgType>"
        f"<Location_X>{lat}</Location_X><Location_Y>{lon}</Location_Y><Scale>15</Scale>"
        f"<Label><![CDATA[{label}]]></Label><MsgId>{msg_id or new_msg_id()}</MsgId></xml>"
    )


def image_xml(openid: str, msg_id: int | None = None) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[image]]></MsgType>"
        f"<PicUrl><![CDATA[http://127.0.0.1/pic.jpg]]></PicUrl><MediaId><![CDATA[m1]]></MediaId>"
        f"<MsgId>{msg_id or new_msg_id()}</MsgId></xml>"
    )


_msg_seq = int(time.time() * 1000) * 1000


def new_msg_id() -> int:
    global _msg_seq
    _msg_seq += 1
    return _msg_seq


@dataclass
class Answer:
    status: int
    body: str
    text: str | None  # reply Content (decrypted in safe mode), None for success/empty


class WeChatPusher:
    """Posts messages to the gateway the way WeChat's servers do."""

    def __init__(self, gateway_url: str, *, mode: str = "plain", token: str = TOKEN, aes_key: str = AES_KEY,
                 appid: str = APPID) -> None:
        assert mode in ("plain", "compat", "safe")
        self.url = gateway_url.rstrip("/") + "/channels/wechat"
        self.mode = mode
        self.token = token
        self.crypto = WeChatCrypto(token, aes_key, appid)
        self.reader = WeChatCrypto(TOKEN, AES_KEY, APPID)  # how WeChat itself decrypts our answer

    def build(self, xml: str, *, timestamp: int | None = None, nonce: str | None = None,
              signature: str | None = None) -> tuple[dict[str, str], bytes]:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or secrets.token_hex(5)
        params = {"timestamp": ts, "nonce": nonce, "signature": signature or sign(self.token, ts, nonce)}
        if self.mode == "plain":
            return params, xml.encode("utf-8")
        enc = xmltodict.parse(self.crypto.encrypt_message(xml, nonce, ts))["xml"]
        encrypt = enc["Encrypt"]
        params.update(encrypt_type="aes", msg_signature=enc["MsgSignature"], openid="o_any")
        if self.mode == "safe":
            body = f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        else:  # compatible: plaintext fields and the ciphertext side by side
            body = xml.replace("</xml>", f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
        return params, body.encode("utf-8")

    def read(self, status: int, body: str) -> Answer:
        if status != 200 or body in ("", "success"):
            return Answer(status, body, None)
        doc = xmltodict.parse(body)["xml"]
        if "Encrypt" in doc:
            assert self.mode != "plain", "encrypted answer to a plaintext request"
            assert doc["MsgSignature"] == sign(TOKEN, doc["TimeStamp"], doc["Nonce"], doc["Encrypt"])
            plain = self.reader.decrypt_message(body, doc["MsgSignature"], doc["TimeStamp"], doc["Nonce"])
            doc = xmltodict.parse(plain)["xml"]
        else:
            assert self.mode == "plain", "plaintext answer in safe mode"
        assert doc["MsgType"] == "text"
        return Answer(status, body, doc["Content"])

    async def post(self, http: aiohttp.ClientSession, xml: str, **kw: Any) -> Answer:
        params, body = self.build(xml, **kw)
        async with http.post(self.url, params=params, data=body, headers={"Content-Type": "text/xml"}) as resp:
            return self.read(resp.status, await resp.text())

    async def post_raw(self, http: aiohttp.ClientSession, params: dict[str, str], body: bytes) -> tuple[int, str]:
        async with http.post(self.url, params=params, data=body, headers={"Content-Type": "text/xml"}) as resp:
            return resp.status, await resp.text()

    async def push(self, http: aiohttp.ClientSession, xml: str, *, deadline: float = 5.0, retries: int = 3) -> list[Answer]:
        """Like WeChat: wait ``deadline`` seconds, retry (same message) up to ``retries`` times."""
        answers: list[Answer] = []
        params, body = self.build(xml)
        for _ in range(1 + retries):
            try:
                async with http.post(self.url, params=params, data=body, timeout=aiohttp.ClientTimeout(total=deadline)) as resp:
                    answers.append(self.read(resp.status, await resp.text()))
                    return answers
            except asyncio.TimeoutError:
                answers.append(Answer(0, "timeout", None))
        return answers


