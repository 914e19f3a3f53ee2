"""Producers: read the core's change feed with a persisted cursor and enqueue notices.

One pass reads one page of events, works out every notice (subscriber × channel), then writes
all of them to the outbox *and* moves the cursor in one transaction. Each notice carries the
dedupe key ``evt:{event_id}:{channel}:{recipient}``, so re-reading a page after a crash, or two
gateway processes reading the same page, never produces a second notice for a customer on a
channel.

Routing: a subscription names its channel and identity (openid / Alipay user id / phone /
address). When that channel is off, or refuses later (WeChat 48-hour window closed, SMS
opt-out...), the notice carries its fallback chain in ``metadata["notify"]["fallback"]``:
WeChat template message (when ``POWERBOT_NOTIFY_WECHAT_TEMPLATE_ID`` is set) → SMS to the
account's registered phone → e-mail to an address the account subscribed with. The outbox's
dead-letter hook (:mod:`bot.notify.policies`) enqueues the next step with its own dedupe key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend_client import CoreClient, CoreError, CoreUnavailable, Event, Subscription
from bot.logs import mask_account
from bot.notify import texts
from bot.texts import TextService
from bot.notify.models import NotifyCursor
from bot.outbox import enqueue_many
from bot.settings import Settings
from common.phones import sms_number
from channels.base import Reply

log = logging.getLogger("powerbot.notify")

FEED = "core-events"
SUB_PAGE = 10_000
WORK_ORDER_NOTIFY = {"dispatched", "in_progress", "resolved", "closed"}


def dedupe_key(event_id: int, channel: str, recipient: str, *, prefix: str = "evt") -> str:
    """``evt:{event}:{channel}:{recipient}`` (``due:{bill}:...`` for bill-due reminders)."""
    key = f"{prefix}:{event_id}:{channel}:{recipient}"
    if len(key) > 200:
        key = f"{prefix}:{event_id}:{channel}:h:{hashlib.sha256(recipient.encode()).hexdigest()}"
    return key


@dataclass(slots=True)
class Target:
    channel: str
    recipient: str
    template: bool = False

    @property
    def key_channel(self) -> str:
        return f"{self.channel}-template" if self.template else self.channel

    def as_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "recipient": self.recipient, "template": self.template}


@dataclass(slots=True)
class NoticeSpec:
    event_id: int
    event_type: str
    topic: str
    subject: str
    text: str
    urgent: bool = False
    transactional: bool = False
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def build_reply(spec: dict[str, Any], target: Target, chain: list[Target], template_id: str | None,
                notices: texts.Notices) -> tuple[Reply, str]:
    """The outbox row for one target; ``spec`` is the notice's JSON form (see ``NoticeSpec``)."""
    metadata: dict[str, Any] = {
        "subject": spec["subject"],
        "notify": {
            "event_id": spec["event_id"],
            "event_type": spec["event_type"],
            "topic": spec["topic"],
            "subject": spec["subject"],
            "text": spec["text"],
            "urgent": spec.get("urgent", False),
            "transactional": spec.get("transactional", False),
            "key_prefix": spec.get("key_prefix", "evt"),
            "fallback": [t.as_dict() for t in chain],
        },
    }
    if spec.get("transactional"):
        metadata["transactional"] = True
    if target.template and template_id:
        metadata["template_id"] = template_id
        metadata["template_data"] = {
            "first": spec["subject"],
            "keyword1": spec["text"].removeprefix(notices.signature)[:180],
            "remark": notices.remark,
        }
    reply = Reply(
        channel=target.channel,
        recipient_id=target.recipient,
        text=spec["text"],
        kind="notice",
        metadata=metadata,
        urgent=bool(spec.get("urgent")),
    )
    return reply, dedupe_key(spec["event_id"], target.key_channel, target.recipient, prefix=spec.get("key_prefix", "evt"))


class Producer:
    """Turns core events into outbox notices. ``channels``: names of the channels that are on."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        core: CoreClient,
        settings: Settings,
        channels: Collection[str],
        *,
        on_enqueued: Callable[[], None] | None = None,
        page_size: int = 100,
        feed: str = FEED,
        text_service: TextService | None = None,
    ) -> None:
        self.sm = sessionmaker
        self.notices = texts.Notices(text_service if text_service is not None else TextService(settings))
        self.core = core
        self.settings = settings
        self.channels = set(channels)
        self.on_enqueued = on_enqueued
        self.page_size = page_size
        self.feed = feed
        self.tz = ZoneInfo(settings.notify_timezone)
        self.template_id = settings.notify_wechat_template_id
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.enqueued_total = 0

    # --- cursor ----------------------------------------------------------------------------
    async def cursor(self) -> str | None:
        async with self.sm() as s:
            row = await s.get(NotifyCursor, self.feed)
            return row.cursor if row else None

    async def init_cursor(self) -> str:
        """On first start: begin at the newest event (``latest``) or at the beginning."""
        current = await self.cursor()
        if current is not None:
            return current
        if self.settings.notify_start_from == "latest":
            page = await self.core.read_events(after="latest", limit=1)
            start = page.next_cursor or "0"
        else:
            start = "0"
        async with self.sm() as s:
            try:
                async with s.begin():
                    s.add(NotifyCursor(name=self.feed, cursor=start, position=_position(start), updated_at=_now()))
            except IntegrityError:
                pass  # another process initialised it first
        return await self.cursor() or start

    async def _save_cursor(self, s: AsyncSession, cursor: str) -> None:
        pos = _position(cursor)
        stmt = update(NotifyCursor).where(NotifyCursor.name == self.feed)
        if cursor.isdigit():  # numeric cursors only move forward (several producers may race)
            stmt = stmt.where(NotifyCursor.position < pos)
        res = await s.execute(stmt.values(cursor=cursor, position=pos, updated_at=_now()))
        if res.rowcount == 0 and await s.get(NotifyCursor, self.feed) is None:
            s.add(NotifyCursor(name=self.feed, cursor=cursor, position=pos, updated_at=_now()))

    # --- loop ------------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notify-producer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                if await self.cursor() is None:
                    await self.init_cursor()
                n = await self.run_once()
                if n == 0:
                    await self.bill_due_once()
            except asyncio.CancelledError:
                raise
            except CoreUnavailable as exc:
                log.warning("notify: core unavailable (%s); retrying", type(exc).__name__)
                n = 0
            except Exception:  # noqa: BLE001 - the producer must survive a blip
                log.exception("notify: producer pass failed")
                n = 0
            if n == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.notify_poll_seconds)
                except asyncio.TimeoutError:
                    pass

    async def run_once(self) -> int:
        """Read one page of events and enqueue their notices; returns how many events were read.

        The page is read, turned into notices and written together with the new cursor in one
        transaction. On PostgreSQL that transaction first locks the cursor row (``FOR UPDATE
        SKIP LOCKED``): with several gateway processes one of them does the pass and the others
        skip it instead of repeating the work (their dedupe keys would make it harmless anyway).
        """
        if await self.cursor() is None:
            await self.init_cursor()
        async with self.sm() as s, s.begin():
            stmt = select(NotifyCursor).where(NotifyCursor.name == self.feed)
            if s.bind.dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            row = (await s.execute(stmt)).scalar_one_or_none()
            if row is None:
                return 0  # another process holds this feed right now
            page = await self.core.read_events(after=row.cursor, limit=self.page_size)
            if not page.events:
                return 0
            rows: list[dict[str, Any]] = []
            for event in page.events:
                try:
                    rows.extend(await self.notices_for(event))
                except CoreUnavailable:
                    raise  # retry the whole page later; nothing written
                except Exception:  # noqa: BLE001 - one malformed event must not block the feed
                    log.exception("notify: event %s (%s) skipped", event.id, event.type)
            if rows:
                await enqueue_many(s, rows)
            await self._save_cursor(s, page.next_cursor or str(page.events[-1].id))
        self.enqueued_total += len(rows)
        if rows:
            log.info("notify: %d event(s) → %d notice(s) queued", len(page.events), len(rows))
            if self.on_enqueued:
                self.on_enqueued()
        return len(page.events)

    async def bill_due_once(self, *, today: date | None = None, force: bool = False) -> int:
        """Once per local day: remind bill subscribers of unpaid bills due within
        ``POWERBOT_NOTIFY_BILL_DUE_DAYS`` days (dedupe key ``due:{bill}:{channel}:{recipient}``,
        so a bill is reminded at most once per channel). Returns notices offered."""
        days = self.settings.notify_bill_due_days
        if days <= 0:
            return 0
        today = today or datetime.now(self.tz).date()
        feed = f"{self.feed}:bill-due"
        async with self.sm() as s:
            row = await s.get(NotifyCursor, feed)
        if row is not None and row.cursor >= today.isoformat() and not force:
            return 0
        subs = await self._subs(topic="bill")
        by_account = group_by_account(subs)
        sem = asyncio.Semaphore(16)
        items: list[dict[str, Any]] = []

        async def one(account: str, account_subs: list[Subscription]) -> None:
            async with sem:
                try:
                    arrears = await self.core.get_arrears(account)
                except CoreUnavailable:
                    raise
                except CoreError:
                    return
            for bill in arrears.unpaid_bills:
                if not today <= bill.due_date <= today + timedelta(days=days):
                    continue
                subject, text = self.notices.bill_due(bill.model_dump(mode="json"))
                spec = {"event_id": bill.id, "event_type": "bill.due", "topic": "bill", "subject": subject,
                        "text": text, "urgent": False, "transactional": False, "key_prefix": "due"}
                for chain in await self.route(account_subs):
                    reply, key = build_reply(spec, chain[0], chain[1:], self.template_id, self.notices)
                    items.append({"reply": reply, "kind": "notice", "dedupe_key": key})

        await asyncio.gather(*(one(a, subs_) for a, subs_ in by_account.items()))
        async with self.sm() as s, s.begin():
            if items:
                await enqueue_many(s, items)
            current = await s.get(NotifyCursor, feed)
            if current is None:
                s.add(NotifyCursor(name=feed, cursor=today.isoformat(), position=0, updated_at=_now()))
            else:
                current.cursor, current.updated_at = max(current.cursor, today.isoformat()), _now()
        if items:
            log.info("notify: %d bill-due reminder(s) queued", len(items))
            if self.on_enqueued:
                self.on_enqueued()
        return len(items)

    async def drain(self) -> int:
        """Run passes until the feed is exhausted; returns the number of events read."""
        total = 0
        while (n := await self.run_once()) > 0:
            total += n
        return total

    # --- events → notices ------------------------------------------------------------------
    async def notices_for(self, event: Event) -> list[dict[str, Any]]:
        p = event.payload
        spec: NoticeSpec | None = None
        subs: list[Subscription] = []
        direct: list[Target] = []
        if event.type == "outage.created":
            if p.get("kind") != "planned" or p.get("status") not in (None, "scheduled"):
                return []
            end = texts._parse(p.get("estimated_end_at") or p.get("start_at"))
            if end is not None and end < datetime.now(timezone.utc):
                return []  # already over: nothing to announce
            subject, text = self.notices.planned_outage(p, self.tz)
            spec = NoticeSpec(event.id, event.type, "outage", subject, text)
            subs = await self._subs(topic="outage", district=p.get("district"))
        elif event.type == "outage.updated":
            changed = set(p.get("changed") or [])
            if "status" not in changed:
                return []
            if p.get("status") == "restored":
                subject, text = self.notices.power_restored(p, self.tz)
            elif p.get("status") == "cancelled" and p.get("kind") == "planned":
                subject, text = self.notices.outage_cancelled(p, self.tz)
            else:
                return []
            spec = NoticeSpec(event.id, event.type, "outage", subject, text)
            subs = await self._subs(topic="outage", district=p.get("district"))
        elif event.type == "work_order.status_changed":
            if p.get("status") not in WORK_ORDER_NOTIFY:
                return []
            subject, text = self.notices.work_order_update(p)
            spec = NoticeSpec(event.id, event.type, "work_order", subject, text, transactional=True)
            if p.get("account_number"):
                subs = await self._subs(topic="work_order", account_number=p["account_number"])
            elif p.get("contact_phone") and "sms" in self.channels:
                phone = sms_number(p["contact_phone"])
                if phone:  # an order without an account: tell the contact number
                    direct.append(Target("sms", phone))
        elif event.type == "bill.issued":
            if not p.get("account_number"):
                return []
            subject, text = self.notices.bill_issued(p)
            spec = NoticeSpec(event.id, event.type, "bill", subject, text)
            subs = await self._subs(topic="bill", account_number=p["account_number"])
        elif event.type == "payment.confirmed":
            if not p.get("account_number"):
                return []
            subject, text = self.notices.payment_confirmed(p)
            spec = NoticeSpec(event.id, event.type, "payment", subject, text, transactional=True)
            subs = await self._subs(topic="payment", account_number=p["account_number"])
        if spec is None:
            return []
        routes = await self.route(subs)
        routes.extend([t] for t in direct)
        spec_d = {
            "event_id": spec.event_id, "event_type": spec.event_type, "topic": spec.topic,
            "subject": spec.subject, "text": spec.text, "urgent": spec.urgent, "transactional": spec.transactional,
        }
        out = []
        for chain in routes:
            reply, key = build_reply(spec_d, chain[0], chain[1:], self.template_id, self.notices)
            out.append({"reply": reply, "kind": "notice", "dedupe_key": key})
        return out

    async def _subs(self, **filters: Any) -> list[Subscription]:
        out: list[Subscription] = []
        after: int | None = None
        while True:
            page = await self.core.list_subscriptions(**filters, limit=SUB_PAGE, after_id=after)
            out.extend(page)
            if len(page) < SUB_PAGE:
                return out
            after = page[-1].id

    async def route(self, subs: list[Subscription]) -> list[list[Target]]:
        """One delivery chain (first target + fallbacks) per subscription."""
        emails: dict[str, str] = {}
        for sub in subs:
            if sub.channel == "email" and "email" in self.channels:
                emails.setdefault(sub.account_number, sub.identity)
        # The registered phone is needed only where the subscribed channel may refuse.
        need_phone = {s.account_number for s in subs if s.channel in ("wechat", "alipay") or s.channel not in self.channels}
        phones = await self._phones(need_phone) if "sms" in self.channels else {}
        chains: list[list[Target]] = []
        for sub in subs:
            chain: list[Target] = []
            identity = sub.identity.strip()
            if sub.channel == "sms":
                identity = sms_number(identity) or ""
            if sub.channel in self.channels and identity:
                chain.append(Target(sub.channel, identity))
            if sub.channel == "wechat" and self.template_id and "wechat" in self.channels and identity:
                chain.append(Target("wechat", identity, template=True))
            if sub.channel != "sms" and phones.get(sub.account_number):
                chain.append(Target("sms", phones[sub.account_number]))
            if sub.channel != "email" and emails.get(sub.account_number):
                chain.append(Target("email", emails[sub.account_number]))
            if chain:
                chains.append(chain)
            else:
                log.info("notify: no reachable channel for account %s", mask_account(sub.account_number))
        return chains

    async def _phones(self, accounts: set[str]) -> dict[str, str]:
        sem = asyncio.Semaphore(16)
        found: dict[str, str] = {}

        async def one(no: str) -> None:
            async with sem:
                try:
                    acc = await self.core.get_account(no)
                except CoreUnavailable:
                    raise
                except CoreError:
                    return
            phone = sms_number(acc.phone)
            if phone:
                found[no] = phone

        await asyncio.gather(*(one(no) for no in sorted(accounts)))
        return found


def _position(cursor: str | None) -> int:
    return int(cursor) if cursor and cursor.isdigit() else 0


def _now() -> datetime:
    return datetime.now(timezone.utc)


def group_by_account(subs: list[Subscription]) -> dict[str, list[Subscription]]:
    out: dict[str, list[Subscription]] = defaultdict(list)
    for s in subs:
        out[s.account_number].append(s)
    return out


async def read_cursor(sm: async_sessionmaker[AsyncSession], feed: str = FEED) -> str | None:
    async with sm() as s:
        return (await s.execute(select(NotifyCursor.cursor).where(NotifyCursor.name == feed))).scalar()
