"""Hostile and careless input on the message path, on both stores: one bad message never
costs a neighbour theirs, a poison message never freezes a conversation, message ids are per
sender, malformed requests get RFC 9457 problems."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from bot.app import SESSIONMAKER
from bot.models import InboundMessage
from bot.pipeline import Pipeline
from channels.base import Message, Reply
from stack import run_core, run_gateway


@pytest_asyncio.fixture
async def gw(store_url, interpreter, tmp_path) -> AsyncIterator:  # type: ignore[no-untyped-def]
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as core:
        async with run_gateway(store_url, core.url, interpreter, data_dir=tmp_path) as g, \
                aiohttp.ClientSession() as http:
            g.http = http  # type: ignore[attr-defined]
            yield g


async def post_raw(gw, body: bytes) -> tuple[int, str, object]:  # type: ignore[no-untyped-def]
    async with gw.http.post(f"{gw.url}/webhooks/rest/webhook", data=body,
                            headers={"Content-Type": "application/json"}) as r:
        text = await r.text()
        return r.status, r.content_type, (json.loads(text) if text else None)


async def say(gw, sender: str, message: str, **extra) -> list[dict]:  # type: ignore[no-untyped-def]
    status, _, body = await post_raw(gw, json.dumps({"sender": sender, "message": message, **extra}).encode())
    assert status == 200, body
    return body  # type: ignore[return-value]


async def stored(gw, *where) -> int:  # type: ignore[no-untyped-def]
    async with gw.app[SESSIONMAKER]() as s:
        return (await s.execute(select(func.count()).select_from(InboundMessage).where(*where))).scalar_one()


async def test_one_bad_character_costs_no_neighbour_its_message(gw) -> None:
    senders = [f"n-{uuid.uuid4().hex[:8]}" for _ in range(40)]
    bodies = [json.dumps({"sender": s, "message": "你好"}).encode() for s in senders]
    bad = f"bad-{uuid.uuid4().hex[:8]}"
    # a lone surrogate and a NUL, as JSON escapes (valid JSON, invalid text)
    bodies.insert(17, ('{"sender": "%s", "message": "\\ud800\\u0000查电费"}' % bad).encode())
    results = await asyncio.gather(*(post_raw(gw, b) for b in bodies))
    assert [st for st, _, _ in results] == [200] * len(bodies), results
    assert all(body for _, _, body in results)  # every one answered inline
    for s in [*senders, bad]:
        assert await stored(gw, InboundMessage.sender_id == s) == 1, s
    async with gw.app[SESSIONMAKER]() as s:
        text = (await s.execute(select(InboundMessage.text).where(InboundMessage.sender_id == bad))).scalar_one()
    assert text == "\ufffd查电费"


async def test_a_sender_id_that_is_not_text_is_refused_and_nothing_stored(gw) -> None:
    status, ctype, body = await post_raw(gw, b'{"sender": "x\\ud800y", "message": "hi"}')
    assert status == 400 and ctype == "application/problem+json" and body["status"] == 400  # type: ignore[index]
    assert await stored(gw, InboundMessage.sender_id.like("x%y")) == 0


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"sender": "a", "message": "b", "metadata": ' + b'{"k": ' * 50 + b"1" + b"}" * 50 + b"}",
    b'{"sender": "a", "message": "b", "message_id": ["x"]}',
    b'{"sender": "a", "message": "b", "metadata": [1]}',
    b'{"sender": ["a"], "message": "b"}',
    b"\xff\xfe",
])
async def test_malformed_bodies_get_a_problem_document(gw, body: bytes) -> None:
    status, ctype, doc = await post_raw(gw, body)
    assert status == 400 and ctype == "application/problem+json", (status, doc)
    assert doc["title"] and doc["detail"] and doc["status"] == 400  # type: ignore[index]
    assert await stored(gw) == 0


async def test_message_ids_are_deduplicated_per_sender(gw) -> None:
    mid = "m-1"
    first = await say(gw, "alice-1", "你好", message_id=mid)
    hazard = await say(gw, "bob-1", "楼道里电线断了在冒火花", message_id=mid)  # not suppressed
    assert first and hazard and "安全" in repr(hazard)
    assert await say(gw, "bob-1", "楼道里电线断了在冒火花", message_id=mid) == []  # bob's own retry is
    assert await stored(gw, InboundMessage.dedupe_key == mid) == 2


@pytest.mark.parametrize("poison", [
    '/report_outage{"address": 12}',
    '/outage_schedule{"date": "2026-13-45", "district": ["浦东"]}',
    '/bill_query{"account_number": [3100000001]}',
    '/bill_query[1, 2]',
    '/report_outage{"address": ' + "[" * 5000 + "]" * 5000 + "}",
])
async def test_a_poison_payload_is_answered_at_once_and_frees_the_conversation(gw, poison: str) -> None:
    sender = f"p-{uuid.uuid4().hex[:8]}"
    out = await say(gw, sender, poison)
    assert out and "系统繁忙" not in repr(out), out
    nxt = await say(gw, sender, "你好")
    assert nxt and "系统繁忙" not in repr(nxt), nxt  # answered now, not after retries of the first
    async with gw.app[SESSIONMAKER]() as s:
        rows = (await s.execute(select(InboundMessage.status, InboundMessage.attempts)
                                .where(InboundMessage.sender_id == sender))).all()
    assert [r.status for r in rows] == ["done", "done"] and max(r.attempts for r in rows) <= 1, rows


class Crashing:
    """A dialogue whose turn fails on one message the way a bug would (not the core, not the store)."""

    async def handle(self, message: Message) -> list[Reply]:
        if message.text == "崩溃":
            raise TypeError("unsupported operand")
        return [Reply(channel=message.channel, recipient_id=message.sender_id, text=f"echo:{message.text}")]


async def test_a_turn_that_cannot_succeed_is_answered_at_once_not_retried(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    pipe = Pipeline(sessionmaker, Crashing())
    await pipe.start()
    try:
        got = await pipe.receive(Message("rest", "u1", "崩溃", "b1"), wait=5)
        assert got.replies and "没能处理" in got.replies[0].text
        nxt = await pipe.receive(Message("rest", "u1", "next", "b2"), wait=5)
        assert nxt.replies and nxt.replies[0].text == "echo:next"
        async with sessionmaker() as s:
            rows = dict((await s.execute(select(InboundMessage.text, InboundMessage.status))).all())
        assert rows == {"崩溃": "failed", "next": "done"}
    finally:
        await pipe.stop()


async def test_a_row_the_store_refuses_fails_alone(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    pipe = Pipeline(sessionmaker, Crashing())
    await pipe.start()
    try:
        msgs = [Message("rest", f"s{i}", f"m{i}", f"id{i}") for i in range(20)]
        broken = Message("rest", "s-broken", "x", "idx", received_at=None)  # type: ignore[arg-type]
        msgs.insert(7, broken)
        results = await asyncio.gather(*(pipe.receive(m, wait=5) for m in msgs), return_exceptions=True)
        assert isinstance(results[7], Exception)
        good = [r for i, r in enumerate(results) if i != 7]
        assert all(not isinstance(r, BaseException) and r.replies for r in good), good
        async with sessionmaker() as s:
            senders = set((await s.execute(select(InboundMessage.sender_id))).scalars())
        assert senders == {f"s{i}" for i in range(20)}
    finally:
        await pipe.stop()


async def test_upgrade_forgets_phone_links_no_platform_proved(store_url: str) -> None:
    """Links made by the look of a REST sender id go; an SMS sender's and verified links stay."""
    from bot.db import make_engine
    from bot.dialogue.store import Customer, CustomerAccount, Identity
    from bot.migrate import BOT_MIGRATIONS, upgrade

    await upgrade(store_url, BOT_MIGRATIONS, "bot_0017_inbound_dedupe_sender")
    engine = make_engine(store_url)
    try:
        async with engine.begin() as conn:
            for cid in (1, 2):
                await conn.execute(Customer.__table__.insert().values(id=cid))
            await conn.execute(Identity.__table__.insert(), [
                {"channel": "rest", "sender_id": "+8613900139000", "customer_id": 1},
                {"channel": "sms", "sender_id": "+8613800138000", "customer_id": 2}])
            await conn.execute(CustomerAccount.__table__.insert(), [
                {"customer_id": 1, "account_number": "3100000002", "how": "phone"},
                {"customer_id": 1, "account_number": "3100000009", "how": "verified"},
                {"customer_id": 2, "account_number": "3100000001", "how": "phone"}])
        await upgrade(store_url, BOT_MIGRATIONS)
        async with engine.connect() as conn:
            left = set((await conn.execute(select(CustomerAccount.customer_id, CustomerAccount.account_number))).all())
    finally:
        await engine.dispose()
    assert left == {(1, "3100000009"), (2, "3100000001")}
