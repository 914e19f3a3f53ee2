"""Unit tests of customer-mail parsing: charsets, HTML, quoted replies, auto-reply detection."""

from __future__ import annotations

import base64
from email.message import EmailMessage

import pytest

from channels.email import reply_subject
from channels.email_parse import decode_header_value, html_to_text, parse_mail, strip_quoted


def _mail(body: str = "查电费", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Li <li@example.com>")
    msg["To"] = "95598@powerbot.local"
    msg["Subject"] = headers.pop("Subject", "电费")
    msg["Message-ID"] = "<m1@example.com>"
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    msg.set_content(body)
    return msg


@pytest.mark.parametrize(
    "text, expected",
    [
        ("好的\n\nOn Tue, Nov 25, 2026 at 10:00 AM 95598 <s@x.cn> wrote:\n> old", "好的"),
        ("好的\nOn Tue, Nov 25, 2026 at 10:00 AM 95598\n<s@x.cn> wrote:\n> old", "好的"),
        ("收到\n\n在 2026年11月25日 星期二 10:00，95598客服 写道：\n> 旧内容", "收到"),
        ("收到\n\n------------------ 原始邮件 ------------------\n发件人: x\n发送时间: y", "收到"),
        ("ok\n\n-----Original Message-----\nFrom: a\nSent: b", "ok"),
        ("ok\n\nFrom: 95598 <s@x.cn>\nSent: Tuesday\nTo: me\nSubject: hi\n\nold", "ok"),
        ("第一行\n> 引用\n第二行", "第一行\n第二行"),
        ("内容\n-- \n张三\n13800138000", "内容"),
        ("From: my side of the story, the meter is broken", "From: my side of the story, the meter is broken"),
    ],
)
def test_quoted_replies_and_signatures_are_stripped(text: str, expected: str) -> None:
    assert strip_quoted(text) == expected


def test_html_to_text_drops_scripts_styles_and_quoted_history() -> None:
    markup = (
        "<html><head><title>t</title><style>p{}</style></head><body><div>你好<br>谢谢</div>"
        '<div class="gmail_quote"><div>On ... wrote:</div><blockquote>旧</blockquote></div>'
        "<blockquote>也是旧的</blockquote><p>A&amp;B</p><script>x()</script></body></html>"
    )
    assert html_to_text(markup) == "你好\n谢谢\n\nA&B"


def test_encoded_headers_in_gbk_and_utf8() -> None:
    gbk = base64.b64encode("王喆的来信".encode("gbk")).decode()
    assert decode_header_value(f"=?gb2312?B?{gbk}?=") == "王喆的来信"
    assert decode_header_value("=?utf-8?q?=E7=94=B5=E8=B4=B9?= query") == "电费 query"
    assert decode_header_value("=?bogus?B?###?=") != ""  # malformed: kept, no crash


def test_parse_mail_fields() -> None:
    m = parse_mail(_mail(From="Li Si <Li.Si@Example.COM>", In_Reply_To="<a@x>", References="<z@x> <a@x>").as_bytes())
    assert m.sender == "li.si@example.com" and m.sender_name == "Li Si"
    assert m.message_id == "<m1@example.com>" and m.in_reply_to == "<a@x>" and m.references == ["<z@x>", "<a@x>"]
    assert m.text == "查电费" and m.auto_reason is None


def test_subject_is_used_when_the_body_is_empty() -> None:
    assert parse_mail(_mail(body="\n", Subject="Re: 查电费").as_bytes()).text == "查电费"


def test_mislabelled_and_unknown_charsets_never_crash() -> None:
    raw = (
        "From: a@example.com\r\nSubject: x\r\nContent-Type: text/plain; charset=x-nonsense\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + "电费".encode("utf-8")
    assert parse_mail(raw).text == "电费"
    raw = (
        "From: a@example.com\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + "电费".encode("gbk")
    assert parse_mail(raw).text == "电费"  # declared UTF-8, really GBK


@pytest.mark.parametrize(
    "headers, envelope_from, reason",
    [
        ({"Auto_Submitted": "auto-replied"}, None, "auto-submitted:auto-replied"),
        ({"Auto_Submitted": "auto-generated; type=vacation"}, None, "auto-submitted:auto-generated"),
        ({"Precedence": "junk"}, None, "precedence:junk"),
        ({"X_Autoreply": "yes"}, None, "autoreply-header"),
        ({"List_Unsubscribe": "<mailto:u@x>"}, None, "mailing-list"),
        ({}, "", "null-sender"),
        ({"From": "MAILER-DAEMON@mx.example.com"}, None, "daemon-sender"),
        ({"From": "noreply@shop.example.com"}, None, "daemon-sender"),
        ({"From": "95598@powerbot.local"}, None, "own-address"),
        ({"Subject": "自动回复: 电费"}, None, "auto-subject"),
        ({"Subject": "Out of Office: re bill"}, None, "auto-subject"),
    ],
)
def test_auto_replies_bounces_and_loops_are_flagged(headers: dict, envelope_from: str | None, reason: str) -> None:
    m = parse_mail(_mail(**headers).as_bytes(), envelope_from=envelope_from, own_addresses={"95598@powerbot.local"})
    assert m.auto_reason == reason


def test_auto_submitted_no_is_a_person() -> None:
    assert parse_mail(_mail(Auto_Submitted="no").as_bytes(), envelope_from="li@example.com").auto_reason is None


def test_reply_subject() -> None:
    assert reply_subject("电费") == "Re: 电费"
    assert reply_subject("RE: 电费") == "RE: 电费"
    assert reply_subject("回复：电费") == "回复：电费"
    assert reply_subject("", "国家电网95598客服回复") == "国家电网95598客服回复"

