"""Hostile WeChat callbacks: each is refused with a 4xx, leaves no row behind and is logged
without secrets. Runs against the real gateway in plaintext and safe mode."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import xmltodict
from sqlalchemy import func, select
from wechatpy.crypto import WeChatCrypto

from bot.app import SESSIONMAKER
from bot.models import InboundMessage, OutboxMessage
from channels.wechat import safe_parse_xml
from channels.wechat_store import WeChatWindow
from stack import run_gateway
from wechat_platform import ACCOUNT, AES_KEY, APPID, OTHER_AES_KEY, SECRET, TOKEN, WeChatPusher, new_openid, run_wechat_api, sign, text_xml

pytestmark = pytest.mark.asyncio(loop_scope="module")

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    "<xml><ToUserName>gh</ToUserName><FromUserName>oX</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>text</MsgType><Content>&lol3;</Content><MsgId>1</MsgId></xml>"
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<xml><ToUserName>gh</ToUserName><FromUserName>oX</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>2</MsgId></xml>"
)
LOWER_CASE_DTD = '<!doctype xml [<!entity a "b">]><xml><MsgType>text</MsgType></xml>'


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["plain", "safe"])
async def gateway(request, core, interpreter, tmp_path_factory) -> AsyncIterator:
    async with run_wechat_api() as api:
        kw = dict(wechat_appid=APPID, wechat_token=TOKEN, wechat_secret=SECRET, wechat_api_base_url=api.url)
        if request.param == "safe":
            kw["wechat_aes_key"] = AES_KEY
        db = tmp_path_factory.mktemp(f"wxs_{request.param}") / "bot.db"
        async with run_gateway(f"sqlite+aiosqlite:///{db}", core.url, interpreter, **kw) as gw:
            gw.mode = request.param  # type: ignore[attr-defined]
            yield gw


async def no_side_effects(gw) -> None:  # type: ignore[no-untyped-def]
    async with gw.app[SESSIONMAKER]() as s:
        for model in (InboundMessage, OutboxMessage, WeChatWindow):
            n = (await s.execute(select(func.count()).select_from(model))).scalar_one()
            assert n == 0, f"{model.__tablename__} has {n} rows after a refused request"


def assert_no_secrets(caplog) -> None:  # type: ignore[no-untyped-def]
    logged = caplog.text
    for secret in (TOKEN, SECRET, AES_KEY):
        assert secret not in logged


def encrypted_body(xml: str, crypto: WeChatCrypto, ts: str, nonce: str) -> tuple[dict[str, str], bytes]:
    enc = xmltodict.parse(crypto.encrypt_message(xml, nonce, ts))["xml"]
    params = {"timestamp": ts, "nonce": nonce, "signature": sign(TOKEN, ts, nonce), "encrypt_type": "aes",
              "msg_signature": enc["MsgSignature"], "openid": "o_any"}
    body = f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{enc['Encrypt']}]]></Encrypt></xml>"
    return params, body.encode()


async def test_forged_signature(gateway, http, caplog) -> None:
    caplog.set_level(logging.INFO)
    p = WeChatPusher(gateway.url, mode=gateway.mode)
    xml = text_xml(new_openid(), "查电费")
    params, body = p.build(xml, signature="0" * 40)
    status, _ = await p.post_raw(http, params, body)
    assert status == 403
    params, body = p.build(xml)
    if gateway.mode == "safe":
        params["msg_signature"] = sign("forged", params["timestamp"], params["nonce"], "x")
    else:
        params.pop("signature")
    status, _ = await p.post_raw(http, params, body)
    assert status == 403
    # Signed with another token.
    forger = WeChatPusher(gateway.url, mode=gateway.mode, token="someone-elses-token")
    status, _ = await forger.post_raw(http, *forger.build(xml))
    assert status == 403
    await no_side_effects(gateway)
    assert "refused" in caplog.text
    assert_no_secrets(caplog)


@pytest.mark.parametrize("skew", [-301, -3600, 3600])
async def test_stale_or_future_timestamp(gateway, http, skew) -> None:
    p = WeChatPusher(gateway.url, mode=gateway.mode)
    params, body = p.build(text_xml(new_openid(), "查电费"), timestamp=int(time.time()) + skew)
    status, _ = await p.post_raw(http, params, body)
    assert status == 403
    ts = str(int(time.time()) + skew)
    q = {"signature": sign(TOKEN, ts, "n"), "timestamp": ts, "nonce": "n", "echostr": "e"}
    async with http.get(gateway.url + "/channels/wechat", params=q) as r:
        assert r.status == 403
    await no_side_effects(gateway)


async def test_malformed_xml(gateway, http) -> None:
    p = WeChatPusher(gateway.url, mode=gateway.mode)
    for bad in ("<xml><ToUserName>gh", "not xml at all", "<xml></xml>", "<other><a>1</a></other>",
                "<xml><MsgType>text</MsgType><FromUserName>o1</FromUserName></xml>",
                "<xml><ToUserName>gh</ToUserName><FromUserName><a>1</a></FromUserName><MsgType>text</MsgType></xml>"):
        params, body = p.build(bad)
        status, _ = await p.post_raw(http, params, body)
        assert 400 <= status < 500, bad
    params, _ = p.build("<xml/>")
    status, _ = await p.post_raw(http, params, b"\xff\xfe<\x00x\x00")
    assert status == 400
    await no_side_effects(gateway)


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, XXE, LOWER_CASE_DTD])
async def test_dtd_and_entities_refused(gateway, http, doc) -> None:
    p = WeChatPusher(gateway.url, mode=gateway.mode)
    params, body = p.build(doc)  # in safe mode the declaration travels inside the ciphertext
    status, text = await p.post_raw(http, params, body)
    assert status == 400
    assert "root:" not in text and "lollol" not in text
    if gateway.mode == "safe":
        # ...and in the outer envelope too.
        params, _ = p.build(text_xml(new_openid(), "x"))
        status, _ = await p.post_raw(http, params, XXE.encode())
        assert status == 400
    await no_side_effects(gateway)


async def test_body_over_1mb(gateway, http) -> None:
    p = WeChatPusher(gateway.url, mode=gateway.mode)
    params, _ = p.build(text_xml(new_openid(), "x"))
    big = b"<xml><Content>" + b"a" * (1_048_576 + 10) + b"</Content></xml>"
    status, _ = await p.post_raw(http, params, big)
    assert status == 413

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"a" * 65536 * 2

    async with http.post(p.url, params=params, data=chunks()) as r:  # chunked: no Content-Length
        assert r.status == 413
    await no_side_effects(gateway)


async def test_wrong_aes_key_and_wrong_appid(gateway, http) -> None:
    ts, nonce = str(int(time.time())), secrets.token_hex(4)
    xml = text_xml(new_openid(), "查电费")
    p = WeChatPusher(gateway.url, mode=gateway.mode)
    wrong_key = WeChatCrypto(TOKEN, OTHER_AES_KEY, APPID)
    wrong_appid = WeChatCrypto(TOKEN, AES_KEY, "wx0000000000000000")
    for crypto in (wrong_key, wrong_appid):
        params, body = encrypted_body(xml, crypto, ts, nonce)
        status, _ = await p.post_raw(http, params, body)
        assert 400 <= status < 500
    await no_side_effects(gateway)


async def test_mode_mismatch(gateway, http) -> None:
    """Safe mode accepts only encrypted messages; plaintext mode cannot decrypt."""
    other = "plain" if gateway.mode == "safe" else "safe"
    p = WeChatPusher(gateway.url, mode=other)
    params, body = p.build(text_xml(new_openid(), "查电费"))
    status, _ = await p.post_raw(http, params, body)
    assert status in (400, 403)
    await no_side_effects(gateway)


async def test_valid_message_still_accepted(gateway, http) -> None:
    """The refusals above are not a gateway that refuses everything."""
    p = WeChatPusher(gateway.url, mode=gateway.mode)
    ans = await p.post(http, text_xml(new_openid(), "你好"))
    assert ans.status == 200 and ans.text


async def test_safe_parse_xml_unit() -> None:
    assert safe_parse_xml("<xml><a><![CDATA[<!DOCTYPE in cdata is text]]></a></xml>")["a"].startswith("<!DOCTYPE")
    hidden = '<![CDATA[x]]><!DOCTYPE x [<!ENTITY a "<![CDATA[">]><xml><a>&a;]]></a></xml>'
    for bad in (BILLION_LAUGHS, XXE, LOWER_CASE_DTD, "<xml>&amp;&foo;</xml>", hidden):
        with pytest.raises(Exception) as exc:
            safe_parse_xml(bad)
        assert getattr(exc.value, "status", None) == 400


def test_safe_parse_xml_keeps_the_shape_the_channel_reads() -> None:
    """Text fields stripped, empty ones None, nested events as dicts, a repeated child as a list."""
    doc = ("<xml><MsgType><![CDATA[event]]></MsgType><Content> </Content><!-- a comment is not a DTD -->"
           "<SendPicsInfo><Count>2</Count><PicList><item><PicMd5Sum>a</PicMd5Sum></item>"
           "<item><PicMd5Sum>b</PicMd5Sum></item></PicList></SendPicsInfo></xml>")
    assert safe_parse_xml(doc.encode()) == {
        "MsgType": "event", "Content": None,
        "SendPicsInfo": {"Count": "2", "PicList": {"item": [{"PicMd5Sum": "a"}, {"PicMd5Sum": "b"}]}},
    }
    for bad in (b"<xml>\xff</xml>", "<other><a>1</a></other>", "<xml>text</xml>", "<xml/>"):
        with pytest.raises(Exception) as exc:
            safe_parse_xml(bad)
        assert getattr(exc.value, "status", None) == 400
