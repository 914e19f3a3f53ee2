"""The only channel module the dialogue engine may import: shared types and the interface.

Like ``rasa/core/channels/channel.py``: a channel turns platform traffic into ``Message``
and delivers ``Reply`` back; the engine never learns which platform it is talking to.

A channel imports nothing of the bot and never touches the bot's tables (inbound messages,
outbox, conversations, events, handoffs): what it needs from the bot comes through
``ChannelContext`` — the ``processor`` it hands messages to, the ``store`` for the few other
things it may ask of the bot's store, ``prepare`` for its side writes' statements and
``payment_service`` for a platform that takes payments. Its own tables (declared on
``common.db.GatewayBase``) are its business, and it declares their retention (``Purge``).
"""

from __future__ import annotations

import abc
import copy
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from common.clock import utcnow

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp
    from aiohttp import web
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from backend_client import CoreClient


class InvalidMessage(ValueError):
    """A message the gateway refuses to store (a sender id or message id that is not clean
    text, metadata nested too deep); the channel answers its platform with a 4xx."""


_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
METADATA_MAX_DEPTH = 8
METADATA_MAX_ITEMS = 200


def clean_text(text: str) -> str:
    """Text every store and platform accepts: surrogate pairs that arrived as two code points
    (JSON "\\ud83d\\ude00", a split SMS part) joined, a lone surrogate replaced by U+FFFD,
    NUL and other C0/C1 controls but tab and line ends removed."""
    if _SURROGATE.search(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return _CONTROL.sub("", text)


def is_clean(text: str) -> bool:
    return not (_SURROGATE.search(text) or _CONTROL.search(text))


def clean_json(value: Any, *, depth: int = 0) -> Any:
    """A JSON-shaped value with clean strings; ``InvalidMessage`` when it is nested deeper than
    ``METADATA_MAX_DEPTH`` or holds more than ``METADATA_MAX_ITEMS`` entries in one container."""
    if depth > METADATA_MAX_DEPTH:
        raise InvalidMessage("metadata nested too deep")
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        if len(value) > METADATA_MAX_ITEMS:
            raise InvalidMessage("metadata too large")
        return {clean_text(str(k)): clean_json(v, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) > METADATA_MAX_ITEMS:
            raise InvalidMessage("metadata too large")
        return [clean_json(v, depth=depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return clean_text(str(value))


@dataclass(frozen=True, slots=True)
class Message:
    """One inbound customer message, platform-neutral."""

    channel: str
    sender_id: str  # openid, Alipay user id, E.164 phone, email address, REST sender
    text: str
    message_id: str  # platform id; (channel, message_id) is the dedupe key
    kind: str = "text"  # text | voice | location | image | event | email
    metadata: Mapping[str, Any] = field(default_factory=dict)
    received_at: datetime = field(default_factory=utcnow)

    @property
    def conversation_id(self) -> str:
        return f"{self.channel}:{self.sender_id}"


@dataclass(frozen=True, slots=True)
class Button:
    title: str
    payload: str


@dataclass(slots=True)
class Reply:
    """One outbound message. ``metadata`` carries channel hints (subject, pay link...)."""

    channel: str
    recipient_id: str
    text: str
    buttons: list[Button] = field(default_factory=list)
    kind: str = "text"  # text | payment_link | template | notice
    metadata: dict[str, Any] = field(default_factory=dict)
    urgent: bool = False  # urgent notices ignore quiet hours

    def to_dict(self) -> dict[str, Any]:
        # what dataclasses.asdict gives (metadata copied deeply), without its generic recursion,
        # which cost ~30 us per reply on the hot path
        return {
            "channel": self.channel, "recipient_id": self.recipient_id, "text": self.text,
            "buttons": [{"title": b.title, "payload": b.payload} for b in self.buttons],
            "kind": self.kind, "metadata": copy.deepcopy(self.metadata) if self.metadata else {},
            "urgent": self.urgent,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reply:
        d = dict(data)
        d["buttons"] = [Button(**b) for b in d.get("buttons") or []]
        return cls(**d)


class DeliveryError(Exception):
    """A send failed. ``retryable`` tells the outbox whether to try again with backoff."""

    def __init__(self, message: str, *, retryable: bool = True, code: str | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


@dataclass(frozen=True, slots=True)
class SideWrite:
    """A channel's own bookkeeping row, written in the transaction that stores the inbound
    message (WeChat's messaging window, renewed by every user message): no commit of its own,
    and the row is there whenever the message is. ``statement`` runs a list of parameter sets
    on a connection (a ``Statement``, made by ``ChannelContext.prepare``); side writes with the
    same statement in one group commit run as one executemany. ``done`` runs after the commit."""

    statement: Any
    params: Mapping[str, Any]
    done: Callable[[], None] | None = None


@dataclass(slots=True)
class Receipt:
    """What the pipeline tells a channel about one inbound message."""

    duplicate: bool
    replies: list[Reply] | None  # None: not ready within the wait; replies go via the outbox
    outbox_ids: list[int] = field(default_factory=list)
    # the inbound row whose replies are held for this answer instead of queued in the outbox
    # (released to the outbox after the inline grace unless the answer is marked delivered)
    held: int | None = None


class MessageProcessor(Protocol):
    """Implemented by the gateway pipeline; channels hand every inbound message to it."""

    async def receive(
        self, message: Message, *, wait: float | None = None, also: Sequence[SideWrite] = ()
    ) -> Receipt: ...

    async def mark_delivered_inline(self, receipt: Receipt) -> bool: ...

    def delivered_inline(self, receipt: Receipt) -> None: ...


class Texts(Protocol):
    """Customer texts by name (``bot.texts.TextService``: responses of ``domain.yml`` with the
    brand settings filled in). A channel says nothing to a customer that is not one of them."""

    def text(self, name: str, /, *, lang: str = "zh", channel: str = "", **values: Any) -> str: ...


class Statement(Protocol):
    """A statement a channel's ``SideWrite`` runs: ``run(conn, params)`` with one parameter
    set or a list of them (executemany) on a synchronous connection."""

    def run(self, conn: Connection, params: Any) -> Any: ...


class PlainStatement:
    """``Statement`` through SQLAlchemy's ``Connection.execute``: what ``ChannelContext.prepare``
    gives when the wiring offers nothing faster (the gateway gives its precompiled statements)."""

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt

    def run(self, conn: Connection, params: Any) -> Any:
        return conn.execute(self.stmt, params)


DELIVERY_KEY = "delivery_key"
"""``Reply.metadata`` key under which the outbox hands a channel the row's delivery key: the
same on every attempt of one row, so a provider can recognise a retry of a request it accepted."""


class ChannelStore(Protocol):
    """What a channel may ask of the bot's store besides handing in a message (the
    ``processor``). Implemented by the bot (``bot.channel_store``); the channel never sees
    the tables behind it."""

    async def seen(self, channel: str, sender_id: str, message_id: str) -> bool:
        """Whether a message with this id from this sender is already stored."""
        ...

    async def record(self, message: Message) -> bool:
        """Store a message the dialogue does not process (an SMS opt-out command): the
        conversation's history and the dedupe see it. False when it was already stored."""
        ...

    async def store_part(self, message: Message, *, retry_of: Callable[[Mapping[str, Any]], bool]) -> bool:
        """Store one part of a message the platform split (kind ``message.kind``, keyed by
        ``message.message_id``, ``message.metadata`` kept as is); the dialogue never sees it.
        A part already stored under the key is a duplicate when ``retry_of(its metadata)``
        says so, and is replaced otherwise (the key was used again by a later message).
        True for a duplicate."""
        ...

    async def parts(self, channel: str, sender_id: str, keys: Sequence[str], since: datetime) -> list[Mapping[str, Any]]:
        """The metadata of the stored parts under ``keys`` received since ``since``."""
        ...

    async def last_inbound(self, channel: str, sender_id: str) -> Mapping[str, Any] | None:
        """The metadata of the newest message stored from this sender on this channel."""
        ...

    async def enqueue(self, reply: Reply, *, dedupe_key: str) -> None:
        """Queue a reply the channel says by itself (a welcome, an opt-out confirmation) for
        delivery by the outbox; once per ``dedupe_key`` on the channel."""
        ...

    async def delivery_report(self, channel: str, provider_id: str, status: str, error: str | None) -> bool:
        """Apply a provider's final report (``delivered`` / ``failed``) to the sent reply whose
        provider id this is. False when no such reply is stored (yet)."""
        ...

    async def poll(self, channel: str, recipient_id: str, after: int) -> tuple[list[Reply], int]:
        """Replies delivered by being polled (``Channel.send`` returned ``POLL_PROVIDER_ID``)
        after the cursor, oldest first, and the new cursor. A fresh poll (``after`` 0) with
        nothing to show starts after what was delivered but before what still waits."""
        ...


POLL_PROVIDER_ID = "rest-poll"
"""What ``send`` returns for a channel whose replies are fetched by the client (``poll``)."""


@dataclass(frozen=True, slots=True)
class Purge:
    """Old rows of a table a channel owns, deleted by the bot's retention run.

    ``keep`` names how long rows stay: ``"finished"`` (``retention_days``) or ``"history"``
    (``history_retention_days``). ``run(engine, cutoff, batch_size, dry_run)`` deletes (or
    counts) the rows older than ``cutoff``, a batch per transaction, and returns how many."""

    name: str
    keep: str
    run: Callable[[AsyncEngine, datetime, int, bool], Awaitable[int]]


@dataclass(slots=True)
class ChannelContext:
    """What the app wiring gives every channel at construction."""

    settings: Any  # the gateway's settings (``bot.settings.Settings``)
    processor: MessageProcessor
    sessionmaker: async_sessionmaker[AsyncSession]  # for the channel's own tables
    http: aiohttp.ClientSession
    core: CoreClient
    extras: dict[str, Any] = field(default_factory=dict)
    texts: Texts = None  # type: ignore[assignment]  # required: every customer text
    store: ChannelStore = None  # type: ignore[assignment]  # the bot's store, as far as a channel may see it
    prepare: Callable[[Any], Statement] = PlainStatement  # a side write's statement, ready to run
    # (ctx, platform client, *, appid, notify_url, return_url) -> PaymentService; None: no payments
    payment_service: Callable[..., PaymentService] | None = None


class Channel(abc.ABC):
    """One platform. Inbound through ``routes``; outbound through ``send`` (called by the outbox)."""

    name: ClassVar[str]

    proves: ClassVar[frozenset[str]] = frozenset()
    """What the platform proves about a sender id beyond "the same sender as last time".

    ``"phone"``: the sender id is the customer's own E.164 number, authenticated by the
    platform (SMS inbound, signed by the provider), so the core's accounts of that phone may
    be shown. Every other channel's sender id is an opaque string whatever it looks like: a
    REST sender "+8613900139000" proves nothing."""

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx

    @abc.abstractmethod
    def routes(self) -> Iterable[web.AbstractRouteDef]:
        """HTTP routes for the platform's callbacks (empty for non-HTTP channels)."""

    @abc.abstractmethod
    async def send(self, reply: Reply) -> str | None:
        """Deliver one reply; return the provider's message id. Raise ``DeliveryError``."""

    max_batch: int = 0
    """How many replies one ``send_batch`` call takes (0: the outbox calls ``send`` per reply).

    A channel whose platform has a batch API (an SMS provider's batch endpoint) sets this above 1
    and overrides ``send_batch``; the outbox worker then hands it groups of due rows."""

    async def send_batch(self, replies: Sequence[Reply]) -> list[str | None | BaseException]:
        """Deliver several replies; one result per reply, in order.

        A result is the provider's message id (or None), or the exception that reply failed
        with (``DeliveryError`` with ``retryable`` set as for ``send``). Raising instead means
        every reply of the call failed that way. Default: ``send`` one reply after another.
        """
        results: list[str | None | BaseException] = []
        for reply in replies:
            try:
                results.append(await self.send(reply))
            except Exception as exc:  # noqa: BLE001 - handed back per reply
                results.append(exc)
        return results

    async def start(self) -> None:
        """Start background parts (an SMTP server, a token refresher...)."""

    async def stop(self) -> None:
        """Stop what ``start`` started."""

    def readiness(self) -> dict[str, Any]:
        return {"on": True}

    purges: ClassVar[Sequence[Purge]] = ()
    """The retention purges of the tables this channel owns (collected by the app wiring
    whether or not the channel is configured: rows written while it was on still age)."""


@dataclass(frozen=True, slots=True)
class PaymentLink:
    """An online payment order a customer can open (Alipay QR / wap link)."""

    out_trade_no: str
    amount: str  # yuan, two decimals
    pay_url: str
    qr_code: str | None = None


_E164_CN_MOBILE = re.compile(r"\+86(1[3-9]\d{9})", re.ASCII)


def proven_phone(message: Message, proofs: Mapping[str, frozenset[str]]) -> str | None:
    """The mainland mobile number a message's sender is proven to hold, else None.

    ``proofs`` maps a channel name to its ``Channel.proves`` (given by the app wiring)."""
    if "phone" not in proofs.get(message.channel, frozenset()):
        return None
    m = _E164_CN_MOBILE.fullmatch(message.sender_id)
    return m.group(1) if m else None


class PaymentLinkProvider(Protocol):
    """Offered by a platform's payment service (``PaymentService``) through
    ``ChannelContext.extras['payments']``.

    The dialogue engine uses it for ``pay_bill`` without knowing which platform it is.
    """

    async def create_payment_link(
        self, *, account_number: str, amount: str, channel: str, recipient_id: str, subject: str
    ) -> PaymentLink: ...


class PaymentService(PaymentLinkProvider, Protocol):
    """Online payment for a platform that takes it (Alipay), made by
    ``ChannelContext.payment_service``: the link the dialogue offers, the platform's notify the
    channel serves, and the reconciler the channel runs."""

    async def notify(self, request: web.Request) -> web.StreamResponse: ...

    async def run_reconciler(self) -> None: ...
