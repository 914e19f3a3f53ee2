"""Local platforms for the notification tests: an SMS provider (aiohttp) and an SMTP relay
(aiosmtpd), both on 127.0.0.1, plus helpers to subscribe customers picked from the core store.

The provider is ``sms_platform``'s, with this suite's credentials: it checks our signed API
calls independently of our code and can inject failures or hang requests to simulate a crash
while sends are in flight.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text

from sms_platform import FakeSmsProvider, run_provider

SMS_SECRET = "notify-sms-secret"
SMS_KEY = "notify-sms-key"


def run_sms_provider() -> AbstractAsyncContextManager[FakeSmsProvider]:
    """The local SMS provider with this suite's credentials, recording every send (no
    ``client_ref`` dedupe: a notice sent twice must show)."""
    return run_provider(secret=SMS_SECRET, api_key=SMS_KEY, honour_refs=False)


class RelayHandler:
    def __init__(self) -> None:
        self.mails: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def] # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.mails.append((list(envelope.rcpt_tos), msg))
        return "250 OK"

    def to(self, addr: str) -> list[email.message.EmailMessage]:
        return [m for rcpts, m in self.mails if addr in rcpts]


@asynccontextmanager
async def run_relay() -> AsyncIterator[tuple[RelayHandler, int]]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    handler = RelayHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def gateway_settings(provider: FakeSmsProvider, relay_port: int, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sms_api_base_url": provider.url,
        "sms_api_key": SMS_KEY,
        "sms_secret": SMS_SECRET,
        "sms_outbound_per_minute": 0,
        "smtp_relay_host": "127.0.0.1",
        "smtp_relay_port": relay_port,
        "notify_quiet_hours": "",
        "notify_poll_seconds": 0.1,
        "operator_token": "op-token-for-tests",
    }
    base.update(extra)
    return base


def accounts_by_district(core_db_url: str) -> dict[str, list[tuple[str, str]]]:
    """(account_number, phone) per district with distinct phones, read from the core store (test setup only)."""
    url = core_db_url.replace("+aiosqlite", "")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT district, account_number, phone FROM accounts ORDER BY account_number")).all()
    finally:
        engine.dispose()
    out: dict[str, list[tuple[str, str]]] = {}
    seen: set[str] = set()
    for district, acc, phone in rows:
        if phone in seen:  # households sharing a phone get one SMS: keep the tests' counts simple
            continue
        seen.add(phone)
        out.setdefault(district, []).append((acc, phone))
    return out


def e164(phone: str) -> str:
    return "+86" + phone[-11:]
