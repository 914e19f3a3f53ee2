"""Customer mail → text: MIME walking, charsets, HTML to text, quoted replies, loop detection.

Only the stdlib ``email`` package. Chinese mail arrives in GB2312/GBK/GB18030 or UTF-8 and
mislabelled GB2312 often contains GBK-only characters, so every GB label is decoded as
GB18030 (a superset). Headers are RFC 2047 decoded the same way.
"""

from __future__ import annotations

import email
import html
import re
from dataclasses import dataclass, field
from email.header import decode_header
from email.message import Message as MimeMessage
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser
from typing import Any

CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "euc-cn": "gb18030",
    "hz-gb-2312": "hz",
    "ks_c_5601-1987": "cp949",
    "unknown-8bit": "utf-8",
    "x-unknown": "utf-8",
}

MAX_TEXT = 4000


def _codec(charset: str | None) -> str:
    cs = (charset or "utf-8").strip().strip('"').lower()
    cs = CHARSET_ALIASES.get(cs, cs)
    try:
        "".encode(cs)
    except LookupError:
        return "utf-8"
    return cs


def decode_bytes(data: bytes, charset: str | None) -> str:
    codec = _codec(charset)
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        pass
    for fallback in ("utf-8", "gb18030"):
        try:
            return data.decode(fallback)
        except UnicodeDecodeError:
            continue
    return data.decode(codec, errors="replace")


def decode_header_value(value: Any) -> str:
    """RFC 2047 words (``=?gbk?B?...?=``) and raw 8-bit headers to one str."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = str(value)
    out: list[str] = []
    try:
        chunks = decode_header(value)
    except Exception:  # noqa: BLE001 - malformed encoded words: keep the raw text
        return value.strip()
    for chunk, charset in chunks:
        if isinstance(chunk, bytes):
            out.append(decode_bytes(chunk, charset))
        else:
            out.append(chunk)
    result = re.sub(r"\s+", " ", "".join(out)).strip()
    return result or value.strip()  # undecodable encoded words: keep the raw text


class _HtmlToText(HTMLParser):
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "blockquote", "hr"}
    SKIP = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._quote = 0
        self._div_depth = 0
        self._quote_div_at = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "blockquote":
            self._quote += 1
        if tag == "div":
            self._div_depth += 1
            cls = dict(attrs).get("class") or ""
            if not self._quote_div_at and ("gmail_quote" in cls or "moz-cite-prefix" in cls):
                self._quote_div_at = self._div_depth  # quoted history: dropped until it closes
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        elif tag == "blockquote" and self._quote:
            self._quote -= 1
        elif tag == "div" and self._div_depth:
            if self._quote_div_at == self._div_depth:
                self._quote_div_at = 0
            self._div_depth -= 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip or self._quote or self._quote_div_at:
            return
        self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _HtmlToText()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # noqa: BLE001 - broken HTML: fall back to tag stripping
        return html.unescape(re.sub(r"<[^>]+>", " ", markup))
    text = "".join(parser.parts).replace("\xa0", " ")
    lines = [re.sub(r"[ \t]+", " ", ln).strip() for ln in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_QUOTE_HEADERS = [
    re.compile(r"^\s*On .{0,300}wrote:\s*$", re.I),
    re.compile(r"^\s*在.{0,300}写道[：:]\s*$"),
    re.compile(r"^\s*-{2,}\s*(Original Message|原始邮件|Forwarded message|转发邮件)\s*-{2,}\s*$", re.I),
    re.compile(r"^\s*-{5,}\s*原始邮件\s*-{5,}\s*$"),
    re.compile(r"^\s*(From|发件人)\s*[:：].+$", re.I),
    re.compile(r"^\s*_{10,}\s*$"),
]


def strip_quoted(text: str) -> str:
    """Keep only what the customer wrote now: cut quoted history and signatures."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith(">"):
            continue
        if any(p.match(line) for p in _QUOTE_HEADERS):
            # "From:" only starts a quote block when a Sent/Date/发送时间 line follows closely.
            if re.match(r"^\s*(From|发件人)\s*[:：]", line, re.I):
                window = "\n".join(lines[i + 1 : i + 5])
                if not re.search(r"^\s*(Sent|Date|发送时间|时间|日期)\s*[:：]", window, re.I | re.M):
                    kept.append(line)
                    continue
            break
        # "On Tue, ... <x@y>\nwrote:" split over two lines (Gmail wraps long ones)
        if re.match(r"^\s*On .{0,300}$", line, re.I) and i + 1 < len(lines) and re.match(r"^\s*.{0,200}wrote:\s*$", lines[i + 1], re.I) and "wrote:" not in line:
            break
        if line.rstrip() == "--":  # signature separator "-- "
            break
        kept.append(line)
    out = "\n".join(kept).strip()
    return re.sub(r"\n{3,}", "\n\n", out)


@dataclass
class ParsedMail:
    sender: str  # lower-cased address
    sender_name: str
    subject: str
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    text: str  # what the customer wrote, quotes stripped
    attachments: list[dict[str, Any]] = field(default_factory=list)
    auto_reason: str | None = None  # why this is an auto-reply / bounce / loop (never answer)
    to: list[str] = field(default_factory=list)


def _ids(value: str) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value or "")


def parse_mail(raw: bytes, *, envelope_from: str | None = None, own_addresses: set[str] | None = None) -> ParsedMail:
    msg = email.message_from_bytes(raw)
    from_name, from_addr = parseaddr(decode_header_value(msg.get("From", "")))
    if not from_addr and envelope_from:
        from_addr = envelope_from
    sender = (from_addr or "").strip().lower()
    subject = decode_header_value(msg.get("Subject", ""))
    mid = _ids(msg.get("Message-ID", ""))
    in_reply_to = _ids(msg.get("In-Reply-To", ""))
    references = _ids(msg.get("References", ""))
    to = [a.lower() for _, a in getaddresses([decode_header_value(v) for v in msg.get_all("To", [])]) if a]

    plain: list[str] = []
    htmls: list[str] = []
    attachments: list[dict[str, Any]] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if disposition == "attachment" or filename or not ctype.startswith("text/"):
            attachments.append(
                {
                    "name": decode_header_value(filename) if filename else None,
                    "type": ctype,
                    "size": len(payload),
                }
            )
            continue
        text = decode_bytes(payload, part.get_content_charset())
        if ctype == "text/html":
            htmls.append(text)
        elif ctype == "text/plain":
            plain.append(text)
    if plain:
        body = "\n".join(plain)
    elif htmls:
        body = "\n".join(html_to_text(h) for h in htmls)
    else:
        body = ""
    text = strip_quoted(body)
    if not text:
        text = re.sub(r"^\s*((re|fw|fwd|回复|答复|转发)\s*[:：]\s*)+", "", subject, flags=re.I).strip()
    return ParsedMail(
        sender=sender,
        sender_name=decode_header_value(from_name),
        subject=subject,
        message_id=mid[0] if mid else None,
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=references,
        text=text[:MAX_TEXT],
        attachments=attachments,
        auto_reason=auto_reason(msg, sender, envelope_from, own_addresses or set()),
        to=to,
    )


_DAEMONS = re.compile(r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounces?|mail-?daemon)([+@.-]|$)", re.I)


def auto_reason(msg: MimeMessage, sender: str, envelope_from: str | None, own: set[str]) -> str | None:
    """Why this mail must never be answered (RFC 3834 and common practice), or None."""
    auto = (msg.get("Auto-Submitted") or "").strip().lower()
    if auto and auto != "no":
        return f"auto-submitted:{auto.split(';')[0]}"
    if any(h in msg for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponse")):
        return "autoreply-header"
    precedence = (msg.get("Precedence") or "").strip().lower()
    if precedence in {"bulk", "junk", "list", "auto_reply"}:
        return f"precedence:{precedence}"
    if msg.get("List-Id") or msg.get("List-Unsubscribe"):
        return "mailing-list"
    if envelope_from is not None and envelope_from.strip() in ("", "<>"):
        return "null-sender"  # bounces use the null reverse-path
    if not sender:
        return "no-sender"
    if _DAEMONS.match(sender.split("@", 1)[0]):
        return "daemon-sender"
    ctype = msg.get_content_type()
    if ctype == "multipart/report" or "delivery-status" in (msg.get("Content-Type") or "").lower():
        return "delivery-report"
    if sender in own:
        return "own-address"
    subject = decode_header_value(msg.get("Subject", "")).lower()
    if re.match(r"^(auto(matic)?[ -]?reply|out of (the )?office|自动回复|undeliverable|delivery status notification|退信|系统退信)", subject):
        return "auto-subject"
    return None
