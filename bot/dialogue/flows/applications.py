"""Application flows: a new connection, a solar (PV) connection, an EV charger, an account change.

All four are one form: tell the customer which materials to prepare (once), then the address
(the account's, for an account change, which needs a verified account), a callback number and
a confirmation; the core gets an application work order of the matching type, and the
customer is offered an appointment at a service hall to hand in the materials.

Expects of the class it is mixed into: ``core``; ``account``, ``require_account``
(``IdentityMixin``); ``require``, ``confirm``, ``contact_phone``, ``_order_done``
(``FormsMixin``); ``say`` (``Responses``).
"""

from __future__ import annotations

from bot.dialogue.flows import remember_order
from bot.dialogue.turn import Turn

# the core's work-order type of each application
WO_TYPE = {
    "new_connection": "new_connection", "solar_connection": "solar", "ev_charging": "ev_charging",
    "account_change": "account_change",
}


class ApplicationFlows:
    async def _application(self, turn: Turn, flow: str, *, needs_account: bool = False) -> None:
        if not turn.slots.get("_started"):
            turn.slots["_started"] = flow
            self.say(turn, f"utter_materials_{flow}")
        number = None
        if needs_account:
            number = (await self.require_account(turn, flow)).account_number
        elif turn.slots.get("account_number") in turn.authorized:
            number = turn.slots.get("account_number")
        address = turn.slots.get("address")
        if not address and number:
            address = (await self.account(turn, number)).address
        if not address:
            address = self.require(turn, flow, "address", "utter_ask_address")
        phone = await self.contact_phone(turn, flow)
        self.confirm(turn, flow, "utter_confirm_application")
        turn.slots.pop("_started", None)
        wo = await self.core.create_work_order(
            WO_TYPE[flow], str(turn.slots.get("_text") or flow)[:500], account_number=number, priority="normal",
            channel=turn.message.channel, contact_phone=phone, address=address, idempotency_key=f"{turn.key}:wo")
        turn.state["offer"] = "book_appointment"
        remember_order(turn, wo.id)
        self._order_done(turn, wo, "utter_application_created")

    async def flow_new_connection(self, turn: Turn) -> None:
        await self._application(turn, "new_connection")

    async def flow_solar_connection(self, turn: Turn) -> None:
        await self._application(turn, "solar_connection")

    async def flow_ev_charging(self, turn: Turn) -> None:
        await self._application(turn, "ev_charging")

    async def flow_account_change(self, turn: Turn) -> None:
        await self._application(turn, "account_change", needs_account=True)
