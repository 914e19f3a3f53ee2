"""Email channel through the real gateway, dialogue engine and core.

Customers' mail is sent with aiosmtplib to our built-in SMTP server; our answers go to a real
aiosmtpd server playing the relay, which records what it receives.
"""

from __future__ import annotations

import asyncio
import base64
import email
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage

import aiohttp
import aiosmtplib
import pytest
import pytest_asyncio
from aiosmtpd.smtp import SMTP
from sqlalchemy import select

from bot import outbox
from bot.app import CHANNELS, OUTBOX, SESSIONMAKER
from bot.models import InboundMessage, OutboxMessage
from channels.base import Reply
from stack import Gateway, run_core, run_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

OUR_ADDRESS = "95598@powerbot.local"


@dataclass
class Relay:
    mails: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    port: int = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.mails.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 2.0.0 queued"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.mails if m["To"] == address]


@dataclass
class Stack:
    gateway: Gateway
    relay: Relay

    @property
    def smtp_port(self) -> int:
        return self.gateway.app[CHANNELS]["email"].bound_port

    async def mail(self, msg: EmailMessage | bytes, sender: str | None = None, rcpt: str = OUR_ADDRESS):
        return await aiosmtplib.send(
            msg, hostname="127.0.0.1", port=self.smtp_port, sender=sender,
            recipients=[rcpt] if isinstance(msg, bytes) or sender else None, start_tls=False, timeout=10,
        )

    async def inbound(self, sender: str) -> list[InboundMessage]:
        async with self.gateway.app[SESSIONMAKER]() as s:
            return list((await s.execute(
                select(InboundMessage).where(InboundMessage.channel == "email", InboundMessage.sender_id == sender)
                .order_by(InboundMessage.id)
            )).scalars())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory, interpreter) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("email")
    relay = Relay()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(relay, hostname="relay"), "127.0.0.1", 0)
    relay.port = server.sockets[0].getsockname()[1]
    try:
        async with run_core(f"sqlite+aiosqlite:///{tmp / 'core.db'}") as core:
            async with run_gateway(
                f"sqlite+aiosqlite:///{tmp / 'bot.db'}", core.url, interpreter, data_dir=tmp,
                smtp_host="127.0.0.1", smtp_port=0, smtp_max_message_bytes=200_000,
                smtp_relay_host="127.0.0.1", smtp_relay_port=relay.port, smtp_relay_starttls=False,
                mail_from=OUR_ADDRESS, notify_quiet_hours="", notify_enabled=False,
            ) as gw:
                yield Stack(gw, relay)
    finally:
        server.close()


def new_address(prefix: str = "cust") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}@example.com"


def customer_mail(sender: str, subject: str, body: str, *, message_id: str | None = None, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"张三 <{sender}>"
    msg["To"] = OUR_ADDRESS
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@example.com>"
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    msg.set_content(body)
    return msg


# --------------------------------------------------------------------------- answers + threading
async def test_mail_is_answered_in_the_same_thread_with_html_and_plain_parts(stack: Stack) -> None:
    addr = new_address()
    first = customer_mail(addr.upper(), "电费查询", "你好，我想查一下电费。", message_id="<c1-" + addr + ">")
    await stack.mail(first)
    await wait_until(lambda: stack.relay.to(addr), timeout=20)
    answer = stack.relay.to(addr)[0]
    assert (await stack.inbound(addr))[0].text == "你好，我想查一下电费。"  # sender lower-cased
    assert answer["Subject"] == "Re: 电费查询"
    assert answer["In-Reply-To"] == first["Message-ID"]
    assert first["Message-ID"] in answer["References"]
    assert answer["Message-ID"].endswith("@powerbot.local>")
    assert OUR_ADDRESS in answer["From"] and answer["Auto-Submitted"] == "auto-replied"
    assert answer.get_content_type() == "multipart/alternative"
    plain = answer.get_body(("plain",)).get_content()
    html = answer.get_body(("html",)).get_content()
    assert plain.strip() and "<p>" in html and "<html" in html
    assert stack.relay.envelopes[-1][0] == OUR_ADDRESS

    # The customer answers from their mail client, quoting us.
    n = len(stack.relay.to(addr))
    second = customer_mail(
        addr, "Re: 电费查询",
        "谢谢\n\n在 2026年11月26日 10:00，国家电网95598客服 <95598@powerbot.local> 写道：\n> " + plain.replace("\n", "\n> "),
        message_id="<c2-" + addr + ">",
        In_Reply_To=answer["Message-ID"], References=f"{first['Message-ID']} {answer['Message-ID']}",
    )
    await stack.mail(second)
    await wait_until(lambda: len(stack.relay.to(addr)) > n, timeout=20)
    rows = await stack.inbound(addr)
    assert rows[-1].text == "谢谢"
    assert rows[-1].payload["in_reply_to"] == answer["Message-ID"]
    assert rows[-1].conversation_id == rows[0].conversation_id == f"email:{addr}"
    follow = stack.relay.to(addr)[-1]
    assert follow["Subject"] == "Re: 电费查询"  # not "Re: Re: ..."
    assert follow["In-Reply-To"] == second["Message-ID"]
    refs = follow["References"].split()
    assert refs == [first["Message-ID"], answer["Message-ID"], second["Message-ID"]]


async def test_duplicate_delivery_of_the_same_mail_is_processed_once(stack: Stack) -> None:
    addr = new_address()
    msg = customer_mail(addr, "停电", "我家停电了吗？")
    await stack.mail(msg)
    await stack.mail(msg)
    await wait_until(lambda: stack.relay.to(addr), timeout=20)
    await asyncio.sleep(1.0)
    assert len(await stack.inbound(addr)) == 1
    async with stack.gateway.app[SESSIONMAKER]() as s:
        rows = (await s.execute(select(OutboxMessage).where(OutboxMessage.recipient_id == addr))).scalars().all()
    assert len(stack.relay.to(addr)) == len(rows)


# --------------------------------------------------------------------------- MIME parsing
async def test_gbk_mail_with_encoded_headers_is_decoded(stack: Stack) -> None:
    addr = new_address("li")
    body = "您好，我是王喆，家里的电表坏了，请派人来修。"  # 喆 is GBK-only: labelled GB2312 anyway
    subject = "电表故障报修"
    raw = (
        f"From: =?gbk?B?{base64.b64encode('王喆'.encode('gbk')).decode()}?= <{addr}>\r\n"
        f"To: {OUR_ADDRESS}\r\n"
        f"Subject: =?gb2312?B?{base64.b64encode(subject.encode('gb2312')).decode()}?=\r\n"
        f"Message-ID: <gbk-{uuid.uuid4().hex}@example.cn>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=gb2312\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{base64.encodebytes(body.encode('gbk')).decode()}"
    ).encode("ascii")
    await stack.mail(raw, sender=addr)
    rows = await wait_until(lambda: stack.inbound(addr), timeout=10)
    assert rows[0].text == body
    assert rows[0].payload["subject"] == subject
    assert rows[0].payload["sender_name"] == "王喆"
    await wait_until(lambda: stack.relay.to(addr), timeout=20)
    assert stack.relay.to(addr)[0]["Subject"] == "Re: 电表故障报修"


async def test_html_only_mail_is_read_as_text(stack: Stack) -> None:
    addr = new_address("html")
    msg = EmailMessage()
    msg["From"] = addr
    msg["To"] = OUR_ADDRESS
    msg["Subject"] = "咨询"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.com>"
    msg.set_content(
        "<html><head><style>p{color:red}</style></head><body><p>请问&nbsp;峰谷电价</p>"
        "<p>怎么计算？</p><script>alert(1)</script></body></html>",
        subtype="html",
    )
    await stack.mail(msg)
    rows = await wait_until(lambda: stack.inbound(addr), timeout=10)
    assert rows[0].text == "请问 峰谷电价\n\n怎么计算？"


async def test_attachments_are_recorded_not_processed(stack: Stack) -> None:
    addr = new_address("att")
    msg = customer_mail(addr, "电表照片", "电表显示异常，照片见附件。")
    photo = b"\xff\xd8\xff\xe0" + b"\x00" * 2000
    msg.add_attachment(photo, maintype="image", subtype="jpeg", filename="电表照片.jpg")
    msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="invoice.pdf")
    await stack.mail(msg)
    rows = await wait_until(lambda: stack.inbound(addr), timeout=10)
    assert rows[0].text == "电表显示异常，照片见附件。"
    assert rows[0].payload["attachments"] == [
        {"name": "电表照片.jpg", "type": "image/jpeg", "size": len(photo)},
        {"name": "invoice.pdf", "type": "application/pdf", "size": len(b"%PDF-1.4 fake")},
    ]


async def test_oversized_mail_is_refused_with_552(stack: Stack) -> None:
    addr = new_address("big")
    msg = customer_mail(addr, "大附件", "见附件")
    msg.add_attachment(b"\x00" * 300_000, maintype="application", subtype="octet-stream", filename="big.bin")
    with pytest.raises(aiosmtplib.SMTPResponseException) as err:
        await stack.mail(msg)
    assert err.value.code == 552
    assert await stack.inbound(addr) == []


# --------------------------------------------------------------------------- never answered
async def test_auto_replies_bounces_and_loops_are_never_answered(stack: Stack) -> None:
    cases: list[tuple[str, EmailMessage | bytes, str | None]] = []
    a = new_address("ooo")
    cases.append((a, customer_mail(a, "自动回复：电费查询", "我正在休假。", Auto_Submitted="auto-replied"), None))
    a = new_address("bulk")
    cases.append((a, customer_mail(a, "Newsletter", "本周优惠", Precedence="bulk"), None))
    a = new_address("xauto")
    cases.append((a, customer_mail(a, "Re: 电费", "收到", X_Autoreply="yes"), None))
    a = new_address("list")
    cases.append((a, customer_mail(a, "[list] hi", "hello", List_Id="<list.example.com>"), None))
    a = "mailer-daemon@example.com"
    bounce = customer_mail(a, "Undelivered Mail Returned to Sender", "This is the mail system at host example.com.")
    cases.append((a, bounce, ""))  # null reverse-path
    a = "postmaster@example.org"
    cases.append((a, customer_mail(a, "Delivery Status Notification (Failure)", "Delivery failed."), None))
    cases.append((OUR_ADDRESS, customer_mail(OUR_ADDRESS, "Re: 电费", "loop"), None))
    for addr, msg, envelope_from in cases:
        if envelope_from is not None:
            await aiosmtplib.send(msg, hostname="127.0.0.1", port=stack.smtp_port, sender=envelope_from,
                                  recipients=[OUR_ADDRESS], start_tls=False, timeout=10)
        else:
            await stack.mail(msg)  # accepted with 250 (no exception)
    # a normal mail sent after them is answered: the worker is alive and had time for the rest
    ok = new_address("ok")
    await stack.mail(customer_mail(ok, "谢谢", "谢谢你们"))
    await wait_until(lambda: stack.relay.to(ok), timeout=20)
    await asyncio.sleep(0.5)
    for addr, _, _ in cases:
        assert await stack.inbound(addr.lower()) == [], addr
        assert stack.relay.to(addr) == [], addr


# --------------------------------------------------------------------------- outbound
async def test_notice_has_its_own_subject_and_no_threading(stack: Stack) -> None:
    addr = new_address("notice")
    reply = Reply(channel="email", recipient_id=addr, text="您所在区域将于明天 09:00-17:00 计划停电。\n详情：https://example.com/o/1",
                  kind="notice", metadata={"subject": "计划停电通知"})
    async with stack.gateway.app[SESSIONMAKER]() as s, s.begin():
        await outbox.enqueue(s, reply, kind="notice", dedupe_key=f"t:{uuid.uuid4().hex}")
    stack.gateway.app[OUTBOX].wake()
    await wait_until(lambda: stack.relay.to(addr), timeout=10)
    mail = stack.relay.to(addr)[0]
    assert mail["Subject"] == "计划停电通知" and mail["In-Reply-To"] is None and mail["References"] is None
    assert mail["Auto-Submitted"] == "auto-generated"
    assert '<a href="https://example.com/o/1">' in mail.get_body(("html",)).get_content()


async def test_refused_recipient_is_dead_lettered(stack: Stack) -> None:
    reply = Reply(channel="email", recipient_id="nobody@example.com", text="测试")
    async with stack.gateway.app[SESSIONMAKER]() as s, s.begin():
        oid = await outbox.enqueue(s, reply, dedupe_key=f"t:{uuid.uuid4().hex}")
    stack.gateway.app[OUTBOX].wake()

    async def dead() -> bool:
        async with stack.gateway.app[SESSIONMAKER]() as s:
            return (await s.get(OutboxMessage, oid)).status == "dead"

    await wait_until(dead, timeout=10)
