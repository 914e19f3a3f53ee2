"""Unit tests of the Alipay signature rules the local Alipay (``alipay_platform``) relies on."""

from __future__ import annotations

import asyncio
import urllib.parse

import pytest

from channels import alipay_sdk
from channels.alipay import BadRequest, parse_biz_xml, parse_form

from alipay_platform import FakeAlipay, KeyPair, run_fake_alipay


def test_gbk_form_decoded_in_its_own_charset_and_signature_rule_keeps_sign_type() -> None:
    app_keys, alipay_keys = KeyPair.generate(), KeyPair.generate()
    fake = FakeAlipay(appid="2021000000000001", app_public_pem=app_keys.public_pem, keys=alipay_keys)
    xml = fake.message_xml("2088000000000009", text="你好，我家停电了，怎么交电费？")
    raw = fake.gateway_form("alipay.mobile.public.message.notify", xml, charset="GBK")
    assert "你好".encode("utf-8") not in urllib.parse.unquote_to_bytes(raw)  # really GBK on the wire
    form, charset = parse_form(raw, None)
    assert charset == "gbk"
    assert "停电" in form["biz_content"]
    client = alipay_sdk.make_client("2021000000000001", app_keys.private_pem, alipay_keys.public_pem, "http://127.0.0.1:9/")
    content = alipay_sdk.sign_content(form)
    assert "sign_type=RSA2" in content
    assert alipay_sdk.verify_bytes(client, content.encode("gbk"), form["sign"])
    # The SDK's own rule (UTF-8, sign_type dropped) does not verify a service-window post.
    data = dict(form)
    sign = data.pop("sign")
    assert not client.verify(data, sign)
    # Tampering breaks the signature.
    assert not alipay_sdk.verify_bytes(client, content.replace("停电", "来电").encode("gbk"), form["sign"])
    assert parse_biz_xml(form["biz_content"])["Text"]["Content"].startswith("你好")


def test_bare_base64_keys_are_wrapped_and_bad_keys_refused(tmp_path) -> None:
    keys = KeyPair.generate()
    pem = alipay_sdk.load_key(keys.public_b64, None, private=False, what="x")
    assert pem and pem.startswith("-----BEGIN PUBLIC KEY-----")
    bare_private = "".join(keys.private_pem.strip().splitlines()[1:-1])
    assert alipay_sdk.load_key(bare_private, None, private=True, what="x").startswith("-----BEGIN RSA PRIVATE KEY")
    f = tmp_path / "app.pem"
    f.write_text(keys.private_pem)
    assert alipay_sdk.load_key(None, f, private=True, what="x")
    with pytest.raises(alipay_sdk.AlipayKeyError) as err:
        alipay_sdk.load_key("bm90IGEga2V5", None, private=True, what="POWERBOT_ALIPAY_APP_PRIVATE_KEY")
    assert "bm90IGEga2V5" not in str(err.value)
    with pytest.raises(alipay_sdk.AlipayKeyError):
        alipay_sdk.load_key(keys.public_pem, None, private=True, what="x")
    assert alipay_sdk.load_key(None, None, private=True, what="x") is None


@pytest.mark.parametrize(
    "xml",
    [
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><XML><MsgType>&a;</MsgType></XML>',
        '<!DOCTYPE XML SYSTEM "file:///etc/passwd"><XML/>',
        '<XML><MsgType>text</MsgType>',
        "not xml at all",
    ],
)
def test_hostile_or_malformed_biz_content_refused(xml: str) -> None:
    with pytest.raises(BadRequest):
        parse_biz_xml(xml)


def test_unknown_charset_and_raw_doctype_refused() -> None:
    with pytest.raises(BadRequest):
        parse_form(b"charset=EBCDIC&service=x", None)
    with pytest.raises(BadRequest):
        parse_form(b"biz_content=<!DOCTYPE x>", None)
    with pytest.raises(BadRequest):
        parse_form(b"a=%FF%FF&charset=GBK", None)


async def test_fake_gateway_rejects_requests_not_signed_with_our_key() -> None:
    """The fake really checks our signature: a client with another app key is refused."""
    ours, other, = KeyPair.generate(), KeyPair.generate()
    async with run_fake_alipay("2021000000000001", ours.public_pem) as fake:
        good = alipay_sdk.make_client("2021000000000001", ours.private_pem, fake.keys.public_pem, fake.gateway_url)
        bad = alipay_sdk.make_client("2021000000000001", other.private_pem, fake.keys.public_pem, fake.gateway_url)
        biz = {"to_user_id": "2088000000000001", "msg_type": "text", "text": {"content": "测试"}, "chat": "1"}
        result = await alipay_sdk.call(good, "server_api", "alipay.open.public.message.custom.send", biz_content=biz)
        assert result["code"] == "10000"
        assert fake.sent[-1]["text"]["content"] == "测试"
        from channels.base import DeliveryError

        with pytest.raises(DeliveryError):
            await alipay_sdk.call(bad, "server_api", "alipay.open.public.message.custom.send", biz_content=biz)
        assert fake.rejected == ["bad signature"]
        assert len(fake.sent) == 1
        # A gateway answer signed by someone else is refused by our client.
        forger = alipay_sdk.make_client("2021000000000001", ours.private_pem, other.public_pem, fake.gateway_url)
        with pytest.raises(DeliveryError) as err:
            await alipay_sdk.call(forger, "server_api", "alipay.open.public.message.custom.send", biz_content=biz)
        assert err.value.code == "bad_sign"
        await asyncio.sleep(0)


def test_biz_xml_text_may_mention_a_doctype() -> None:
    """The parser (defusedxml) refuses a real DTD; a customer's text that merely says one is text."""
    from channels.alipay import parse_biz_xml

    doc = "<XML><MsgType>text</MsgType><Text><Content><![CDATA[<!DOCTYPE html> 是什么]]></Content></Text></XML>"
    assert parse_biz_xml(doc)["Text"]["Content"] == "<!DOCTYPE html> 是什么"
