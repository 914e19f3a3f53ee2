"""End to end on PostgreSQL: customer mail in through our SMTP server, the real dialogue engine and
core answer, the answer leaves through a real aiosmtpd relay, threaded; re-delivery is harmless."""

from __future__ import annotations

import asyncio
import email
import uuid
from email import policy
from email.message import EmailMessage

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy import func, select

from bot.app import CHANNELS, SESSIONMAKER
from bot.models import InboundMessage
from stack import run_core, run_gateway, wait_until


class Relay:
    def __init__(self) -> None:
        self.mails: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.mails.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def pg_pair(postgres) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return postgres.new_database("pbmail"), postgres.new_database("pbmailcore")


@pytest.mark.postgres
async def test_mail_round_trip_on_postgres(interpreter, tmp_path, pg_pair) -> None:
    relay = Relay()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(relay), "127.0.0.1", 0)
    try:
        async with run_core(pg_pair[1]) as core, run_gateway(
            pg_pair[0], core.url, interpreter, data_dir=tmp_path, smtp_port=0,
            smtp_relay_host="127.0.0.1", smtp_relay_port=server.sockets[0].getsockname()[1],
            mail_from="95598@powerbot.local", notify_quiet_hours="", notify_enabled=False,
        ) as gw:
            port = gw.app[CHANNELS]["email"].bound_port
            addr = f"wang.{uuid.uuid4().hex[:6]}@example.com"
            msg = EmailMessage()
            msg["From"] = addr
            msg["To"] = "95598@powerbot.local"
            msg["Subject"] = "计划停电"
            msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.com>"
            msg.set_content("明天会停电吗？")
            for _ in range(2):  # the sending server retries after a lost 250
                await aiosmtplib.send(msg, hostname="127.0.0.1", port=port, start_tls=False, timeout=10)
            await wait_until(lambda: [m for m in relay.mails if m["To"] == addr], timeout=20)
            await asyncio.sleep(1.0)
            answers = [m for m in relay.mails if m["To"] == addr]
            assert answers[0]["Subject"] == "Re: 计划停电"
            assert answers[0]["In-Reply-To"] == msg["Message-ID"]
            assert answers[0].get_body(("plain",)).get_content().strip()
            async with gw.app[SESSIONMAKER]() as s:
                n = await s.scalar(select(func.count()).select_from(InboundMessage).where(InboundMessage.sender_id == addr))
            assert n == 1
            first_batch = len(answers)
            assert first_batch >= 1 and all(a["In-Reply-To"] == msg["Message-ID"] for a in answers)
    finally:
        server.close()
