"""Hazards: a fallen wire, sparks, smoke, a burning smell — safety before anything else.

The safety script first (for a smoking socket or appliance, the main switch too), then the
hazard's own form — where, a contact phone (a proven or verified one is offered), a yes showing
what will be filed — and only then the emergency repair order, dispatched to a crew; the bot
keeps answering (a queue for an agent would only tell the customer to wait). Fire or a person
hurt also alerts an agent at once while the report goes on; while that handoff waits the bot
still answers (``engine._hazard_waiting``).

Expects of the class it is mixed into: ``core``; ``require``, ``confirm``, ``finish``,
``_clear_form``, ``_known_phone``, ``_proven_account`` (``FormsMixin``); ``run_flow``
(``PolicyMixin``); ``say`` (``Responses``).
"""

from __future__ import annotations

from bot.dialogue.flows import remember_order
from bot.dialogue.flows.places import address_for
from bot.dialogue.turn import Turn
from bot.logs import mask_phone, mask_text
from intents.signals import about_appliance, address_text, is_life_threatening, looks_like_address

EMERGENCY = "emergency"


class HazardFlows:
    async def emergency(self, turn: Turn) -> None:
        """A hazard: the safety script first, then its own form and the emergency repair order
        (see the module). Whatever was open is dropped."""
        self._clear_form(turn)
        turn.state.pop("offer", None)
        turn.state.pop("paused", None)
        self.say(turn, "utter_emergency_safety", urgent=True)
        if about_appliance(turn.message.text or ""):
            self.say(turn, "utter_emergency_switch_off", urgent=True)
        if is_life_threatening(turn.message.text or ""):
            # fire or a person hurt: an agent is alerted now; the bot still takes the report
            # (the engine lets this form go on while the hazard's handoff waits for an agent)
            turn.handoff = ("hazard", "emergency", f"hazard: {mask_text(turn.message.text or '')[:200]}")
            turn.actions.append(("action_handoff", {"reason": "hazard", "priority": "emergency"}))
            self.say(turn, "utter_emergency_alerted", urgent=True)
        await self.run_flow(turn, EMERGENCY)

    def _hazard_place(self, turn: Turn) -> None:
        """Where the hazard is, when its first message says it ("…on fire at 300 Gumei Road")."""
        text = turn.message.text or ""
        if not turn.slots.get("address") and any(ch.isdigit() for ch in text) and looks_like_address(text):
            place = address_text(text)
            if place and any(ch.isdigit() for ch in place):
                turn.set_slot("address", place)

    async def flow_emergency(self, turn: Turn) -> None:
        flow = EMERGENCY
        if not turn.state.get("form"):
            self._hazard_place(turn)
        if not turn.slots.get("address") and about_appliance(str(turn.slots.get("_text") or "")):
            # a socket or the meter box at home: the account's address, once the account is checked
            checked = await self.account_by_check(turn, flow)
            number = self._proven_account(turn)
            if checked or number:
                turn.set_slot("address", (checked or await self.account(turn, str(number))).address)
        address = self.require(turn, flow, "address", "utter_ask_hazard_location")
        phone = turn.slots.get("contact_phone")
        offered = None
        if not phone:
            offered = await self._known_phone(turn)
            if not offered:
                phone = self.require(turn, flow, "contact_phone", "utter_ask_hazard_phone")
        phone = phone or offered
        self.confirm(turn, flow, "utter_confirm_emergency", address=address_for(address, turn.lang), phone=mask_phone(phone or "") or "-")
        number = self._proven_account(turn)
        wo = await self.core.create_work_order(
            "repair", str(turn.slots.get("_text") or "")[:500], account_number=number, priority="emergency",
            channel=turn.message.channel, contact_phone=phone, address=address,
            details={"hazard": True, "conversation_id": turn.conversation_id,
                     **({"district": turn.slots["district"]} if turn.slots.get("district") else {})},
            idempotency_key=f"{turn.key}:wo",
        )
        turn.actions.append(("action_create_work_order", {"id": wo.id, "type": "repair", "priority": "emergency"}))
        turn.set_slot("work_order_id", wo.id)
        remember_order(turn, wo.id)
        self.finish(turn)
        self.say(turn, "utter_emergency_order", work_order_id=wo.id)
