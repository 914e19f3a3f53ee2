"""A message processed again after a crash gets the answer decided the first time."""

from __future__ import annotations

import pytest_asyncio

from bot.app import PIPELINE
from channels.base import Message
from stack import run_core, run_gateway


@pytest_asyncio.fixture
async def gateway(tmp_path, interpreter):  # type: ignore[no-untyped-def]
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as core:
        async with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter, data_dir=tmp_path) as gw:
            yield core, gw


async def test_hazard_turn_replayed_not_rerun(gateway) -> None:  # type: ignore[no-untyped-def]
    core, gw = gateway
    handler = gw.app[PIPELINE].handler
    msg = Message(channel="rest", sender_id="replay-1", text="楼下电线断了掉在地上还冒火花，很危险", message_id="hz-1")
    first = await handler.handle(msg)
    assert first and any("95598" in r.text or "远离" in r.text for r in first)
    # The same message again, as after a kill between the turn's commit and the outbox:
    # the turn opened a handoff, but the customer must still get the safety advice.
    again = await handler.handle(msg)
    assert again and "远离" in again[0].text
    # The engine's replies come back as recorded (the console's "no agent online" notice, added
    # by the wrapper when the handoff opened, is not part of the turn's record).
    assert [(r.text, [b.payload for b in r.buttons]) for r in again] == [
        (r.text, [b.payload for b in r.buttons]) for r in first[: len(again)]
    ]
    # ...and a new message from the customer is a new turn (held by the handoff now).
    later = await handler.handle(
        Message(channel="rest", sender_id="replay-1", text="人呢", message_id="hz-2")
    )
    assert [r.text for r in later] != [r.text for r in first]


async def test_held_answer_never_given_is_replayed_into_the_outbox(gateway) -> None:  # type: ignore[no-untyped-def]
    """One process holds a waited-for turn's replies on its inbound row. When the channel never
    marks its inline answer (the request died, the process stopped), the row is released after
    the grace and the real engine replays the recorded replies into the outbox: the same
    replies, once, without running the turn again."""
    import asyncio

    from sqlalchemy import select

    from bot.app import SESSIONMAKER
    from bot.dialogue.store import Event
    from bot.models import InboundMessage, OutboxMessage

    _, gw = gateway
    pipeline = gw.app[PIPELINE]
    pipeline.inline_grace = 0.2
    receipt = await pipeline.receive(
        Message(channel="rest", sender_id="held-1", text="查电费", message_id="held-m1"), wait=10)
    assert receipt.replies and receipt.held is not None and receipt.outbox_ids == []
    await asyncio.sleep(0.25)
    await pipeline.recover_once()
    sm = gw.app[SESSIONMAKER]
    for _ in range(200):
        async with sm() as s:
            status = (await s.execute(select(InboundMessage.status).where(InboundMessage.id == receipt.held))).scalar()
        if status == "done":
            break
        await asyncio.sleep(0.02)
    async with sm() as s:
        rows = (await s.execute(select(OutboxMessage).where(OutboxMessage.dedupe_key.like(f"in:{receipt.held}:%"))
                                .order_by(OutboxMessage.id))).scalars().all()
        turns = (await s.execute(select(Event).where(Event.conversation_id == "rest:held-1", Event.type == "user"))
                 ).scalars().all()
    assert status == "done"
    assert [r.payload["text"] for r in rows] == [r.text for r in receipt.replies]
    assert len(turns) == 1  # replayed, not run again
    assert not await pipeline.mark_delivered_inline(receipt)  # too late: the outbox has them
