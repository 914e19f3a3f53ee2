"""SMS channel: an HTTP SMS provider (inbound webhook, outbound API, delivery reports).

Provider contract (what a real aggregator is configured to do, and what the tests play):

- Inbound ``POST /channels/sms``, form-encoded or JSON, fields ``from``, ``to``, ``text``,
  ``message_id`` (also ``id``/``msg_id``) and ``timestamp`` (unix seconds or ISO 8601).
  Header ``X-Signature``: hex HMAC-SHA256 of the raw body with the shared ``sms_secret``.
  The timestamp lives inside the signed body; a message older (or newer) than 5 minutes is
  refused as a replay; a timestamp that is not a finite time ("nan", "inf", "1e400", text) is
  refused with 400. Forged / missing signature → 401/403, nothing stored. Every refusal is an
  RFC 9457 problem document (``application/problem+json``).
- A concatenated message may come as its parts, each with ``concat_ref`` (the same for all
  parts of one message), ``part`` (1-based) and ``parts`` (at most ``MAX_INBOUND_PARTS``); the
  parts are stored as they come and the message goes to the dialogue once all are in, its text
  rebuilt from the parts' UTF-16 code units (an emoji split between two parts is whole again).
  A message still missing a part after ``assembly_wait`` seconds (120) goes on without it
  (timed by the process that stored a part: parts left waiting across a restart stay stored,
  kind ``sms_part``, until a later part of the same message arrives or retention purges them).
- Text is cleaned at this edge (``clean_text``): a lone surrogate becomes U+FFFD, NUL and other
  control characters (but tab and newline) are dropped. An id with such a character, or a text
  with nothing valid left, is refused with 400 and nothing is stored.
- Delivery reports ``POST /channels/sms/status`` (signed the same way): ``message_id`` (the
  provider's id of one segment), ``status`` (``delivered``/``failed``/...), ``timestamp``.
- Outbound ``POST {sms_api_base_url}/messages`` JSON ``{to, from, text, client_ref, part,
  parts, timestamp}`` with ``X-Api-Key`` and the same ``X-Signature`` over our body; the
  provider answers ``{"message_id": "..."}`` (or ``id``). ``client_ref`` is the same on every
  attempt of one outbox row (from its delivery key): a provider that already accepted a
  ``client_ref`` answers with the same message id and sends nothing again. (A provider without
  that idempotency sends a message twice when its answer to an accepted request was lost:
  at-least-once.)
- Outbound batch ``POST {sms_api_base_url}/messages/batch`` JSON ``{from, timestamp, messages:
  [{to, text, client_ref, part, parts}, ...]}`` (at most ``batch_size`` items, default 100, max
  200 — Tencent SendSms takes 200 numbers a call, Aliyun SendBatchSms 100), signed the same way;
  the provider answers ``{"results": [{"client_ref", "message_id"} | {"client_ref", "error",
  "retryable"}, ...]}``: some numbers may be refused while the others are accepted. The outbox
  worker delivers through ``send_batch`` (mass notices and replies alike); ``send()`` (one call
  per segment) stays for direct use.

Segments: Chinese text is sent as UCS-2. A message of at most 70 UCS-2 code units is one SMS;
a longer one is split into parts of at most 67 code units (3 units go to the concatenation
header), never splitting a surrogate pair, at most ``MAX_PARTS`` parts (the rest is cut with
"…"). Text made only of GSM-7 characters (plain English) uses 160 / 153 septets instead. Each part is one API call with ``part``/``parts``. ``send()`` returns a batch reference
(our ``client_ref`` prefix) that becomes the outbox row's ``provider_id``; ``sms_parts`` maps
every provider segment id to it so delivery reports update the outbox row (through
``ChannelStore.delivery_report``): ``delivered`` when every part is delivered, ``failed`` as
soon as one part fails.

Opt-out: a message that is an opt-out command — TD / 退订 / 取消订阅 / 我要退订短信 / 不要再发短信了
/ STOP / UNSUBSCRIBE / opt out..., compared after NFKC, case folding and dropping everything but
letters and digits (so ``ＴＤ``, ``T D`` and ``td。`` count) — records the number in
``sms_opt_outs`` at once and confirms (in English for an English command); START / 恢复
re-subscribes. A sentence that merely mentions the word ("怎么退订电子账单") goes to the dialogue. Notices (``kind`` notice/template) to an opted-out number fail with
``DeliveryError(retryable=False, code="opted_out")`` unless ``urgent`` (safety notices) or
``metadata["transactional"]``. Answers to the customer's own messages still go out.

Rate limits per number (in-process sliding 60 s window): inbound ``sms_inbound_per_minute``
(over it: one polite refusal per minute, further messages dropped), outbound
``sms_outbound_per_minute`` (over it: retryable ``DeliveryError(code="rate_limited")``).
The counters are per gateway process; with several replicas each enforces its own limit.
They cost O(1) per message and their memory is bounded (idle numbers are forgotten).

Send path cost (mass notices): the outbox hands ``send_batch()`` up to ``batch_size`` replies
at once: one opt-out check for the group (``OptOutCache.among``), the in-memory per-number
limiter, one signed batch request per ``batch_size`` segments (several in flight), and the
segment records of the whole group in one multi-row INSERT (``unnest`` arrays on PostgreSQL).
``send()`` does no per-message database round trip of its own either.
Opt-outs come from ``OptOutCache`` (a snapshot of ``sms_opt_outs`` reused for
``OPT_OUT_TTL_SECONDS``; STOP/START handled by this process apply at once; another replica's
within the TTL; ``is_opted_out()`` / ``opted_out_among()`` below still read the table).
Segment records go through ``PartWriter``: one multi-row INSERT for all concurrent
sends, committed before ``send()`` returns the batch reference; a delivery report that overtakes
that write waits for it, and a report for an id not (yet) known is retried a few times.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import re
import time
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any, ClassVar

import aiohttp
from aiohttp import web
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.base import DELIVERY_KEY, Channel, ChannelContext, DeliveryError, Message, Purge, Reply
from channels.base import clean_text as clean_message_text
from channels.sms_store import PURGE_PARTS, SmsOptOut, SmsPart
from common.db import unnest_rows
from common.pii import mask_phone
from common.phones import sms_number
from common.ratelimit import Limiter

log = logging.getLogger("powerbot.channels.sms")

MAX_SKEW_SECONDS = 300
SINGLE_UNITS = 70
PART_UNITS = 67
MAX_PARTS = 8
MAX_TEXT = 1000
OPT_OUT_TTL_SECONDS = 5.0  # how long another replica's STOP may take to reach this process
RATE_PERIOD_SECONDS = 60  # the per-number limits (POWERBOT_SMS_INBOUND_PER_MINUTE, ..._OUTBOUND_...) count a minute
MAX_REPORT_RETRIES = 1000  # delivery reports for not-yet-stored segments waiting at once
MAX_INBOUND_PARTS = 16  # parts of one concatenated inbound message (16 x 67 units > MAX_TEXT)
MAX_ID = 190  # provider ids (message_id, concat_ref): printable, at most this long
ASSEMBLY_WAIT_SECONDS = 120.0  # a concatenated message missing a part is handed on after this
ASSEMBLY_WINDOW = timedelta(hours=1)  # parts received longer ago belong to an earlier message

# Opt-out and re-subscribe commands, matched against the whole message reduced by ``_compact``
# (NFKC, case-folded, letters and digits only: "ＴＤ", "T D" and "td。" are all "td"). A message
# that only mentions the word ("我想问下怎么退订电子账单") is an enquiry for the dialogue.
STOP_ZH = re.compile(
    r"(?:我要|我想|请|请帮我|帮我|麻烦)?"
    r"(?:td|退订|取消订阅|取消短信|拒收|不要再发|别再发|不要再给我发|别再给我发)(?:td|退订)?"
    r"(?:短信|信息|消息|通知|短信通知|所有短信|全部短信)?(?:了|吧|谢谢)?"
)
STOP_EN = re.compile(r"(?:please)?(?:stop|unsubscribe|unsub|optout)(?:me|all|sms|texts?|messages?)?(?:please|thanks|thankyou)?")
START_ZH = re.compile(r"(?:恢复|重新订阅)(?:订阅)?(?:短信)?(?:通知)?")
START_EN = re.compile(r"(?:please)?(?:start|unstop|resubscribe)(?:please|thanks|thankyou)?")

# what the channel itself says: responses of training_data/domain.yml (``ChannelContext.texts``)
TEXT_NAMES = {"stopped": "utter_sms_unsubscribed", "started": "utter_sms_resubscribed",
              "rate_limited": "utter_rate_limited"}

_CJK = re.compile(r"[\u4e00-\u9fff]")


# --------------------------------------------------------------------------- helpers
def sign(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of the raw body: the ``X-Signature`` header both ways."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, signature: str | None) -> bool:
    if not signature:
        return False
    return hmac.compare_digest(sign(secret, body), signature.strip().lower())


GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXT = set("^{}\\[~]|€\f")
GSM7_SINGLE, GSM7_PART = 160, 153


def ucs2_units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def gsm7_units(ch: str) -> int:
    return 2 if ch in GSM7_EXT else 1


GSM7_ALL = frozenset(GSM7_BASIC | GSM7_EXT)


def is_gsm7(text: str) -> bool:
    return GSM7_ALL.issuperset(text)


def split_segments(text: str, *, max_parts: int = MAX_PARTS) -> list[str]:
    """Split into SMS parts.

    Text containing any non-GSM-7 character (all Chinese text) is UCS-2: ≤70 units → one part,
    else parts of ≤67 units. Pure GSM-7 text (plain English): ≤160 septets → one part, else
    parts of ≤153 (extension characters count twice).
    """
    gsm = is_gsm7(text)
    units = gsm7_units if gsm else ucs2_units
    single, per_part = (GSM7_SINGLE, GSM7_PART) if gsm else (SINGLE_UNITS, PART_UNITS)
    if gsm:
        total = len(text) + sum(1 for c in text if c in GSM7_EXT)
    else:  # UCS-2 code units, counted in C
        total = len(text.encode("utf-16-le", "surrogatepass")) // 2
    if total <= single:
        return [text]
    parts: list[str] = []
    cur: list[str] = []
    used = 0
    for ch in text:
        u = units(ch)
        if used + u > per_part:
            parts.append("".join(cur))
            cur, used = [], 0
        cur.append(ch)
        used += u
    if cur:
        parts.append("".join(cur))
    if len(parts) > max_parts:
        parts = parts[:max_parts]
        last = parts[-1]
        while sum(units(c) for c in last) + 1 > per_part:  # "…" is UCS-2 (1 unit)
            last = last[:-1]
        parts[-1] = last + "…"
    return parts


def _compact(text: str) -> str:
    """NFKC, case-folded, letters and digits only: what a keyword is matched against."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in folded if unicodedata.category(c)[0] in "LN")


def keyword_of(text: str) -> str | None:
    """``stop`` / ``start`` when the whole message is an opt-out / re-subscribe command."""
    t = _compact(text)
    if STOP_ZH.fullmatch(t) or STOP_EN.fullmatch(t):
        return "stop"
    if START_ZH.fullmatch(t) or START_EN.fullmatch(t):
        return "start"
    return None


def _lang_for(text: str) -> str:
    t = _compact(text)
    if STOP_EN.fullmatch(t) or START_EN.fullmatch(t):
        return "en"
    if _CJK.search(text) or not re.search(r"[a-zA-Z]{3,}", text):
        return "zh"
    return "en"


# C0 and C1 control characters but tab and newline (carriage returns become newlines first)


def clean_text(text: str) -> str:
    """Text a provider sent, made storable: surrogate pairs joined into their character, a lone
    surrogate (half of a split emoji) replaced by U+FFFD, line ends made ``\\n``, NUL and other
    control characters dropped."""
    return clean_message_text(text.replace("\r\n", "\n").replace("\r", "\n"))


def _has_content(text: str) -> bool:
    """Whether cleaned text holds anything but replacement characters and blanks."""
    return any(c != "\ufffd" and not c.isspace() for c in text)


def _valid_id(value: str) -> bool:
    """A provider id we store and look up as it is: printable (no surrogate, no control
    character), at most ``MAX_ID`` characters. An id cannot be repaired without becoming
    another message's id."""
    return 0 < len(value) <= MAX_ID and value.isprintable()


def parse_timestamp(value: Any) -> float | None:
    """Unix seconds (milliseconds tolerated) or ISO 8601 as a finite unix time; None for
    anything else (missing, not a time, "nan", "inf", "1e400", a boolean...)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        v = None
    if v is not None:
        if not math.isfinite(v):
            return None
        return v / 1000.0 if v > 1e11 else v  # milliseconds tolerated
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


class OptOutCache:
    """In-process view of ``sms_opt_outs`` for the send path (the table stays the truth).

    The whole (small) table is loaded in one query and reused for ``ttl`` seconds; concurrent
    senders share one refresh. STOP / START handled by this process are applied at once as
    overrides (kept until a snapshot taken after them replaces them), so the number that sent
    STOP gets no further notice from this process; another replica picks it up within ``ttl``.
    A table larger than ``max_rows`` is not cached: lookups then go to the database.
    """

    def __init__(self, ttl: float = 5.0, max_rows: int = 200_000) -> None:
        self.ttl = ttl
        self.max_rows = max_rows
        self._snapshot: set[str] | None = None
        self._too_big = False
        self._loaded_at = float("-inf")
        self._overrides: dict[str, tuple[bool, float]] = {}
        self._refreshing: asyncio.Future[None] | None = None

    def record(self, phone: str, opted_out: bool) -> None:
        """This process committed a STOP (True) or START (False) for ``phone``."""
        self._overrides[phone] = (opted_out, time.monotonic())

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def contains(self, sessionmaker: async_sessionmaker[AsyncSession], phone: str) -> bool:
        o = self._overrides.get(phone)
        if o is not None:
            return o[0]
        if time.monotonic() - self._loaded_at > self.ttl:
            await self._refresh(sessionmaker)
            o = self._overrides.get(phone)
            if o is not None:
                return o[0]
        if self._too_big or self._snapshot is None:
            return await is_opted_out(sessionmaker, phone)
        return phone in self._snapshot

    async def among(self, sessionmaker: async_sessionmaker[AsyncSession], phones: Iterable[str]) -> set[str]:
        """The opted-out subset of ``phones`` (E.164): one snapshot check, or one ``IN`` query
        per 500 numbers when the table is too big to cache."""
        phones = list(phones)
        if not phones:
            return set()
        if time.monotonic() - self._loaded_at > self.ttl:
            await self._refresh(sessionmaker)
        overrides = self._overrides
        if self._too_big or self._snapshot is None:
            unknown = [p for p in phones if p not in overrides]
            found = await opted_out_among(sessionmaker, unknown) if unknown else set()
        else:
            snap = self._snapshot
            found = {p for p in phones if p in snap}
        if overrides:
            for p in phones:
                o = overrides.get(p)
                if o is not None:
                    if o[0]:
                        found.add(p)
                    else:
                        found.discard(p)
        return found

    async def _refresh(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._load(sessionmaker))
            self._refreshing.add_done_callback(self._refresh_done)
        await asyncio.shield(self._refreshing)

    def _refresh_done(self, fut: asyncio.Future[None]) -> None:
        self._refreshing = None
        if not fut.cancelled():
            fut.exception()  # retrieved: the awaiting senders see it

    async def _load(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        started = time.monotonic()
        async with sessionmaker() as session:
            rows = (await session.execute(select(SmsOptOut.phone).limit(self.max_rows + 1))).scalars().all()
        if len(rows) > self.max_rows:
            self._snapshot, self._too_big = None, True
        else:
            self._snapshot, self._too_big = set(rows), False
        # overrides committed before this snapshot's query are in it now
        self._overrides = {k: v for k, v in self._overrides.items() if v[1] >= started}
        self._loaded_at = started


class PartWriter:
    """Group commit of ``sms_parts`` rows: one multi-row INSERT per flush for all concurrent sends.

    ``add()`` returns once the rows are committed, so a batch reference handed to the outbox
    always has its segments stored; while one flush runs, the next sends' rows accumulate.
    A delivery report for a segment still being written waits for its flush (``wait_for``).
    """

    MAX_ROWS = 5000
    RETRIES = (0.05, 0.2, 1.0)

    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] = []
        self._waiter: asyncio.Future[None] | None = None
        self._by_id: dict[str, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None

    async def add(self, sessionmaker: async_sessionmaker[AsyncSession], rows: list[dict[str, Any]]) -> None:
        self._sessionmaker = sessionmaker
        loop = asyncio.get_running_loop()
        if self._waiter is None:
            self._waiter = loop.create_future()
        fut = self._waiter
        self._pending.extend(rows)
        for r in rows:
            self._by_id[r["provider_id"]] = fut
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        await asyncio.shield(fut)

    async def wait_for(self, provider_id: str) -> bool:
        """Wait until a segment this process is writing is stored; False if it is not one."""
        fut = self._by_id.get(provider_id)
        if fut is None:
            return False
        try:
            await asyncio.shield(fut)
        except Exception:  # noqa: BLE001 - reported by the sender
            pass
        return True

    async def flush(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        await asyncio.sleep(0)  # let the sends finishing in this loop tick join the first flush
        while self._pending:
            rows, self._pending = self._pending, []
            fut, self._waiter = self._waiter, None
            assert fut is not None
            try:
                await self._write(rows)
            except Exception as exc:  # noqa: BLE001
                log.error("storing %d sms segment record(s) failed: %s", len(rows), type(exc).__name__)
                if not fut.done():
                    fut.set_exception(exc)
                    fut.exception()
            else:
                if not fut.done():
                    fut.set_result(None)
            finally:
                for r in rows:
                    if self._by_id.get(r["provider_id"]) is fut:
                        del self._by_id[r["provider_id"]]

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        assert self._sessionmaker is not None
        for attempt, delay in enumerate((0.0, *self.RETRIES)):
            if delay:
                await asyncio.sleep(delay)
            try:
                async with self._sessionmaker() as session, session.begin():
                    postgres = session.bind.dialect.name == "postgresql"
                    for i in range(0, len(rows), self.MAX_ROWS):
                        chunk = rows[i : i + self.MAX_ROWS]
                        if postgres and len(chunk) > 1:
                            await session.execute(_unnest_insert(chunk))
                        else:
                            await session.execute(insert(SmsPart), chunk)
                return
            except IntegrityError:
                # a provider id already stored (provider reused an id): store the others one by one
                await self._write_each(rows)
                return
            except Exception:  # noqa: BLE001
                if attempt == len(self.RETRIES):
                    raise

    async def _write_each(self, rows: list[dict[str, Any]]) -> None:
        assert self._sessionmaker is not None
        async with self._sessionmaker() as session, session.begin():
            for r in rows:
                try:
                    async with session.begin_nested():
                        await session.execute(insert(SmsPart), [r])
                except IntegrityError:
                    log.warning("sms segment id reused by the provider; keeping the first record")


_PART_COLS = ("provider_id", "batch_ref", "part", "parts", "status", "error", "created_at", "updated_at")


def _unnest_insert(rows: list[dict[str, Any]]) -> Any:
    """``INSERT INTO sms_parts (...) SELECT unnest(:a), unnest(:b) ...`` — one statement with one
    array per column for a PostgreSQL group write (what a multi-row VALUES does, without
    thousands of bind parameters)."""
    table = SmsPart.__table__
    return insert(table).from_select(list(_PART_COLS), unnest_rows(table, {c: [r[c] for r in rows] for c in _PART_COLS}))


async def is_opted_out(sessionmaker: async_sessionmaker[AsyncSession], phone: str) -> bool:
    """Whether the number sent STOP (usable by the notification pipeline without the channel)."""
    e164 = sms_number(phone) or phone
    async with sessionmaker() as session:
        row = await session.get(SmsOptOut, e164)
    return row is not None


async def opted_out_among(sessionmaker: async_sessionmaker[AsyncSession], phones: Iterable[str]) -> set[str]:
    """The subset of ``phones`` (E.164) that opted out — one query for a batch of notices."""
    wanted = [sms_number(p) or p for p in phones]
    out: set[str] = set()
    async with sessionmaker() as session:
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            rows = await session.execute(select(SmsOptOut.phone).where(SmsOptOut.phone.in_(chunk)))
            out.update(rows.scalars())
    return out


# --------------------------------------------------------------------------- channel
def _problem(status: int, code: str, detail: str) -> web.Response:
    """An RFC 9457 problem document (``error`` repeats the code under the key earlier answers used)."""
    doc = {"type": f"urn:powerbot:sms:problem:{code}", "title": HTTPStatus(status).phrase, "status": status,
           "detail": detail, "error": code}
    return web.json_response(doc, status=status, content_type="application/problem+json")


def _part_key(phone: str, ref: str, parts: int, part: int) -> str:
    """Dedupe key of one stored part of a concatenated message (part 0: the whole group)."""
    return f"sms-part:{phone}:{ref}:{parts}:{part}"


def _small_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) <= 3:
        return int(value)
    return None


def _part_of(data: dict[str, Any]) -> tuple[str, int, int] | web.Response | None:
    """``(concat_ref, part, parts)`` of one part of a concatenated message; None for a whole
    message (no part fields, or part 1 of 1); a 400 problem for part fields that make no sense."""
    if all(k not in data for k in ("concat_ref", "part", "parts")):
        return None
    part, parts = _small_int(data.get("part")), _small_int(data.get("parts"))
    if part is None or parts is None or not 1 <= part <= parts <= MAX_INBOUND_PARTS:
        return _problem(400, "bad_part", f"'part' and 'parts' must be whole numbers, 1 <= part <= parts <= {MAX_INBOUND_PARTS}")
    if parts == 1:
        return None
    ref = data.get("concat_ref")
    ref = str(ref) if isinstance(ref, (str, int)) and not isinstance(ref, bool) else ""
    if not _valid_id(ref) or len(ref) > 64:
        return _problem(400, "bad_concat_ref", "'concat_ref' is required for a part: at most 64 printable characters")
    return ref, part, parts


class SmsChannel(Channel):
    name = "sms"
    purges: ClassVar[Sequence[Purge]] = (PURGE_PARTS,)
    assembly_wait = ASSEMBLY_WAIT_SECONDS  # seconds a concatenated message waits for a missing part
    proves = frozenset({"phone"})  # the provider signs the inbound request naming the sender's number

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        s = ctx.settings
        self.fixed_texts = {key: {lang: ctx.texts.text(name, lang=lang, channel=self.name) for lang in ("zh", "en")}
                      for key, name in TEXT_NAMES.items()}
        assert s.sms_api_base_url and s.sms_secret
        self.base_url = s.sms_api_base_url.rstrip("/")
        self.secret = s.sms_secret.get_secret_value()
        self.api_key = s.sms_api_key or ""
        self.sender = s.sms_sender
        self.timeout = aiohttp.ClientTimeout(total=s.sms_timeout_seconds)
        # per-number limits, counted in this process (common.ratelimit, as the gateway's own)
        self.limiter = Limiter()
        self.inbound_per_minute = s.sms_inbound_per_minute
        self.outbound_per_minute = s.sms_outbound_per_minute
        self._refused: OrderedDict[str, float] = OrderedDict()  # phone -> when last told it is over the limit
        self._tasks: set[asyncio.Task[None]] = set()
        self._assembling: set[str] = set()  # concatenated messages waiting for a missing part
        self.opt_outs = OptOutCache(ttl=OPT_OUT_TTL_SECONDS)
        self.parts = PartWriter()
        self._messages_url = f"{self.base_url}/messages"
        self._batch_url = f"{self.base_url}/messages/batch"
        # segments per provider batch request (Tencent SendSms: 200 numbers, Aliyun SendBatchSms: 100)
        self.batch_size = s.sms_batch_size
        self.max_batch = self.batch_size  # replies the outbox hands send_batch at once

    # ------------------------------------------------------------------ routes
    def routes(self) -> Iterable[web.AbstractRouteDef]:
        return [
            web.post("/channels/sms", self.inbound),
            web.post("/channels/sms/status", self.status_report),
        ]

    def readiness(self) -> dict[str, Any]:
        return {"on": True, "provider": self.base_url.split("://", 1)[-1].split("/", 1)[0]}

    async def _authenticated(self, request: web.Request) -> tuple[bytes, dict[str, Any]] | web.Response:
        body = await request.read()
        signature = request.headers.get("X-Signature")
        peer = request.remote
        if not signature:
            log.warning("sms %s: missing signature from %s", request.path, peer)
            return _problem(401, "missing_signature", "the X-Signature header is required")
        if not verify_signature(self.secret, body, signature):
            log.warning("sms %s: forged signature from %s (%d bytes)", request.path, peer, len(body))
            return _problem(403, "bad_signature", "X-Signature does not match the body")
        data = self._parse_body(request, body)
        if data is None:
            return _problem(400, "bad_request", "the body must be a UTF-8 form or a JSON object")
        ts = parse_timestamp(data.get("timestamp"))
        if ts is None:
            return _problem(400, "bad_timestamp", "'timestamp' is required: unix seconds or ISO 8601, a finite time")
        if abs(time.time() - ts) > MAX_SKEW_SECONDS:
            log.warning("sms %s: stale timestamp from %s (skew %.0fs)", request.path, peer, time.time() - ts)
            return _problem(403, "stale_timestamp", f"'timestamp' is more than {MAX_SKEW_SECONDS} seconds away from now")
        return body, data

    @staticmethod
    def _parse_body(request: web.Request, body: bytes) -> dict[str, Any] | None:
        ctype = request.content_type or ""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if "json" in ctype or (not ctype.startswith("application/x-www-form") and text.lstrip().startswith("{")):
            try:
                data = json.loads(text)
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
        from urllib.parse import parse_qs

        try:
            qs = parse_qs(text, keep_blank_values=True, strict_parsing=False)
        except ValueError:
            return None
        return {k: v[0] for k, v in qs.items()}

    async def inbound(self, request: web.Request) -> web.Response:
        """A customer's SMS. Every text field is cleaned here, at the edge (``clean_text``): what
        cannot be repaired (an id with a broken character, a text with no valid character left)
        is refused with a 400 problem and nothing is stored."""
        auth = await self._authenticated(request)
        if isinstance(auth, web.Response):
            return auth
        _, data = auth
        phone = sms_number(data.get("from"))
        raw = data.get("text")
        if raw is None:
            raw = data.get("content", data.get("body"))
        message_id = data.get("message_id") or data.get("id") or data.get("msg_id")
        if phone is None:
            return _problem(400, "bad_sender", "'from' must be a phone number")
        if not isinstance(raw, str):
            return _problem(400, "bad_text", "'text' must be a string")
        if not message_id or not _valid_id(str(message_id)):
            return _problem(400, "bad_message_id",
                            f"'message_id' is required: at most {MAX_ID} printable characters")
        message_id = str(message_id)
        metadata = {"to": clean_text(str(data.get("to") or ""))[:200],
                    "provider_timestamp": clean_text(str(data.get("timestamp")))[:64]}
        part = _part_of(data)
        if isinstance(part, web.Response):
            return part
        if part is not None:
            return await self._inbound_part(phone, raw, message_id, metadata, *part)
        text = clean_text(raw)
        if raw and not _has_content(text):
            return _problem(400, "invalid_text", "'text' holds no valid character (broken encoding)")
        return await self._accept(phone, text[:MAX_TEXT], message_id, metadata)

    async def _accept(self, phone: str, text: str, message_id: str, metadata: dict[str, Any]) -> web.Response:
        """A whole, clean customer message: an opt-out command, or one for the dialogue."""
        if await self._seen(phone, message_id):
            return web.json_response({"status": "duplicate"})

        keyword = keyword_of(text)
        if keyword is not None:
            await self._handle_keyword(keyword, phone, text, message_id)
            return web.json_response({"status": "ok"})

        if not await self.limiter.hit("in:" + phone, self.inbound_per_minute, RATE_PERIOD_SECONDS):
            await self._refuse_rate_limited(phone, text)
            return web.json_response({"status": "rate_limited"})

        message = Message(channel=self.name, sender_id=phone, text=text, message_id=message_id, metadata=metadata)
        receipt = await self.ctx.processor.receive(message, wait=0)
        log.info("sms inbound from %s duplicate=%s", mask_phone(phone), receipt.duplicate)
        return web.json_response({"status": "duplicate" if receipt.duplicate else "ok"})

    # ------------------------------------------------------------------ concatenated messages
    async def _inbound_part(self, phone: str, raw: str, message_id: str, metadata: dict[str, Any],
                            ref: str, part: int, parts: int) -> web.Response:
        """Store one part of a concatenated message; hand the message on once every part is in.

        A part is kept in the bot's store (``ChannelStore.store_part``: the dialogue never sees
        it) keyed by number, reference and part, holding its exact UTF-16 code units, so a
        surrogate pair split across two parts becomes its character again. A
        retry of a part is a duplicate; a part from an earlier message that used the same
        reference is replaced. A message still missing a part after ``assembly_wait`` seconds
        is handed on with what arrived (``sms_parts_missing`` in its metadata).
        """
        key = _part_key(phone, ref, parts, part)
        raw = raw[:MAX_TEXT]
        payload = {**metadata, "sms_part": {"ref": ref, "part": part, "parts": parts, "message_id": message_id,
                                             "units": raw.encode("utf-16-le", "surrogatepass").hex()}}
        stored = Message(channel=self.name, sender_id=phone, text=clean_text(raw), message_id=key, kind="sms_part",
                         metadata=payload)
        duplicate = await self.ctx.store.store_part(
            stored, retry_of=lambda earlier: (earlier.get("sms_part") or {}).get("message_id") == message_id)
        # read after the commit: of two parts stored at once, the later one sees both
        if not await self._assemble(phone, ref, parts, final=False):
            group = _part_key(phone, ref, parts, 0)
            if group not in self._assembling and len(self._tasks) < MAX_REPORT_RETRIES:
                self._assembling.add(group)
                self._spawn(self._assemble_later(group, phone, ref, parts))
        return web.json_response({"status": "duplicate" if duplicate else "ok"})

    async def _assemble(self, phone: str, ref: str, parts: int, *, final: bool) -> bool:
        """Hand on the message of these parts if every part is stored (or ``final``, with the
        parts there are); False while parts are missing."""
        keys = [_part_key(phone, ref, parts, i) for i in range(1, parts + 1)]
        since = datetime.now(timezone.utc) - ASSEMBLY_WINDOW
        payloads = await self.ctx.store.parts(self.name, phone, keys, since)
        got = {p["sms_part"]["part"]: p for p in payloads}
        missing = [i for i in range(1, parts + 1) if i not in got]
        if missing and not final:
            return False
        if not got:
            return True
        ordered = [got[i] for i in sorted(got)]
        units = b"".join(bytes.fromhex(p["sms_part"]["units"]) for p in ordered)
        text = clean_text(units.decode("utf-16-le", "surrogatepass"))[:MAX_TEXT]
        # the same id for the same parts, whichever request or process puts them together
        ids = "\n".join(p["sms_part"]["message_id"] for p in ordered)
        message_id = "sms-concat:" + hashlib.sha256(ids.encode()).hexdigest()[:40]
        metadata = {"to": ordered[0].get("to", ""), "provider_timestamp": ordered[0].get("provider_timestamp", ""),
                    "sms_parts": parts}
        if missing:
            metadata["sms_parts_missing"] = missing
            log.warning("sms from %s: part(s) %s of %d never arrived; handing on the rest",
                        mask_phone(phone), missing, parts)
        if not _has_content(text):
            log.warning("sms from %s: concatenated message holds no valid character; dropped", mask_phone(phone))
            return True
        await self._accept(phone, text, message_id, metadata)
        return True

    async def _assemble_later(self, group: str, phone: str, ref: str, parts: int) -> None:
        try:
            await asyncio.sleep(self.assembly_wait)
            await self._assemble(phone, ref, parts, final=True)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("handing on an incomplete concatenated sms failed")
        finally:
            self._assembling.discard(group)

    async def _seen(self, phone: str, message_id: str) -> bool:
        return await self.ctx.store.seen(self.name, phone, message_id)

    async def _enqueue(self, reply: Reply, dedupe_key: str) -> None:
        await self.ctx.store.enqueue(reply, dedupe_key=dedupe_key)

    async def _handle_keyword(self, keyword: str, phone: str, text: str, message_id: str) -> None:
        lang = _lang_for(text)
        async with self.ctx.sessionmaker() as session, session.begin():
            if keyword == "stop":
                if await session.get(SmsOptOut, phone) is None:
                    try:
                        async with session.begin_nested():
                            session.add(
                                SmsOptOut(phone=phone, keyword=text.strip()[:32], message_id=message_id)
                            )
                    except IntegrityError:
                        pass  # a concurrent retry of the same STOP
            else:
                await session.execute(delete(SmsOptOut).where(SmsOptOut.phone == phone))
            opted_out = keyword == "stop"
        # Stored too (after the opt-out: a retry finds the command not yet seen and repeats
        # it harmlessly), so the conversation history and the dedupe see it.
        await self.ctx.store.record(Message(channel=self.name, sender_id=phone, text=text, message_id=message_id,
                                            metadata={"sms_keyword": keyword}))
        self.opt_outs.record(phone, opted_out)  # committed: effective for this process at once
        log.info("sms %s from %s", "opt-out" if keyword == "stop" else "opt-in", mask_phone(phone))
        reply = Reply(
            channel=self.name,
            recipient_id=phone,
            text=self.fixed_texts["stopped" if keyword == "stop" else "started"][lang],
            metadata={"transactional": True},
        )
        await self._enqueue(reply, dedupe_key=f"kw:{message_id}")

    async def _refuse_rate_limited(self, phone: str, text: str) -> None:
        now = time.monotonic()
        period = RATE_PERIOD_SECONDS
        last = self._refused.get(phone)
        if last is not None and now - last < period:
            log.info("sms from %s dropped: over the rate limit", mask_phone(phone))
            return
        refused = self._refused
        refused.pop(phone, None)
        refused[phone] = now  # oldest first: forget expired entries from the front, O(1) amortised
        while refused:
            k, t = next(iter(refused.items()))
            if now - t < period and len(refused) <= 50_000:
                break
            del refused[k]
        log.info("sms from %s refused: over the rate limit", mask_phone(phone))
        reply = Reply(
            channel=self.name,
            recipient_id=phone,
            text=self.fixed_texts["rate_limited"][_lang_for(text)],
            metadata={"transactional": True},
        )
        await self._enqueue(reply, dedupe_key=f"rl:{phone}:{uuid.uuid4().hex}")

    # ------------------------------------------------------------------ delivery reports
    async def status_report(self, request: web.Request) -> web.Response:
        auth = await self._authenticated(request)
        if isinstance(auth, web.Response):
            return auth
        _, data = auth
        provider_id = data.get("message_id") or data.get("id")
        raw_status = clean_text(str(data.get("status") or "")).strip().lower()
        if not provider_id or not _valid_id(str(provider_id)):
            return _problem(400, "bad_message_id", f"'message_id' is required: at most {MAX_ID} printable characters")
        if raw_status in {"delivered", "delivrd", "success", "ok"}:
            status = "delivered"
        elif raw_status in {"failed", "undeliv", "undelivered", "rejected", "expired", "rejectd", "error"}:
            status = "failed"
        else:
            return web.json_response({"status": "ignored"})
        error = clean_text(str(data.get("error_code") or data.get("error") or ""))[:200] or None
        provider_id = str(provider_id)
        await self.parts.wait_for(provider_id)  # a report can overtake our segment write
        batch = await self._record_part_status(provider_id, status, error)
        if batch is None:
            log.info("sms status for unknown provider id")
            if len(self._tasks) < MAX_REPORT_RETRIES:
                # maybe sent by another replica whose segment write is still in flight
                self._spawn(self._report_later(provider_id, status, error))
            return web.json_response({"status": "unknown"})
        if not await self._apply_batch_status(batch):
            # The worker may not have stored the provider id yet (report raced the send).
            self._spawn(self._apply_later(batch))
        return web.json_response({"status": "ok"})

    async def _record_part_status(self, provider_id: str, status: str, error: str | None) -> str | None:
        async with self.ctx.sessionmaker() as session, session.begin():
            part = await session.get(SmsPart, provider_id)
            if part is None:
                return None
            if part.status != "failed":  # a failure is final
                part.status = status
                part.error = error
                part.updated_at = datetime.now(timezone.utc)
            return part.batch_ref

    async def _apply_batch_status(self, batch_ref: str) -> bool:
        """Fold the parts' statuses into the reply's delivery status (``ChannelStore.delivery_report``);
        False when the reply's provider id is not stored yet."""
        async with self.ctx.sessionmaker() as session:
            parts = (await session.execute(select(SmsPart).where(SmsPart.batch_ref == batch_ref))).scalars().all()
            if not parts:
                return True
            statuses = [p.status for p in parts]
            expected = parts[0].parts
            if "failed" in statuses:
                status = "failed"
            elif len(statuses) >= expected and all(s == "delivered" for s in statuses):
                status = "delivered"
            else:
                return True  # some parts still in flight
            error = None if status == "delivered" else (parts[0].error or "failed")
        return await self.ctx.store.delivery_report(self.name, batch_ref, status, error)

    async def _report_later(self, provider_id: str, status: str, error: str | None) -> None:
        for delay in (0.5, 2.0, 5.0):
            await asyncio.sleep(delay)
            try:
                batch = await self._record_part_status(provider_id, status, error)
                if batch is not None:
                    if not await self._apply_batch_status(batch):
                        await self._apply_later(batch)
                    return
            except Exception:  # noqa: BLE001
                log.exception("applying sms delivery report failed")
                return

    async def _apply_later(self, batch_ref: str) -> None:
        for delay in (0.5, 1.0, 2.0, 5.0, 10.0, 30.0):
            await asyncio.sleep(delay)
            try:
                if await self._apply_batch_status(batch_ref):
                    return
            except Exception:  # noqa: BLE001
                log.exception("applying sms delivery report failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        try:
            await self.parts.flush()
        except Exception:  # noqa: BLE001
            log.exception("storing sms segment records at shutdown failed")
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ outbound
    async def is_opted_out(self, phone: str) -> bool:
        return await self.opt_outs.contains(self.ctx.sessionmaker, sms_number(phone) or phone)

    @staticmethod
    def render(reply: Reply) -> str:
        text = reply.text.strip()
        url = reply.metadata.get("pay_url") or reply.metadata.get("url")
        if url and url not in text:
            text = f"{text}\n{url}"
        if reply.buttons:
            text += "\n" + "\n".join(f"· {b.title}" for b in reply.buttons)
        return text

    @staticmethod
    def _phone(reply: Reply) -> str:
        phone = sms_number(reply.recipient_id)
        if phone is None:
            raise DeliveryError("recipient is not a phone number", retryable=False, code="bad_recipient")
        return phone

    async def _text(self, reply: Reply, phone: str, *, opted_out: bool) -> str:
        """The checks every outbound SMS passes (opt-out of a broadcast, empty text, the
        per-number limit); the text to send, or the DeliveryError saying why not."""
        if opted_out and _is_broadcast(reply):
            raise DeliveryError("recipient opted out of SMS notices", retryable=False, code="opted_out")
        text = self.render(reply)
        if not text:
            raise DeliveryError("empty message", retryable=False, code="empty")
        if not await self.limiter.hit("out:" + phone, self.outbound_per_minute, RATE_PERIOD_SECONDS):
            raise DeliveryError("per-number SMS rate limit reached", retryable=True, code="rate_limited")
        return text

    async def send(self, reply: Reply) -> str | None:
        phone = self._phone(reply)
        opted_out = _is_broadcast(reply) and await self.opt_outs.contains(self.ctx.sessionmaker, phone)
        text = await self._text(reply, phone, opted_out=opted_out)
        parts = split_segments(text)
        batch_ref = _batch_ref(reply)
        provider_ids: list[str] = []
        for i, part in enumerate(parts, start=1):
            provider_ids.append(await self._post_part(phone, part, f"{batch_ref}-{i}", i, len(parts)))
        now = datetime.now(timezone.utc)
        # stored (group commit with the concurrent sends) before the batch ref reaches the outbox
        await self.parts.add(self.ctx.sessionmaker, _part_rows(batch_ref, provider_ids, now))
        log.info("sms sent to %s parts=%d", mask_phone(phone), len(parts))
        return batch_ref

    async def send_batch(self, replies: Sequence[Reply]) -> list[str | None | BaseException]:
        """Send many replies through the provider's batch endpoint; one result per reply.

        The per-reply checks of ``send`` are done for the whole group at once (one opt-out
        lookup, the in-memory rate limiter), every segment becomes one item of a batch request
        (at most ``batch_size`` items, a reply's segments kept in one request), the requests go
        out concurrently, and the segment records of all accepted replies are stored with one
        multi-row INSERT before the batch references are returned.

        Per reply: the batch reference when the provider accepted every segment; the provider's
        per-item refusal as a ``DeliveryError`` (``retryable`` as the provider says); when a
        whole request fails, the same error for each of its replies (retryable for timeouts,
        5xx and 429). A reply of which the provider accepted some segments and refused others is
        not retried (that would send the accepted parts twice): ``code="partial"``, final.
        """
        results: list[str | None | BaseException] = [None] * len(replies)
        checked: list[tuple[int, str, Reply]] = []
        notice_phones: list[str] = []
        for i, reply in enumerate(replies):
            try:
                phone = self._phone(reply)
            except DeliveryError as exc:
                results[i] = exc
                continue
            checked.append((i, phone, reply))
            if _is_broadcast(reply):
                notice_phones.append(phone)
        opted = await self.opt_outs.among(self.ctx.sessionmaker, notice_phones) if notice_phones else set()
        items: list[tuple[int, str, list[str], str]] = []  # (index, phone, segments, batch_ref)
        for i, phone, reply in checked:
            try:
                text = await self._text(reply, phone, opted_out=phone in opted)
            except DeliveryError as exc:
                results[i] = exc
                continue
            items.append((i, phone, split_segments(text), _batch_ref(reply)))
        requests: list[list[tuple[int, str, list[str], str]]] = []
        cur: list[tuple[int, str, list[str], str]] = []
        used = 0
        for item in items:
            n = len(item[2])
            if cur and used + n > self.batch_size:
                requests.append(cur)
                cur, used = [], 0
            cur.append(item)
            used += n
        if cur:
            requests.append(cur)
        answers = await asyncio.gather(*(self._post_batch(req) for req in requests), return_exceptions=True)
        now = datetime.now(timezone.utc)
        part_rows: list[dict[str, Any]] = []
        stored: list[tuple[int, str]] = []
        for req, answer in zip(requests, answers):
            if isinstance(answer, BaseException):
                if not isinstance(answer, (DeliveryError, Exception)):
                    raise answer  # cancellation
                for i, *_ in req:
                    results[i] = answer
                continue
            for i, phone, segments, ref in req:
                got = [answer.get(f"{ref}-{p}") for p in range(1, len(segments) + 1)]
                ok = [g for g in got if isinstance(g, str)]
                if len(ok) == len(segments):
                    part_rows.extend(_part_rows(ref, ok, now))
                    stored.append((i, ref))
                elif ok:
                    results[i] = DeliveryError(
                        f"SMS provider accepted {len(ok)} of {len(segments)} parts", retryable=False, code="partial"
                    )
                else:
                    err = next((g for g in got if isinstance(g, DeliveryError)), None)
                    results[i] = err or DeliveryError("SMS provider answer has no result for the message",
                                                      retryable=True, code="bad_answer")
        if part_rows:
            try:
                await self.parts.add(self.ctx.sessionmaker, part_rows)
            except Exception as exc:  # noqa: BLE001 - the SMS went out: never send it again
                log.error("sms: %d segment record(s) not stored (%s); their delivery reports will not be mapped",
                          len(part_rows), type(exc).__name__)
        for i, ref in stored:
            results[i] = ref
        log.info("sms batch: %d message(s), %d accepted, %d request(s)", len(replies), len(stored), len(requests))
        return results

    async def _post_batch(self, items: list[tuple[int, str, list[str], str]]) -> dict[str, str | DeliveryError]:
        """One signed call to ``{base}/messages/batch``; client_ref → provider id or per-item error."""
        messages = [
            {"to": phone, "text": text, "client_ref": f"{ref}-{p}", "part": p, "parts": len(segments)}
            for _, phone, segments, ref in items
            for p, text in enumerate(segments, start=1)
        ]
        body = json.dumps(
            {"from": self.sender, "timestamp": int(time.time()), "messages": messages},
            ensure_ascii=False, separators=(",", ":"),
        ).encode()
        data = await self._signed_post(self._batch_url, body, "the batch")
        entries = data.get("results") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise DeliveryError("SMS provider batch answer has no results", retryable=True, code="bad_answer")
        out: dict[str, str | DeliveryError] = {}
        for pos, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            ref = entry.get("client_ref")
            if not isinstance(ref, str):  # no reference echoed: by position
                ref = messages[pos]["client_ref"] if pos < len(messages) else None
                if ref is None:
                    continue
            pid = entry.get("message_id") or entry.get("id")
            if pid and not entry.get("error"):
                out[ref] = str(pid)[:200]
            else:
                code = str(entry.get("error") or entry.get("code") or "refused")[:64]
                out[ref] = DeliveryError(f"SMS provider refused the message ({code})",
                                         retryable=bool(entry.get("retryable", False)), code=code)
        return out

    async def _post_part(self, phone: str, text: str, client_ref: str, part: int, parts: int) -> str:
        body = json.dumps(
            {
                "to": phone,
                "from": self.sender,
                "text": text,
                "client_ref": client_ref,
                "part": part,
                "parts": parts,
                "timestamp": int(time.time()),
            },
            ensure_ascii=False,
        ).encode()
        data = await self._signed_post(self._messages_url, body, "the message")
        pid = data.get("message_id") or data.get("id") if isinstance(data, dict) else None
        if not pid:
            raise DeliveryError("SMS provider answer has no message id", retryable=True, code="bad_answer")
        return str(pid)[:200]

    async def _signed_post(self, url: str, body: bytes, what: str) -> Any:
        """POST a signed JSON body to the provider; its JSON answer (None if not JSON), or a
        DeliveryError saying whether a retry can help (unreachable, 429, 5xx) or not (4xx)."""
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Api-Key": self.api_key,
            "X-Signature": sign(self.secret, body),
        }
        try:
            async with self.ctx.http.post(url, data=body, headers=headers, timeout=self.timeout) as resp:
                payload = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise DeliveryError(f"SMS provider unreachable: {type(exc).__name__}", retryable=True, code="unreachable") from None
        if status == 429 or status >= 500:
            raise DeliveryError(f"SMS provider answered {status}", retryable=True, code=f"http_{status}")
        if status >= 400:
            raise DeliveryError(f"SMS provider refused {what} ({status})", retryable=False, code=f"http_{status}")
        try:
            return json.loads(payload)
        except ValueError:
            return None


def _is_broadcast(reply: Reply) -> bool:
    """A notice the customer did not ask for: the only kind an opt-out (STOP) stops."""
    return reply.kind in ("notice", "template") and not reply.urgent and not reply.metadata.get("transactional")


def _batch_ref(reply: Reply) -> str:
    """Our reference of one message at the provider (the prefix of its parts' ``client_ref``).
    From the outbox's delivery key when there is one — the same on every attempt, so the
    provider recognises a retry of a request it had accepted and sends nothing again —
    random for a direct send."""
    key = reply.metadata.get(DELIVERY_KEY)
    return f"smsb_{key}" if isinstance(key, str) and key.isalnum() else "smsb_" + uuid.uuid4().hex


def _part_rows(batch_ref: str, provider_ids: list[str], now: datetime) -> list[dict[str, Any]]:
    """``sms_parts`` rows of one sent message: segment n has the provider's n-th id."""
    return [
        {"provider_id": pid, "batch_ref": batch_ref, "part": i, "parts": len(provider_ids), "status": "sent",
         "error": None, "created_at": now, "updated_at": now}
        for i, pid in enumerate(provider_ids, start=1)
    ]


def from_context(ctx: ChannelContext) -> SmsChannel | None:
    s = ctx.settings
    if not s.sms_api_base_url or not s.sms_secret or not s.sms_secret.get_secret_value():
        return None
    return SmsChannel(ctx)
