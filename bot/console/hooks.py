"""How the console sees the conversation flow without changing the engine.

``ConsoleHandler`` wraps the dialogue engine as the pipeline's ``TurnHandler`` (the pipeline
calls ``decide`` and, once the turn is committed, ``after_commit``; conversations are
processed one message at a time, in order):

- after a turn that opened a handoff it publishes a "queued" live event, and when no agent is
  online it tells the customer the expected wait and offers a callback work order;
- while such an offer is open, "回电"/"callback" creates the work order in the core;
- after an agent closed the conversation, the next message "5" / "4分" / "五星" is taken as
  the satisfaction score (anything else is passed to the bot as usual).

A customer writing while handed off produces a "message" live event for the agents' browsers
once the message is recorded.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from sqlalchemy import String, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend_client import CoreClient, CoreError
from bot.console import service
from bot.console.access import event_fields
from bot.console.events import EventBus
from bot.console.models import CallbackOffer, ConsoleMessage, Satisfaction
from bot.dialogue.handoff import Handoff, get_active_handoff
from bot.dialogue.turn import Committed, Snapshot, TurnResult
from bot.langs import detect_language
from bot.models import utcnow
from bot.pipeline import as_turn_handler
from bot.texts import TextService
from channels.base import Message, Reply
from intents.slots import mobile

log = logging.getLogger("powerbot.console")

CALLBACK_TYPE = {"hazard": "repair", "complaint_angry": "complaint", "complaint_follow_up": "complaint"}

# What the pre-turn hook needs to know when no handoff is active: is a satisfaction question
# open? The engine reads it in its one tracker statement and skips the hook when it is NULL.
SATISFACTION_PROBE = (
    select(Satisfaction.__table__.c.id)
    .where(Satisfaction.__table__.c.conversation_id == bindparam("cid", type_=String()),
           Satisfaction.__table__.c.status == "asked")
    .limit(1)
    .scalar_subquery()
)


class ConsoleHandler:
    """The pipeline's ``TurnHandler`` around the dialogue engine (see the module docstring)."""

    def __init__(self, inner: Any, sessionmaker: async_sessionmaker[AsyncSession], core: CoreClient, bus: EventBus,
                 texts: TextService | None = None) -> None:
        self.inner = as_turn_handler(inner)
        self.texts = texts if texts is not None else TextService()
        self.sessionmaker = sessionmaker
        self.core = core
        self.bus = bus
        self.store = self.inner.store
        # the snapshot also reads whether a satisfaction question is open (NULL: nothing to do)
        self.probe = SATISFACTION_PROBE if self.store is not None else None

    def __getattr__(self, name: str) -> Any:  # anything else a caller might use
        return getattr(self.inner, name)

    async def decide(self, message: Message, snapshot: Snapshot | None) -> TurnResult:
        if snapshot is None or snapshot.replay is not None:
            return await self.inner.decide(message, snapshot)
        cid = message.conversation_id
        lang = detect_language(message.text)
        before = snapshot.handoff
        offer = None
        if before is None and snapshot.probe:
            event: dict[str, Any] | None = None
            async with self.sessionmaker() as session, session.begin():
                pending = await service.pending_satisfaction(session, cid)
                if pending is not None:
                    score = service.parse_score(message.text)
                    if score is not None:
                        pending.status, pending.score, pending.answered_at = "answered", score, utcnow()
                        session.add(ConsoleMessage(conversation_id=cid, handoff_id=pending.handoff_id, kind="system",
                                                   text=f"客户评分 {score} 分"))
                        thanks = self.texts.text("utter_csat_thanks", lang=lang, channel=message.channel, score=score)
                        event = {"type": "satisfaction", "handoff_id": pending.handoff_id, "conversation_id": cid,
                                 "score": score, "status": "released", "holder": pending.agent_name}
                    else:
                        pending.status = "skipped"
            if event is not None:
                await self.bus.publish(event)
                return TurnResult(message=message, replies=[self._reply(message, thanks)], snapshot=snapshot)
        elif before is not None and before.status == "waiting" and service.wants_callback(message.text):
            async with self.sessionmaker() as session, session.begin():
                offer = await service.open_callback_offer(session, before.id)
        result = await self.inner.decide(message, snapshot)
        if offer is not None:
            text = await self._create_callback(message, before, lang)
            async with self.sessionmaker() as session, session.begin():
                session.add(ConsoleMessage(conversation_id=cid, handoff_id=before.id, kind="bot", text=text))
            result.replies[:] = [self._reply(message, text)]
        return result

    async def after_commit(self, result: TurnResult, committed: Committed) -> list[Reply]:
        replies = list(await self.inner.after_commit(result, committed))
        message = result.message
        if result.withdraw_handoff is not None:
            await self._withdrawn(result.withdraw_handoff)
        elif result.kind == "handoff":
            await self._customer_wrote(message.conversation_id)
        before = result.snapshot.handoff if result.snapshot is not None else None
        after = committed.handoff_opened
        if after is not None and after.status == "waiting" and (before is None or before.id != after.id):
            await self._queued(message, after, detect_language(message.text), replies)
        return replies

    async def _withdrawn(self, handoff_id: int) -> None:
        """The customer called off a request still waiting: it leaves the agents' queue (unless
        an agent took it first, then it is theirs and the message is theirs to read)."""
        async with self.sessionmaker() as session:
            h = await session.get(Handoff, handoff_id)
        if h is None:
            return
        if h.status == "released":
            await self.bus.publish({"type": "closed", **event_fields(h), "status": "released"})
        else:
            await self._customer_wrote(h.conversation_id)

    async def _customer_wrote(self, conversation_id: str) -> None:
        """A customer wrote while handed off: a live event for the agents' browsers (routed by
        ``bot.console.access.event_for``: only those who may see the conversation)."""
        async with self.sessionmaker() as session:
            h = await get_active_handoff(session, conversation_id)
        await self.bus.publish({"type": "message", "conversation_id": conversation_id,
                                "handoff_id": h.id if h else None, "agent": h.agent_id if h else None,
                                "status": h.status if h else None, "holder": h.agent_id if h else None})

    async def _queued(self, message: Message, after: Any, lang: str, replies: list[Reply]) -> None:
        """A turn opened a handoff: tell the agents; with nobody online offer a callback."""
        cid = message.conversation_id
        async with self.sessionmaker() as session, session.begin():
            await self.bus.publish({"type": "queued", "handoff_id": after.id, "conversation_id": cid,
                                    "status": "waiting", "holder": None,
                                    "priority": after.priority, "reason": after.reason})
            if not await service.agents_online(session):
                wait = await service.estimated_wait(session, cid)
                session.add(CallbackOffer(conversation_id=cid, handoff_id=after.id, status="offered",
                                          estimated_wait_seconds=wait))
                minutes = max(1, round(wait / 60))
                notice = self.texts.text("utter_handoff_nobody_online", lang=lang, channel=message.channel,
                                         minutes=minutes)
                replies.append(self._reply(message, notice))
                session.add(ConsoleMessage(conversation_id=cid, handoff_id=after.id, kind="bot", text=notice))

    @staticmethod
    def _reply(message: Message, text: str) -> Reply:
        return Reply(channel=message.channel, recipient_id=message.sender_id, text=text)

    async def _create_callback(self, message: Message, handoff: Any, lang: str) -> str:
        from bot.console.summary import account_numbers

        numbers = await account_numbers(self.sessionmaker, self.core, message.conversation_id)
        phone = mobile(message.text or "")  # "让人回个电话给我吧 139…": the number the customer gives
        sender = message.sender_id.lstrip("+").removeprefix("86")
        if phone is None and message.channel == "sms" and sender.isdigit():
            phone = sender
        try:
            if phone is None and numbers:
                phone = (await self.core.get_account(numbers[0])).phone
            wo = await self.core.create_work_order(
                CALLBACK_TYPE.get(handoff.reason, "feedback"),
                "客户转人工时无坐席在线，请求人工回电。" + (f"（原因：{service.REASON_LABELS.get(handoff.reason, handoff.reason)}）"),
                account_number=numbers[0] if numbers else None,
                priority=handoff.priority,
                channel=message.channel,
                contact_phone=phone,
                details={"callback": True, "conversation_id": message.conversation_id, "handoff_id": handoff.id},
                # unique per conversation and handoff: a retried message never makes a second order
                idempotency_key="console-callback-{}-{}".format(
                    hashlib.sha1(message.conversation_id.encode()).hexdigest()[:16], handoff.id),
            )
        except CoreError as exc:
            log.warning("callback work order failed for handoff %s: %s", handoff.id, type(exc).__name__)
            return self.texts.text("utter_callback_failed", lang=lang, channel=message.channel)
        async with self.sessionmaker() as session, session.begin():
            offer = await service.open_callback_offer(session, handoff.id)
            if offer is not None:
                offer.status, offer.work_order_id, offer.accepted_at = "accepted", wo.id, utcnow()
        await self.bus.publish({"type": "callback", "handoff_id": handoff.id, "conversation_id": message.conversation_id,
                                "status": handoff.status, "holder": handoff.agent_id})
        return self.texts.text("utter_callback_registered", lang=lang, channel=message.channel, wo=wo.id)
