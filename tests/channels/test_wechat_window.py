"""The WeChat customer-service window ledger on both stores (pinned times): a user message
opens 5 sends for 48 hours, an event 3 for a minute; sends take the event grant first; the
refusal says which rule WeChat would apply; the statements are the gateway's precompiled ones."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.precompiled import Precompiled
from channels.wechat_store import ERR_QUOTA_USED, ERR_WINDOW_CLOSED, WindowLedger

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)


async def test_sends_use_the_event_grant_first_then_the_message_grant(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    ledger = WindowLedger(sessionmaker, prepare=Precompiled)
    assert await ledger.consume("o-none", now=T0) == ERR_WINDOW_CLOSED  # never wrote
    await ledger.user_message("o1", now=T0)
    await ledger.user_event("o1", now=T0 + timedelta(seconds=1))
    st = await ledger.state("o1", now=T0 + timedelta(seconds=2))
    assert st.open and st.remaining == 8
    for _ in range(3):  # the minute's event grant goes first
        assert await ledger.consume("o1", now=T0 + timedelta(seconds=5)) is None
    st = await ledger.state("o1", now=T0 + timedelta(seconds=6))
    assert st.remaining == 5  # the 48-hour grant untouched
    for _ in range(5):
        assert await ledger.consume("o1", now=T0 + timedelta(minutes=5)) is None
    assert await ledger.consume("o1", now=T0 + timedelta(minutes=5)) == ERR_QUOTA_USED
    assert await ledger.consume("o1", now=T0 + timedelta(hours=49)) == ERR_WINDOW_CLOSED


async def test_an_expired_event_grant_is_not_used(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    ledger = WindowLedger(sessionmaker, prepare=Precompiled)
    await ledger.user_message("o2", now=T0)
    await ledger.user_event("o2", now=T0)
    assert await ledger.consume("o2", now=T0 + timedelta(minutes=2)) is None  # from the message grant
    st = await ledger.state("o2", now=T0 + timedelta(minutes=2))
    assert st.remaining == 4
    await ledger.refund("o2", now=T0 + timedelta(minutes=3))
    assert (await ledger.state("o2", now=T0 + timedelta(minutes=3))).remaining == 5
    await ledger.unsubscribed("o2", now=T0 + timedelta(minutes=4))
    assert await ledger.consume("o2", now=T0 + timedelta(minutes=5)) == ERR_WINDOW_CLOSED
