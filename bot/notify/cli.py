"""``powerbot notify ...`` — operator commands of the notification pipeline."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import click


def _parse_time(value: str, tz: str) -> datetime:
    """ISO 8601 (``2026-12-01T09:00``, ``2026-12-01 09:00``); without offset → local ``tz``."""
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r} (e.g. 2026-12-01T09:00)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(tz))
    return dt.astimezone(timezone.utc)


@click.group()
def notify() -> None:
    """Proactive notifications (planned outages, bills, work orders)."""


@notify.command("outage")
@click.option("--district", required=True, help="District whose subscribers are told (e.g. 浦东新区).")
@click.option("--start", "start", required=True, help="Start, ISO 8601; local time (POWERBOT_NOTIFY_TIMEZONE) if no offset.")
@click.option("--end", "end", required=True, help="Estimated end, ISO 8601.")
@click.option("--cause", required=True, help="Reason shown to customers (e.g. 线路检修).")
@click.option("--scope", default=None, help="Area description (default: the district).")
@click.option("--street", "streets", multiple=True, help="Affected street (repeatable).")
@click.option("--key", "idempotency_key", default=None, help="Idempotency key (re-running creates nothing new).")
def outage(district: str, start: str, end: str, cause: str, scope: str | None, streets: tuple[str, ...],
           idempotency_key: str | None) -> None:
    """Create a planned outage in the core; the running gateway notifies its subscribers."""
    from backend_client import CoreClient, CoreError
    from bot.settings import get_settings

    s = get_settings()
    start_at, end_at = _parse_time(start, s.notify_timezone), _parse_time(end, s.notify_timezone)
    if end_at <= start_at:
        raise click.BadParameter("--end must be after --start")
    if start_at < datetime.now(timezone.utc) - timedelta(minutes=5):
        raise click.BadParameter("--start is in the past")

    async def go() -> dict[str, object]:
        async with CoreClient(s.core_base_url, timeout=s.core_timeout_seconds, token=s.core_token()) as core:
            o = await core.create_outage(
                "planned", district, scope or district, start_at, estimated_end_at=end_at, cause=cause,
                streets=list(streets), idempotency_key=idempotency_key,
            )
            return o.model_dump(mode="json")

    try:
        doc = asyncio.run(go())
    except CoreError as exc:
        raise click.ClickException(f"core refused the outage: {exc}") from None
    click.echo(json.dumps({"outage": doc}, ensure_ascii=False))


@notify.command("run-once")
@click.option("--drain/--one-page", default=True, help="Read the feed to its end (default) or one page.")
def run_once(drain: bool) -> None:
    """Read the core's event feed now and queue the notices (the gateway's outbox sends them)."""
    from backend_client import CoreClient
    from bot.db import make_engine, make_sessionmaker
    from bot.notify.producer import Producer
    from bot.settings import get_settings

    s = get_settings()

    async def go() -> tuple[int, int]:
        engine = make_engine(s.bot_db_url)
        try:
            async with CoreClient(s.core_base_url, timeout=s.core_timeout_seconds, token=s.core_token()) as core:
                on = _configured_channels(s)
                p = Producer(make_sessionmaker(engine), core, s, on)
                n = await (p.drain() if drain else p.run_once())
                return n, p.enqueued_total
        finally:
            await engine.dispose()

    events, notices = asyncio.run(go())
    click.echo(json.dumps({"events": events, "notices_queued": notices}))


def _configured_channels(s: object) -> list[str]:
    """Channels whose settings are present (what the gateway would switch on)."""
    on = []
    if getattr(s, "wechat_appid", None) and getattr(s, "wechat_token", None):
        on.append("wechat")
    if getattr(s, "alipay_appid", None):
        on.append("alipay")
    if getattr(s, "sms_api_base_url", None) and getattr(s, "sms_secret", None):
        on.append("sms")
    if getattr(s, "smtp_relay_host", None):
        on.append("email")
    return on
