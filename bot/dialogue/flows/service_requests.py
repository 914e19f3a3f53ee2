"""Simple work-order flows: a complaint, feedback, reporting a violation (electricity theft...).

Each collects a description (a long enough first message is the description itself), a number
to call back and a confirmation, then creates a work order. An angry complaint does not wait:
its order is created at once with high priority and an agent takes over. A violation may be
reported anonymously (no callback number, no channel on the order).

Expects of the class it is mixed into: ``core``; ``hand_off`` (``PolicyMixin``); ``ask``,
``require``, ``confirm``, ``finish``, ``contact_phone``, ``_order_done`` (``FormsMixin``);
``say`` (``Responses``).
"""

from __future__ import annotations

from bot.dialogue.flows import remember_order
from bot.dialogue.turn import Turn
from intents.signals import is_angry, word_chars


class ServiceRequestFlows:
    async def flow_complaint(self, turn: Turn) -> None:
        text = str(turn.slots.get("_text") or "")
        if is_angry(text) and turn.slots.get("_confirmed") != "complaint":
            number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
            if not number and len(turn.authorized) == 1:
                number = next(iter(turn.authorized))
            wo = await self.core.create_work_order(
                "complaint", text[:500], account_number=number, priority="high", channel=turn.message.channel,
                details={"angry": True}, idempotency_key=f"{turn.key}:wo")
            turn.actions.append(("action_create_work_order", {"id": wo.id, "type": "complaint", "priority": "high"}))
            self.say(turn, "utter_complaint_sorry", work_order_id=wo.id)
            self.finish(turn)
            self.hand_off(turn, "complaint_angry", "high")
            return
        await self._simple_order(turn, "complaint", "complaint", "utter_ask_complaint", "utter_complaint_created", priority="normal")

    async def flow_feedback(self, turn: Turn) -> None:
        await self._simple_order(turn, "feedback", "feedback", "utter_ask_feedback", "utter_feedback_created", priority="low")

    async def _simple_order(self, turn: Turn, flow: str, wo_type: str, ask: str, done: str, *, priority: str) -> None:
        if not turn.slots.get("description"):
            text = str(turn.slots.get("_text") or "")
            if word_chars(text) >= 8:
                turn.set_slot("description", text)
        desc = self.require(turn, flow, "description", ask)
        phone = await self.contact_phone(turn, flow)
        number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
        if not number and len(turn.authorized) == 1:
            number = next(iter(turn.authorized))
        self.confirm(turn, flow, "utter_confirm_order", description=desc[:60])
        wo = await self.core.create_work_order(
            wo_type, desc[:500], account_number=number, priority=priority, channel=turn.message.channel,
            contact_phone=phone, idempotency_key=f"{turn.key}:wo")
        remember_order(turn, wo.id)
        self._order_done(turn, wo, done)

    async def flow_report_violation(self, turn: Turn) -> None:
        if not turn.slots.get("description"):
            text = str(turn.slots.get("_text") or "")
            if word_chars(text) >= 10:
                turn.set_slot("description", text)
        desc = self.require(turn, "report_violation", "description", "utter_ask_violation")
        address = self.require(turn, "report_violation", "address", "utter_ask_violation_address")
        if "contact_phone" not in turn.slots:
            self.ask(turn, "report_violation", "contact_phone", "utter_ask_violation_contact")
        phone = turn.slots.get("contact_phone") or None
        self.confirm(turn, "report_violation", "utter_confirm_order", description=desc[:60])
        wo = await self.core.create_work_order(
            "violation", desc[:500], priority="normal", channel=None if turn.slots.get("anonymous") else turn.message.channel,
            contact_phone=phone, address=address, details={"anonymous": bool(turn.slots.get("anonymous"))},
            idempotency_key=f"{turn.key}:wo")
        remember_order(turn, wo.id)
        self._order_done(turn, wo, "utter_violation_created")
