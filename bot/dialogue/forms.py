"""Forms: slot filling, validation, confirmation — how a flow asks for what it needs.

A flow is re-run from the top each turn; ``require`` returns a filled slot or asks for it
(``ask``: remember which slot the form waits for, say the question, raise ``Stop`` to end the
turn). On the next turn the policy gives the answer to ``fill_requested``, which reads and
validates the value of *that* slot (an account number, the last 4 digits of a phone, a
choice among offered buttons, a date...) from the parse's entities or the raw text
(``intents.slots``). ``confirm`` asks a yes/no question before a side effect; ``_clear_form``
forgets the open form (cancel, interruption, hand-off).

Expects of the class it is mixed into: ``say`` (``Responses``); ``account`` and
``_chosen_account`` (``IdentityMixin``: an answer that is an account number is looked up before
it is accepted, a pick among offered accounts is read the way they were offered); and
``sender_proofs`` (a channel that proves the sender's phone spares asking for one).
"""

from __future__ import annotations

from typing import Any

from backend_client import NotFound
from bot.dialogue.flows import BUSINESS_INTENTS
from bot.dialogue.responses import local
from bot.dialogue.turn import Turn
from bot.logs import mask_account
from channels.base import proven_phone
from intents.payload import chosen_option
from intents.signals import topic, wants_anonymity
from intents.slots import account_number, choice, contact_name, iso_date, kwh, last4, mobile, work_order_id

# slots that belong to one request; cleared when a new business request starts
TURN_SLOTS = ("month", "date", "kwh", "work_order_id", "description", "topic", "hall_id", "slot_id",
              "contact_phone", "contact_name", "location", "district", "anonymous", "payment_ref")


class Stop(Exception):
    """A flow asked the customer something (or finished early): end the turn here."""


class FormsMixin:
    """Slot filling and validation (mixed into ``DialogueEngine``)."""

    def ask(self, turn: Turn, flow: str, slot: str, response: str, /, **values: Any) -> None:
        """Ask for ``slot`` of ``flow`` with ``response`` and end the turn."""
        turn.state["form"] = {"name": flow, "slot": slot}
        self.say(turn, response, **values)
        raise Stop

    def finish(self, turn: Turn) -> None:
        turn.state["form"] = None
        turn.slots.pop("_confirmed", None)

    def _clear_form(self, turn: Turn) -> None:
        turn.state["form"] = None
        turn.slots.pop("_confirmed", None)

    def require(self, turn: Turn, flow: str, slot: str, response: str, /, **values: Any) -> Any:
        """The value of ``slot``, or ask for it (an empty contact phone is an answer: anonymous)."""
        v = turn.slots.get(slot)
        if v is None or v == "" and slot != "contact_phone":
            self.ask(turn, flow, slot, response, **values)
        return v

    def confirm(self, turn: Turn, flow: str, response: str, /, **values: Any) -> None:
        """Go on once the customer said yes to ``response``; ask it otherwise."""
        if turn.slots.get("_confirmed") == flow:
            turn.slots.pop("_confirmed", None)
            turn.state["form"] = None
            return
        self.ask(turn, flow, "confirm", response, **values)

    async def contact_phone(self, turn: Turn, flow: str) -> str:
        """A number to call back: given in this request, the verified account's, the one the
        channel proves, or asked for."""
        p = turn.slots.get("contact_phone")
        if p:
            return p
        number = turn.slots.get("account_number")
        if number and number in turn.authorized:
            acc = await self.account(turn, number)
            if mobile(acc.phone):
                return mobile(acc.phone)  # type: ignore[return-value]
        proven = proven_phone(turn.message, self.sender_proofs)
        if proven:
            return proven
        return self.require(turn, flow, "contact_phone", "utter_ask_contact_phone")

    def _order_done(self, turn: Turn, wo: Any, response: str, **values: Any) -> None:
        """A form that ends by creating a work order: record it, close the form, say so."""
        turn.actions.append(("action_create_work_order", {"id": wo.id, "type": wo.type, "priority": wo.priority}))
        turn.set_slot("work_order_id", wo.id)
        self.finish(turn)
        self.say(turn, response, work_order_id=wo.id, sla=local(wo.sla_due_at), **values)

    def _take_entities(self, turn: Turn) -> None:
        """Fill the slots a new request already names (an account, a month, a work order...)."""
        text = turn.message.text or ""
        e = turn.entities
        acc = e.get("account_number") or account_number(text)
        if acc:
            turn.set_slot("account_number", str(acc))
        for name in ("month", "date", "district", "work_order_id"):
            if e.get(name):
                turn.set_slot(name, e[name])
        if not e.get("work_order_id") and (wid := work_order_id(text)):
            turn.set_slot("work_order_id", wid)
        if e.get("phone_number"):
            turn.set_slot("contact_phone", mobile(str(e["phone_number"])) or e["phone_number"])
        if e.get("address"):
            turn.set_slot("address", e["address"])
        if (amount := kwh(text)):
            turn.set_slot("kwh", amount)

    async def fill_requested(self, turn: Turn, form: dict) -> bool:
        """Extract and validate the value of the slot the form asked for."""
        slot = form.get("slot")
        text = (turn.message.text or "").strip()
        e = turn.entities
        if slot == "confirm":
            if turn.intent == "affirm":
                turn.slots["_confirmed"] = form["name"]
                return True
            if turn.intent == "deny":
                self._clear_form(turn)
                self.say(turn, "utter_cancelled")
                raise Stop
            return False
        if slot == "account_number" and form.get("name") == "work_order_status":
            wid = e.get("work_order_id") or work_order_id(text)
            if wid:  # "which account?" answered with the work order number itself
                turn.set_slot("work_order_id", str(wid).upper())
                return True
        if slot == "account_number" and form.get("options"):
            chosen = self._chosen_account(text, form["options"])
            if chosen:
                turn.set_slot("account_number", chosen)
                return True
        if slot in ("account_number", "location"):
            acc = e.get("account_number") or account_number(text)
            if acc:
                try:
                    await self.account(turn, str(acc))
                except NotFound:
                    self.say(turn, "utter_account_not_found", account=mask_account(str(acc)))
                    raise Stop from None
                turn.set_slot("account_number", str(acc))
                turn.slots.pop("_verify_for", None)
                return True
            if slot == "location" and (e.get("address") or e.get("district") or len(text) >= 4):
                if turn.intent in BUSINESS_INTENTS - {"report_outage", "repair_request"} and turn.confidence > 0.8:
                    return False
                turn.set_slot("address", e.get("address") or text)
                if e.get("district"):
                    turn.set_slot("district", e["district"])
                return True
            return False
        if slot == "last4":
            full = mobile(str(e.get("phone_number") or "")) or mobile(text)
            if full:  # people type the whole number; it is checked whole, not just its tail
                turn.slots["_last4"] = full
                return True
            digits = last4(text)
            if digits is None:
                return False
            turn.slots["_last4"] = digits
            return True
        if slot == "contact_phone":
            if wants_anonymity(text) and form.get("name") == "report_violation":
                turn.set_slot("anonymous", True)
                turn.set_slot("contact_phone", "")
                return True
            p = mobile(str(e.get("phone_number") or "")) or mobile(text)
            if p:
                turn.set_slot("contact_phone", p)
                return True
            return False
        if slot in ("address", "district"):
            if turn.intent in BUSINESS_INTENTS and turn.confidence > 0.9 and not e.get("address"):
                return False
            if e.get("district"):
                turn.set_slot("district", e["district"])
            val = e.get("address") or text
            if len(val) < 2:
                return False
            turn.set_slot(slot, e.get("district") if slot == "district" and e.get("district") else val)
            return True
        if slot == "date":
            day = e.get("date") or iso_date(text)
            if day:
                turn.set_slot("date", day)
                return True
            return False
        if slot == "work_order_id":
            wid = e.get("work_order_id") or work_order_id(text)
            if wid:
                turn.set_slot("work_order_id", str(wid).upper())
                return True
            return False
        if slot == "description":
            if len(text) < 2 or turn.intent in ("affirm", "deny"):
                return False
            turn.set_slot("description", text)
            return True
        if slot == "contact_name":
            name = contact_name(text)
            if name is not None:
                turn.set_slot("contact_name", name)
                return True
            return False
        if slot in ("hall_id", "slot_id"):
            options = form.get("options") or []
            k = choice(text)
            if k is not None:
                if 1 <= k <= len(options):
                    turn.set_slot(slot, options[k - 1])
                    return True
                if k in options:
                    turn.set_slot(slot, k)
                    return True
            picked = chosen_option(text, slot)
            if picked is not None and picked in options:
                turn.set_slot(slot, picked)
                return True
            return False
        if slot == "topic":
            named = topic(text)
            if named:
                turn.set_slot("topic", named)
                return True
            if turn.intent == "affirm":
                turn.set_slot("topic", "all")
                return True
            return False
        if slot == "kwh":
            amount = kwh(text, bare_number=True)
            if amount:
                turn.set_slot("kwh", amount)
                return True
            return False
        return False
