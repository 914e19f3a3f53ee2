"""End to end: an SMS customer is recognised by phone number and gets real answers from the core,
on SQLite and on PostgreSQL (real gateway, real dialogue engine, real core, signed provider)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy import select

from backend_client import CoreClient
from bot.app import CHANNELS, SESSIONMAKER
from bot.models import InboundMessage, OutboxMessage
from stack import run_core, run_gateway, wait_until
from sms_platform import API_KEY, SECRET, inbound_body, post_signed, run_provider

SETTINGS = dict(sms_api_key=API_KEY, sms_secret=SECRET, notify_quiet_hours="", notify_enabled=False)


async def _scenario(bot_url: str, core_url_db: str, interpreter, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with run_provider() as provider, run_core(core_url_db) as core:
        async with run_gateway(bot_url, core.url, interpreter, data_dir=tmp_path,
                               sms_api_base_url=provider.url, **SETTINGS) as gw, aiohttp.ClientSession() as http:
            url = f"{gw.url}/channels/sms"
            async with CoreClient(core.url) as cc:
                arrears = await cc.get_arrears("3100000001")
            # The customer writes from the number registered on account 3100000001, unformatted.
            r = await post_signed(http, url, inbound_body("13800138000", "查电费"))
            assert r.status == 200
            phone = "+8613800138000"
            await wait_until(lambda: provider.to(phone), timeout=20)
            await wait_until(lambda: _all_sent(gw, phone), timeout=10)
            answer = "".join(provider.texts_to(phone))
            # recognised by phone: the bot already knows this number's accounts (3100000001 and
            # another one registered with the same phone) and only asks which one
            assert "31******01" in answer, answer
            n = len(provider.to(phone))
            r = await post_signed(http, url, inbound_body(phone, "3100000001"))
            assert r.status == 200
            await wait_until(lambda: len(provider.to(phone)) > n, timeout=20)
            await wait_until(lambda: _all_sent(gw, phone), timeout=10)
            answer = "".join(provider.texts_to(phone)[n:])
            assert f"{arrears.amount_owed:.2f}" in answer, answer
            assert provider.rejected == []
            async with gw.app[SESSIONMAKER]() as s:
                rows = (await s.execute(select(InboundMessage).where(InboundMessage.sender_id == phone))).scalars().all()
            assert [r.conversation_id for r in rows] == ["sms:+8613800138000"] * 2

            # STOP from the same number: recorded, confirmed; the dialogue is not involved
            r = await post_signed(http, url, inbound_body(phone, "TD"))
            assert r.status == 200
            assert await gw.app[CHANNELS]["sms"].is_opted_out("13800138000")
            await wait_until(lambda: any("退订" in t for t in provider.texts_to(phone)), timeout=10)

            # delivery reports for every part of the first answer
            batch = provider.to(phone)[0]["client_ref"].rsplit("-", 1)[0]
            for part in [m for m in provider.to(phone) if m["client_ref"].startswith(batch + "-")]:
                body = {"message_id": part["provider_id"], "status": "delivered", "timestamp": int(time.time())}
                assert (await post_signed(http, f"{url}/status", body)).status == 200
            async with gw.app[SESSIONMAKER]() as s:
                status = (await s.execute(
                    select(OutboxMessage.status).where(OutboxMessage.provider_id == batch)
                )).scalar_one()
            assert status == "delivered"


async def _all_sent(gw, phone: str) -> bool:  # type: ignore[no-untyped-def]
    async with gw.app[SESSIONMAKER]() as s:
        rows = (await s.execute(select(OutboxMessage.status).where(OutboxMessage.recipient_id == phone))).scalars().all()
    return bool(rows) and all(st == "sent" for st in rows)


async def test_sms_customer_recognised_by_phone_sqlite(interpreter, tmp_path) -> None:
    await _scenario(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", f"sqlite+aiosqlite:///{tmp_path / 'core.db'}",
                    interpreter, tmp_path)


@pytest.fixture
def pg_pair(postgres) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return postgres.new_database("pbsms"), postgres.new_database("pbsmscore")


@pytest.mark.postgres
async def test_sms_customer_recognised_by_phone_postgres(interpreter, tmp_path, pg_pair) -> None:
    await _scenario(pg_pair[0], pg_pair[1], interpreter, tmp_path)
