"""Email channel: a built-in SMTP server for customer mail and an SMTP relay for answers.

Inbound (on when ``smtp_port`` is set; port 0 picks a free port, see ``bound_port``): an
aiosmtpd ``SMTP`` protocol served by ``loop.create_server`` on ``smtp_host:smtp_port`` inside the
gateway's event loop, ``smtp_max_message_bytes`` as the DATA size limit (552 beyond it). Each
mail is parsed by :mod:`channels.email_parse` and handed to the pipeline as one ``Message``:
``sender_id`` is the lower-cased From address, ``message_id`` the ``Message-ID`` header (a hash
of the raw mail when missing) so a re-delivered mail is a duplicate, and metadata carries
``subject``, ``email_message_id``, ``in_reply_to``, ``references`` and ``attachments`` (name,
type, size — never processed). The SMTP answer is given once the mail is persisted (250), or
451 when it could not be stored, so the sending server retries.

Auto-replies, bounces and loops (``Auto-Submitted`` other than ``no``, ``X-Autoreply``,
``Precedence: bulk/junk/list``, list mail, the null reverse-path, mailer-daemon / postmaster /
no-reply senders, delivery reports, our own address) are accepted with 250 and dropped: never
passed to the pipeline, never answered.

Outbound (on when ``smtp_relay_host`` is set): aiosmtplib to the relay (``smtp_relay_port``,
STARTTLS when ``smtp_relay_starttls``, AUTH when ``smtp_relay_username``), a plain text body
with an HTML alternative, a fresh ``Message-ID``, ``Auto-Submitted: auto-replied`` (RFC 3834, so
other robots do not answer us), and for answers ``Subject: Re: <customer's subject>`` with
``In-Reply-To`` / ``References`` taken from the customer's last mail, so mail clients keep the
thread. Notices (kind ``notice``/``template``) get their own subject
(``metadata["subject"]``) and no threading headers. ``send()`` returns our Message-ID.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import re
from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from typing import Any

import aiosmtplib
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.base import Channel, ChannelContext, DeliveryError, Message, Reply
from channels.email_parse import ParsedMail, parse_mail

log = logging.getLogger("powerbot.channels.email")

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_RE_PREFIX = re.compile(r"^\s*(re|回复|答复)\s*[:：]", re.I)
_URL = re.compile(r"https?://[^\s<>\"'）)]+")


def mask_email(addr: str) -> str:
    local, _, domain = (addr or "").partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def reply_subject(subject: str | None, default: str = "") -> str:
    """The subject of an answer to a mail with ``subject`` (``default`` when it had none)."""
    s = (subject or "").strip()
    if not s:
        return default
    return s if _RE_PREFIX.match(s) else f"Re: {s}"


def render_html(reply: Reply, footer: str) -> str:
    paragraphs = []
    for para in reply.text.strip().split("\n"):
        escaped = html.escape(para)
        escaped = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
        paragraphs.append(escaped)
    body = "<br>\n".join(paragraphs)
    extra = ""
    url = reply.metadata.get("pay_url") or reply.metadata.get("url")
    if url and url not in reply.text:
        u = html.escape(str(url), quote=True)
        extra += f'<p><a href="{u}">{u}</a></p>'
    if reply.buttons:
        extra += "<ul>" + "".join(f"<li>{html.escape(b.title)}</li>" for b in reply.buttons) + "</ul>"
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head>'
        '<body style="font-family:sans-serif;font-size:14px;line-height:1.6">'
        f"<p>{body}</p>{extra}"
        f'<hr><p style="color:#888;font-size:12px">{html.escape(footer)}</p>'
        "</body></html>"
    )


def render_plain(reply: Reply, footer: str) -> str:
    text = reply.text.strip()
    url = reply.metadata.get("pay_url") or reply.metadata.get("url")
    if url and url not in text:
        text += f"\n{url}"
    if reply.buttons:
        text += "\n\n" + "\n".join(f"- {b.title}" for b in reply.buttons)
    return text + f"\n\n--\n{footer}\n"


class _SmtpHandler:
    def __init__(self, channel: EmailChannel) -> None:
        self.channel = channel

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode("utf-8", "surrogateescape")
        return await self.channel.accept(raw, envelope.mail_from, list(envelope.rcpt_tos))


class EmailChannel(Channel):
    name = "email"
    inbound_wait = 0.0

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        s = ctx.settings
        self.mail_from = s.mail_from
        # sender name, default subjects and footer (training_data/domain.yml), rendered once
        self.from_name = ctx.texts.text("utter_email_sender_name", channel=self.name)
        self.reply_subject = ctx.texts.text("utter_email_reply_subject", channel=self.name)
        self.notice_subject = ctx.texts.text("utter_email_notice_subject", channel=self.name)
        self.footer = ctx.texts.text("utter_email_footer", channel=self.name)
        self.own_addresses = {parseaddr(s.mail_from)[1].lower() or s.mail_from.lower()}
        self._server: asyncio.base_events.Server | None = None
        self.bound_port: int | None = None

    def routes(self) -> Iterable[web.AbstractRouteDef]:
        return []

    def readiness(self) -> dict[str, Any]:
        s = self.ctx.settings
        return {
            "on": True,
            "inbound": self._server is not None,
            "outbound": bool(s.smtp_relay_host),
        }

    # ------------------------------------------------------------------ inbound
    async def start(self) -> None:
        s = self.ctx.settings
        if s.smtp_port is None:
            return
        # aiosmtpd logs every envelope address at INFO: customers' addresses stay out of our logs.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        handler = _SmtpHandler(self)
        self._server = await loop.create_server(
            lambda: SMTP(
                handler,
                data_size_limit=s.smtp_max_message_bytes,
                enable_SMTPUTF8=True,
                hostname="powerbot",
                ident="powerbot ESMTP",
            ),
            host=s.smtp_host,
            port=s.smtp_port,
        )
        self.bound_port = self._server.sockets[0].getsockname()[1]
        log.info("SMTP server listening on %s:%s", s.smtp_host, self.bound_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)
            except asyncio.TimeoutError:
                pass
            self._server = None

    async def accept(self, raw: bytes, envelope_from: str | None, rcpt_tos: list[str]) -> str:
        """Handle one received mail; returns the SMTP reply line."""
        try:
            mail = parse_mail(raw, envelope_from=envelope_from, own_addresses=self.own_addresses)
        except Exception:  # noqa: BLE001 - unparseable mail must not crash the server
            log.exception("unparseable mail dropped")
            return "250 2.0.0 OK"
        if mail.auto_reason:
            log.info("mail from %s not answered: %s", mask_email(mail.sender), mail.auto_reason)
            return "250 2.0.0 OK"
        if not _ADDRESS.match(mail.sender):
            log.info("mail without a usable sender address dropped")
            return "250 2.0.0 OK"
        message = self.to_message(mail, raw)
        try:
            receipt = await self.ctx.processor.receive(message, wait=self.inbound_wait)
        except Exception:  # noqa: BLE001
            log.exception("storing mail from %s failed", mask_email(mail.sender))
            return "451 4.3.0 Temporary local problem, please retry"
        log.info("mail from %s accepted duplicate=%s", mask_email(mail.sender), receipt.duplicate)
        return "250 2.0.0 Message accepted"

    def to_message(self, mail: ParsedMail, raw: bytes) -> Message:
        mid = mail.message_id or f"<sha256-{hashlib.sha256(raw).hexdigest()}@powerbot.invalid>"
        dedupe = mid if len(mid) <= 200 else "sha256:" + hashlib.sha256(mid.encode()).hexdigest()
        metadata: dict[str, Any] = {
            "subject": mail.subject[:500],
            "email_message_id": mid[:998],
            "in_reply_to": mail.in_reply_to,
            "references": mail.references[-20:],
            "attachments": mail.attachments[:50],
        }
        if mail.sender_name:
            metadata["sender_name"] = mail.sender_name[:200]
        return Message(channel=self.name, sender_id=mail.sender, text=mail.text, message_id=dedupe, metadata=metadata)

    # ------------------------------------------------------------------ outbound
    async def _last_inbound(self, address: str) -> dict[str, Any] | None:
        last = await self.ctx.store.last_inbound(self.name, address)
        return dict(last) if last is not None else None

    async def build(self, reply: Reply) -> EmailMessage:
        address = parseaddr(reply.recipient_id)[1].strip().lower()
        if not _ADDRESS.match(address):
            raise DeliveryError("recipient is not an email address", retryable=False, code="bad_recipient")
        notice = reply.kind in ("notice", "template")
        msg = EmailMessage()
        msg["From"] = formataddr((self.from_name, self.mail_from))
        msg["To"] = address
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        domain = self.mail_from.rsplit("@", 1)[-1] or "powerbot.local"
        msg["Message-ID"] = make_msgid(domain=domain)
        msg["Auto-Submitted"] = "auto-generated" if notice else "auto-replied"
        subject = reply.metadata.get("subject")
        if not notice:
            last = await self._last_inbound(address)
            if last:
                customer_mid = last.get("email_message_id")
                refs = [r for r in (last.get("references") or []) if isinstance(r, str)]
                if customer_mid and not str(customer_mid).startswith("<sha256-"):
                    msg["In-Reply-To"] = customer_mid
                    msg["References"] = " ".join([*refs[-19:], customer_mid])
                subject = subject or reply_subject(last.get("subject"), self.reply_subject)
        msg["Subject"] = subject or (self.notice_subject if notice else self.reply_subject)
        msg.set_content(render_plain(reply, self.footer), cte="base64")
        msg.add_alternative(render_html(reply, self.footer), subtype="html", cte="base64")
        return msg

    async def send(self, reply: Reply) -> str | None:
        s = self.ctx.settings
        if not s.smtp_relay_host:
            raise DeliveryError("no SMTP relay configured", retryable=False, code="no_relay")
        msg = await self.build(reply)
        try:
            await aiosmtplib.send(
                msg,
                hostname=s.smtp_relay_host,
                port=s.smtp_relay_port,
                start_tls=s.smtp_relay_starttls,
                username=s.smtp_relay_username,
                password=s.smtp_relay_password.get_secret_value() if s.smtp_relay_password else None,
                timeout=s.smtp_relay_timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [getattr(r, "code", 450) for r in exc.recipients]
            permanent = bool(codes) and all(c >= 500 for c in codes)
            raise DeliveryError(f"relay refused the recipient ({codes})", retryable=not permanent,
                                code="recipient_refused") from None
        except aiosmtplib.SMTPResponseException as exc:
            permanent = exc.code >= 500 and exc.code not in (530, 535)
            raise DeliveryError(f"relay answered {exc.code}", retryable=not permanent, code=f"smtp_{exc.code}") from None
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            raise DeliveryError(f"relay unreachable: {type(exc).__name__}", retryable=True, code="unreachable") from None
        log.info("mail sent to %s", mask_email(msg["To"]))
        return str(msg["Message-ID"])


def from_context(ctx: ChannelContext) -> EmailChannel | None:
    s = ctx.settings
    if s.smtp_port is None and not s.smtp_relay_host:
        return None
    return EmailChannel(ctx)
