"""Outbox policies of the notification pipeline: quiet hours and channel fallback."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.models import OutboxMessage
from bot.notify.producer import Target, build_reply
from bot.notify.texts import Notices
from bot.texts import TextService
from bot.outbox import HoldPolicy, enqueue

log = logging.getLogger("powerbot.notify")


def parse_window(spec: str | None) -> tuple[time, time] | None:
    """``"22:00-08:00"`` → (22:00, 08:00); empty → None (no quiet hours)."""
    if not spec or not spec.strip():
        return None
    try:
        a, b = (part.strip() for part in spec.split("-", 1))
        start, end = time.fromisoformat(a), time.fromisoformat(b)
    except ValueError:
        raise ValueError(f"quiet hours must look like 22:00-08:00, got {spec!r}") from None
    return None if start == end else (start, end)


def quiet_until(now: datetime, window: tuple[time, time], tz: ZoneInfo) -> datetime | None:
    """End of the quiet period containing ``now`` (UTC), or None when ``now`` is not quiet."""
    start, end = window
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    quiet = (start <= t or t < end) if start > end else (start <= t < end)
    if not quiet:
        return None
    until = datetime.combine(local.date(), end, tzinfo=tz)
    if until <= local:
        until += timedelta(days=1)
    return until.astimezone(timezone.utc)


def quiet_hours_policy(spec: str | None, tz_name: str, channels: Collection[str]) -> HoldPolicy | None:
    """Hold non-urgent notices on ``channels`` (SMS by default) until the quiet period ends.

    Answers to a customer's own message (kind ``reply``) are never held: they asked.
    """
    window = parse_window(spec)
    if window is None:
        return None
    tz = ZoneInfo(tz_name)
    held = set(channels)

    def policy(row: OutboxMessage, now: datetime) -> datetime | None:
        if row.channel not in held or row.urgent or row.kind != "notice":
            return None
        return quiet_until(now, window, tz)

    return policy


class FallbackHook:
    """Dead-letter hook: a notice refused for good goes to the next channel of its chain."""

    def __init__(self, channels: Collection[str], template_id: str | None, text_service: TextService | None = None) -> None:
        self.channels = set(channels)
        self.template_id = template_id
        self.notices = Notices(text_service if text_service is not None else TextService())
        self.wake = lambda: None

    async def __call__(self, session: AsyncSession, row: OutboxMessage, error: BaseException) -> None:
        if row.kind != "notice":
            return
        meta: dict[str, Any] = (row.payload.get("metadata") or {}).get("notify") or {}
        chain = [Target(**t) for t in meta.get("fallback") or []]
        while chain:
            nxt = chain.pop(0)
            if nxt.channel not in self.channels or (nxt.template and not self.template_id):
                continue
            reply, key = build_reply(meta, nxt, chain, self.template_id, self.notices)
            new_id = await enqueue(session, reply, kind="notice", dedupe_key=key)
            log.info(
                "notify: outbox_id=%s refused on %s (%s); fallback %s outbox_id=%s",
                row.id, row.channel, getattr(error, "code", None) or type(error).__name__,
                nxt.key_channel, new_id if new_id is not None else "duplicate",
            )
            self.wake()
            return
