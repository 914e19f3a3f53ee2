"""Booking an appointment at a service hall: district → hall → time slot → name → phone → yes.

Halls and time slots are offered as numbered lists with buttons (``/choose{"hall_id": 3}``); the
answer is read by the form (``FormsMixin.fill_requested``). A slot taken meanwhile by someone
else (the core answers ``Conflict``) is dropped and the remaining slots are offered again.
The list of halls is reference data (``ReferenceData.reference``); free slots never are.

Expects of the class it is mixed into: ``core``; ``reference`` (``ReferenceData``); ``account``
(``IdentityMixin``); ``ask``, ``require``, ``confirm``, ``finish``, ``contact_phone``
(``FormsMixin``); ``say``, ``phrase`` (``Responses``).
"""

from __future__ import annotations

from backend_client import Conflict
from bot.dialogue.forms import Stop
from bot.dialogue.turn import Turn
from intents.slots import district as district_in


class AppointmentFlows:
    async def flow_book_appointment(self, turn: Turn) -> None:
        flow = "book_appointment"
        number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
        if not number and len(turn.authorized) == 1:
            number = next(iter(turn.authorized))
        acc = await self.account(turn, number) if number else None
        district = turn.slots.get("district") or (acc.district if acc else None)
        if not district:
            district = self.require(turn, flow, "district", "utter_ask_district")
            district = district_in(district) or district
        hall_id = turn.slots.get("hall_id")
        if not hall_id:
            halls = await self.reference("halls", district, self.core.list_halls) or await self.reference(
                "halls", None, self.core.list_halls)
            if not halls:
                self.finish(turn)
                self.say(turn, "utter_no_halls")
                return
            if len(halls) == 1:
                hall_id = halls[0].id
                turn.set_slot("hall_id", hall_id)
            else:
                turn.state["form"] = {"name": flow, "slot": "hall_id", "options": [h.id for h in halls[:6]]}
                lst = "\n".join(self.phrase(turn, "utter_fragment_hall_line", n=i + 1, name=h.name, address=h.address)
                                for i, h in enumerate(halls[:6]))
                self.say(turn, "utter_choose_hall", halls=lst,
                         extra_buttons=[(h.name, f'/choose{{"hall_id": {h.id}}}') for h in halls[:6]])
                raise Stop
        slot_id = turn.slots.get("slot_id")
        if not slot_id:
            day = turn.slots.get("date")
            slots = await self.core.list_slots(hall_id, day, only_available=True)
            if not slots:
                turn.slots.pop("date", None)
                if day:
                    self.say(turn, "utter_no_slots_day", day=day)
                    self.ask(turn, flow, "date", "utter_ask_date")
                self.finish(turn)
                self.say(turn, "utter_no_slots")
                return
            slots = slots[:6]
            turn.state["form"] = {"name": flow, "slot": "slot_id", "options": [s.id for s in slots]}
            period = {p: self.phrase(turn, f"utter_fragment_period_{p}") for p in ("morning", "afternoon")}
            lst = "\n".join(self.phrase(turn, "utter_fragment_slot_line", n=i + 1, date=s.date.isoformat(),
                                         period=period.get(s.period, s.period), start=s.starts_at, end=s.ends_at,
                                         available=s.available) for i, s in enumerate(slots))
            self.say(turn, "utter_choose_slot", slots=lst,
                     extra_buttons=[(f"{s.date.isoformat()} {period.get(s.period, s.period)}", f'/choose{{"slot_id": {s.id}}}')
                                    for s in slots])
            raise Stop
        name = turn.slots.get("contact_name") or (acc.holder_name if acc else None)
        if not name:
            name = self.require(turn, flow, "contact_name", "utter_ask_contact_name")
        phone = await self.contact_phone(turn, flow)
        self.confirm(turn, flow, "utter_confirm_appointment")
        try:
            appt = await self.core.book_appointment(
                int(slot_id), number, name, phone, str(turn.slots.get("_purpose") or "业务办理"),
                idempotency_key=f"{turn.key}:appt")
        except Conflict:
            turn.slots.pop("slot_id", None)
            self.say(turn, "utter_slot_full")
            await self.flow_book_appointment(turn)
            return
        turn.actions.append(("action_book_appointment", {"id": appt.id, "slot_id": appt.slot_id}))
        self.finish(turn)
        period = {p: self.phrase(turn, f"utter_fragment_period_{p}") for p in ("morning", "afternoon")}
        self.say(turn, "utter_appointment_booked", appointment_id=appt.id, date=appt.date.isoformat(),
                 period=period.get(appt.period, appt.period))
