"""Application flows: a new connection, a solar (PV) connection, an EV charger, an account change.

All four are one form: tell the customer which materials to prepare (once), then the address
(the account's, for an account change, which needs a verified account), a callback number and
a confirmation showing what will be filed (type, account, address, phone and the customer's
words, with what they added on the way: "想增加到50千瓦"); the core gets an application work order
of the matching type, and the customer is offered an appointment at a service hall to hand in
the materials.

Expects of the class it is mixed into: ``core``; ``account``, ``require_account``
(``IdentityMixin``); ``require``, ``confirm``, ``contact_phone``, ``_order_done``
(``FormsMixin``); ``say`` (``Responses``).
"""

from __future__ import annotations

from bot.dialogue.flows import BUSINESS_INTENTS, remember_order
from bot.dialogue.responses import preview
from bot.dialogue.flows.places import address_for, has_chinese, names_street
from bot.dialogue.turn import Turn
from bot.logs import mask_account, mask_phone
from intents.signals import (address_text, asks_price, bereaved, besides_identifiers, closes_account, increases_capacity, is_question,
                             looks_like_address)
from common.money import money_text

# the core's work-order type of each application
WO_TYPE = {
    "new_connection": "new_connection", "solar_connection": "solar", "ev_charging": "ev_charging",
    "account_change": "account_change",
}


class ApplicationFlows:
    async def _application(self, turn: Turn, flow: str, *, needs_account: bool = False) -> None:
        if turn.slots.get("_started") != flow:  # the papers once per application (two may come in one message)
            turn.slots["_started"] = flow
            if flow == "account_change" and bereaved(str(turn.slots.get("_text") or "")):
                self.say(turn, "utter_condolence")  # "my father passed away…": a word of sympathy first
            self.say(turn, f"utter_materials_{flow}")
        self._application_note(turn)
        number = None
        if needs_account:
            number = (await self.require_account(turn, flow)).account_number
            if flow == "account_change" and turn.slots.get("_settle_told") != number:
                turn.slots["_settle_told"] = number  # closing or a transfer with money owed: what must be paid first
                owed = (await self.core.get_arrears(number)).amount_owed
                if owed > 0:
                    closing = closes_account(str(turn.slots.get("_text") or ""))
                    self.say(turn, "utter_close_needs_settlement" if closing else "utter_change_needs_settlement",
                             owed=money_text(owed))
        else:
            named = turn.slots.get("account_number")
            if named and named not in turn.authorized and (
                    named in str(turn.slots.get("_text") or "") or turn.slots.get("_named_for") == flow):
                # "想增容到10千瓦 户号3100000001": the account named is checked, then its address used
                await self.require_account(turn, flow)
            number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
            if not number and len(turn.authorized) == 1:
                number = next(iter(turn.authorized))
        address = turn.slots.get("address")
        first = str(turn.slots.get("_text") or "")
        if not address and not has_chinese(first) and looks_like_address(first) and names_street(first):
            address = address_text(first) or None  # an English address in the request itself
            if address:
                turn.set_slot("address", address)
        if not address and number:
            address = (await self.account(turn, number)).address
        if not address:
            address = self.require(turn, flow, "address", "utter_ask_address")
        phone = await self.contact_phone(turn, flow)
        notes = turn.slots.get("_app_notes") or {}
        added = notes.get("notes", []) if notes.get("req") == turn.slots.get("_text") else []
        description = " / ".join([str(turn.slots.get("_text") or flow), *added])[:500]
        self.confirm(turn, flow, "utter_confirm_application_details",
                     what=self.phrase(turn, f"utter_fragment_work_order_type_{WO_TYPE[flow]}"),
                     account=mask_account(number) if number else "-", address=address_for(address, turn.lang), phone=mask_phone(phone),
                     description=" / ".join([preview(str(turn.slots.get("_text") or flow), 120 if not added else 70),
                                             *(preview(a, 60) for a in added)]))
        turn.slots.pop("_started", None)
        turn.slots.pop("_app_notes", None)
        wo = await self.core.create_work_order(
            WO_TYPE[flow], description, account_number=number, priority="normal",
            channel=turn.message.channel, contact_phone=phone, address=address, idempotency_key=f"{turn.key}:wo")
        turn.state["offer"] = "book_appointment"
        remember_order(turn, wo.id)
        self._order_done(turn, wo, "utter_application_created")

    @staticmethod
    def _application_note(turn: Turn) -> None:
        """What the customer adds about the application ("想增加到50千瓦") goes to the order with
        the first request; a bare yes/no, phone or account number does not."""
        whole = (turn.message.text or "").strip()
        text = besides_identifiers(whole)  # "account 3100000001, last four 8000, about 6 kW": the 6 kW
        if whole == turn.slots.get("_text") or turn.intent in ("affirm", "deny") or len(text) < 4 or is_question(text) \
                or turn.intent in BUSINESS_INTENTS and turn.intent != turn.state.get("last_intent") \
                or 2 * sum(ch.isdigit() for ch in text) >= len(text.replace(" ", "")):  # "9000": the identity check
            return
        kept = turn.slots.get("_app_notes") or {}
        notes = list(kept.get("notes") or []) if kept.get("req") == turn.slots.get("_text") else []
        if text not in notes and text != turn.slots.get("address"):
            notes.append(text[:200])
        turn.slots["_app_notes"] = {"req": turn.slots.get("_text"), "notes": notes[-3:]}

    async def flow_new_connection(self, turn: Turn) -> None:
        # more capacity for a supply that exists ("想增容") and no site named: its account, whose address it is
        first = str(turn.slots.get("_text") or "")
        await self._application(turn, "new_connection", needs_account=increases_capacity(first) and not (
            turn.slots.get("address") or looks_like_address(first)))

    async def flow_solar_connection(self, turn: Turn) -> None:
        await self._application(turn, "solar_connection")

    async def flow_ev_charging(self, turn: Turn) -> None:
        text = str(turn.slots.get("_text") or "")
        if not turn.slots.get("_started") and asks_price(text):
            # "what price applies when I charge at home": the tariff, not an application
            await self.flow_tariff_consult(turn)
            self.say(turn, "utter_ev_charging_tariff_note")
            return
        await self._application(turn, "ev_charging")

    async def flow_account_change(self, turn: Turn) -> None:
        await self._application(turn, "account_change", needs_account=True)
