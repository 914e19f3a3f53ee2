"""Booking an appointment at a service hall.

What the customer already said is used, not asked again: a hall or a district named in Chinese,
English or pinyin ("静安营业厅", "Jing'an", "张江营业厅"), a day and a half day ("明天下午"), a
name, a phone number, the business to do ("办过户"). Only what is still missing is asked, in this
order: hall → slot (a numbered list, or a day and half day) → name and phone → purpose; then
the whole booking (hall, slot, name, phone, purpose) is shown for a yes before the core books it.
The slot question shows the hall's address and opening hours, so "黄浦营业厅在哪里，几点开门" is
answered by it. A district without a hall says so and offers the nearest halls.

How a message is read (no patterns of our own: the NLU reads the words):
- a hall: a part of its name only it has ("张江", "黄浦营业厅"), or its district
  (``intents.slots.district``: Chinese, English, pinyin);
- a half day: the words the answers use for it (``utter_fragment_period_*``, both languages);
- a name and a purpose: the message's clauses parsed one by one — a clause that is a business
  request of its own ("办新装") is the purpose, one the NLU finds nothing in ("张三") the name.

English answers name halls and districts in English (``bot.dialogue.flows.places``). A slot
taken meanwhile by someone else (the core answers ``Conflict``) is dropped and the free slots are
offered again. What is collected lives in the slot ``_appt`` (a side request in between clears
the form slots). The list of halls is reference data (``ReferenceData.reference``); free slots
never are.

Expects of the class it is mixed into: ``core``, ``domain``, ``_parse``; ``reference``
(``ReferenceData``); ``account`` (``IdentityMixin``); ``ask``, ``confirm``, ``finish``
(``FormsMixin``); ``say``, ``phrase`` (``Responses``).
"""

from __future__ import annotations

import unicodedata
from datetime import date, timedelta
from typing import Any

from backend_client import Conflict
from bot.dialogue.flows import BUSINESS_INTENTS
from bot.dialogue.flows.places import address_for, distance, district_label, english_name, has_chinese, hours_for
from bot.dialogue.forms import Stop
from bot.dialogue.responses import CHINA_TZ
from bot.dialogue.turn import Turn
from bot.logs import mask_phone
from channels.base import Button
from common.clock import utcnow
from intents.places import name_written
from intents.signals import cancels_booking, changes_request, same_place, says_cancel
from intents.slots import after_name_label, contact_name, looks_like_name, mobile, without_phone
from intents.slots import district as district_in

FLOW = "book_appointment"
CANCEL_FLOW = "cancel_appointment"
_NOT_SEPARATORS = "'’-"  # punctuation inside a clause: Jing'an, I'm, 138-0013-8000
_NOT_A_NAME_INTENTS = BUSINESS_INTENTS | {"affirm", "deny", "greet", "goodbye", "thank", "request_human"}


def upcoming(day: str | None) -> str | None:
    """A visit's day: one in the last week ("那我周六自己过去" read toward the past) is the same
    weekday to come — nobody books a visit for a day gone."""
    if not day:
        return day
    try:
        d = date.fromisoformat(day)
    except ValueError:
        return day
    today = utcnow().astimezone(CHINA_TZ).date()
    return (d + timedelta(days=7)).isoformat() if today - timedelta(days=7) < d < today else day


def clauses_of(text: str) -> list[str]:
    """A message cut at its punctuation ("王小明，13912345678" → two clauses)."""
    parts: list[str] = []
    cur: list[str] = []
    for ch in text or "":
        if ch == "\n" or unicodedata.category(ch).startswith("P") and ch not in _NOT_SEPARATORS:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _apart(clause: str, phone: str | None, asked: bool) -> list[str]:
    """One clause of a booking message as the pieces a name may be: cut at the phone number it
    gives; its Chinese words apart where it gives the number or answers "your name?"."""
    at = clause.find(phone) if phone else -1
    if at < 0 and not asked:
        return [clause]
    sides = [without_phone(clause[:at]), phone, without_phone(clause[at + len(phone):])] if at >= 0 else [clause]  # type: ignore[operator]
    return [w for side in sides if side and side.strip()
            for w in (side.split() if has_chinese(side) else [side.strip()])]


def hall_named(halls: list[Any], text: str) -> list[Any]:
    """The halls a text names by a part of the name no other hall has ("张江", "黄浦营业厅")."""
    scores: dict[int, int] = {}
    for h in halls:
        others = [o.name for o in halls if o.id != h.id]
        n = h.name
        best = 0
        for i in range(len(n)):
            for j in range(i + max(2, best + 1), len(n) + 1):
                part = n[i:j]
                if part not in text:
                    break
                if not any(part in o for o in others):
                    best = j - i
        if best:
            scores[h.id] = best
    if not scores and not has_chinese(text):
        # "the Zhangjiang hall": the part of the name only one hall has, in pinyin
        for h in halls:
            for part in _name_parts(h.name):
                if not any(part in o.name for o in halls if o.id != h.id) and name_written(text, part):
                    scores[h.id] = len(part)
    if not scores:
        return []
    top = max(scores.values())
    return [h for h in halls if scores.get(h.id) == top]


def _name_parts(name: str) -> list[str]:
    """Two-character parts of a hall's name ("国网上海浦东供电公司张江营业厅" → "张江", ...)."""
    return [name[i:i + 2] for i in range(len(name) - 1)]


class AppointmentFlows:
    # ------------------------------------------------------------------ helpers
    def _hall_label(self, turn: Turn, hall: Any) -> str:
        """A hall's name as the customer reads it: English answers name it by its district."""
        if turn.lang == "en" and english_name(hall.district):
            return self.phrase(turn, "utter_fragment_hall_name_en", place=english_name(hall.district))
        return hall.name

    def _hall_line(self, turn: Turn, hall: Any) -> str:
        return self.phrase(turn, "utter_fragment_hall_info", name=self._hall_label(turn, hall), address=address_for(hall.address, turn.lang),
                           hours=hours_for(hall.opening_hours, turn.lang) or "-", phone=hall.phone or "-")

    @staticmethod
    def _drop_not_understood(turn: Turn) -> None:
        """The policy said "not understood" before re-running this form, but the flow found what
        it needed in the message after all: take that sentence back."""
        if len(turn.actions) >= 2 and turn.actions[-1][0] == f"flow_{FLOW}" \
                and turn.actions[-2][0] == "utter_not_understood_slot" and turn.replies:
            turn.replies.pop()
            del turn.actions[-2]

    def _halls_in(self, halls: list[Any], text: str, district: str | None) -> tuple[list[Any], str | None]:
        """The halls a message names (by a part of a hall's name, else by district) and the
        district it names."""
        district = district_in(text) or district
        named = hall_named(halls, text)
        if named:
            return named, district
        return [h for h in halls if district and h.district == district], district

    @staticmethod
    def _nearest(halls: list[Any], district: str | None, n: int = 2) -> list[Any]:
        return sorted(halls, key=lambda h: distance(district, h.district))[:n]

    def _period_in(self, turn: Turn, text: str) -> str | None:
        """The half day a message names, in the words the answers use for it (either language)."""
        low = (text or "").lower()
        for p in ("afternoon", "morning"):
            for lang in ("zh", "en"):
                word = self.domain.render(f"utter_fragment_period_{p}", lang=lang, channel=turn.message.channel).text
                if word.strip() and word.strip().lower() in low:
                    return p
        return None

    def _clause_kind(self, clause: str, led: bool = False) -> tuple[str, str]:
        """What one clause of a message is: ("purpose", text) for a business request of its own,
        ("name", name) for words the NLU finds nothing in, else ("other", "")."""
        parse = self._parse(clause)
        intent = (parse.get("intent") or {}).get("name") or "nlu_fallback"
        conf = float((parse.get("intent") or {}).get("confidence") or 0)
        if intent in BUSINESS_INTENTS and intent != FLOW and conf >= 0.9:
            return "purpose", clause[:200]
        labelled = after_name_label(clause)
        led = led or labelled is not None
        words = clause if labelled is None else labelled
        # "Name: Chen Jie": a name led as one is not the address its pinyin may look like ("jie")
        ents = [e for e in parse.get("entities") or [] if not (led and e.get("entity") == "address")]
        if ents or any(ch.isdigit() for ch in clause) or intent in _NOT_A_NAME_INTENTS and conf >= 0.5:
            return "other", ""
        name = contact_name(words.strip())
        if name and looks_like_name(name) and not district_in(name):
            return "name", name.strip()
        return "other", ""

    def _name_and_purpose(self, turn: Turn, text: str, halls: list[Any], *, asked: bool) -> tuple[str | None, str | None]:
        """A name and a purpose the message gives among its clauses; ``asked``: it answers
        "your name and phone?", so a name written next to the number counts too."""
        name = purpose = None
        clauses = clauses_of(text)
        phone = mobile(text)
        # "李娜 13900139000 办过户", "预约徐汇营业厅 明天上午 李娜 13900139000": the words either side
        # of the number apart (Chinese words by their spaces; "Li Na" stays one name)
        clauses = [w for c in clauses for w in _apart(c, phone, asked)]
        led = False  # the clause before was a bare "Name" / "姓名" ("Name: Chen Jie")
        for clause in clauses:
            after_lead, led = led, after_name_label(clause) == ""
            if led or hall_named(halls, clause) or self._period_in(turn, clause):
                continue
            named = after_lead or after_name_label(clause) is not None  # "name Chen Jie phone 139…"
            if (asked or named) and phone and any(ch.isdigit() for ch in clause):
                clause = without_phone(clause)
                if len(clause) < 2:
                    continue
            kind, value = self._clause_kind(clause, after_lead)
            if kind == "name" and not name:
                name = value
            elif kind == "purpose" and not purpose:
                purpose = value
        return name, purpose

    # ------------------------------------------------------------------ the flow
    async def flow_book_appointment(self, turn: Turn) -> None:
        text = turn.message.text or ""
        st: dict[str, Any] = turn.slots.get("_appt") or {}
        # a new request: the policy started the flow on this very message (an answer to one of
        # our questions, an accepted offer or a resumed form carries on with what we have).
        # What is collected lives in ``_appt``: a side request in between clears the form slots.
        fresh = not turn.state.get("form") and turn.slots.get("_text") == text and st.get("msg") != turn.message.message_id
        asked = None if fresh else st.get("asked")
        if fresh:
            st = {"msg": turn.message.message_id}
        turn.slots["_appt"] = st
        halls = await self.reference("halls", None, self.core.list_halls) or []
        took = self._absorb(turn, st, halls, text, fresh, asked)
        if took and not fresh:
            self._drop_not_understood(turn)
            if asked == "confirm":
                turn.slots.pop("_confirmed", None)  # the booking changed: it is shown again for a yes
        if st.pop("moved", False) and asked != "confirm":
            # "actually make it the morning": said back (the confirmation shows it anyway)
            self.say(turn, "utter_appointment_moved", date=st.get("date") or "-",
                     period=self.phrase(turn, f"utter_fragment_period_{st['period']}") if st.get("period") else "")

        # 1. the hall
        number = self._appt_account(turn)
        acc = await self.account(turn, number) if number else None
        if fresh and not st.get("hall_id") and turn.slots.get("_last_hall") and same_place(text):
            st["hall_id"] = turn.slots["_last_hall"]
        if not st.get("hall_id") and acc and not st.get("candidates") and not st.get("no_hall"):
            mine = [h.id for h in halls if h.district == acc.district]
            if len(mine) == 1:
                st["hall_id"] = mine[0]
        hall = next((h for h in halls if h.id == st.get("hall_id")), None)
        if hall is None:
            st.pop("hall_id", None)
            self._ask_hall(turn, st, halls)
        st.pop("candidates", None)
        st.pop("no_hall", None)

        # 2. the day and half day
        slot = await self._pick_slot(turn, st, hall)

        # 3. who comes, and a number to reach them
        name = st.get("name") or (acc.holder_name if acc else None)
        phone = st.get("phone") or (mobile(acc.phone) if acc else None)
        if not phone:
            st["asked"] = "contact" if not name else "phone"
            self.ask(turn, FLOW, "contact_phone", "utter_ask_appointment_contact" if not name else "utter_ask_contact_phone")
        if not name:
            st["asked"] = "name"
            self.ask(turn, FLOW, "contact_name", "utter_ask_contact_name")

        # 4. what for (a short free answer: the form reads it the way it reads a name); the
        # question shows the booking so far, and a yes books it for general business
        period = self.phrase(turn, f"utter_fragment_period_{slot.period}")
        shown = {"hall": self._hall_label(turn, hall), "address": address_for(hall.address, turn.lang), "date": slot.date.isoformat(),
                 "period": period, "start": slot.starts_at, "end": slot.ends_at, "name": name,
                 "phone": phone if st.get("typed_phone") else mask_phone(phone)}
        if not st.get("purpose"):
            if st.get("asked") == "purpose" and st.pop("purpose_yes", False):
                st["purpose"] = "业务办理"  # what the core records when the customer named nothing
                turn.slots["_confirmed"] = FLOW
            else:
                st["asked"] = "purpose"
                self.ask(turn, FLOW, "contact_name", "utter_ask_appointment_purpose", **shown)
        purpose = st["purpose"]

        # 5. the whole booking, for a yes
        st["asked"] = "confirm"
        self.confirm(turn, FLOW, "utter_confirm_appointment_details", purpose=purpose, **shown)
        try:
            appt = await self.core.book_appointment(
                int(slot.id), number, str(name)[:64], phone, str(purpose)[:200], idempotency_key=f"{turn.key}:appt")
        except Conflict:
            st.pop("slot_id", None)
            self.say(turn, "utter_slot_full")
            st["asked"] = "slot"
            await self._offer_slots(turn, st, hall, slot.date.isoformat())
            return
        turn.actions.append(("action_book_appointment", {"id": appt.id, "slot_id": appt.slot_id}))
        turn.slots.pop("_appt", None)
        turn.slots["_appointments"] = ([a for a in turn.slots.get("_appointments") or [] if a != appt.id] + [appt.id])[-5:]
        turn.slots["_last_hall"] = hall.id  # "book … instead, same hall"
        self.finish(turn)
        self.say(turn, "utter_appointment_booked_at", appointment_id=appt.id, date=appt.date.isoformat(), period=period,
                 start=slot.starts_at, end=slot.ends_at, hall=self._hall_label(turn, hall), address=address_for(hall.address, turn.lang))

    @staticmethod
    def cancels_visit(turn: Turn, text: str) -> bool:
        """"取消预约", or "算了还是取消吧" right after a booking: a booked visit to cancel (a visit not
        yet booked is left like any form)."""
        form = turn.state.get("form") or {}
        if form.get("name") in (FLOW, CANCEL_FLOW):
            return False
        just_booked = not form and turn.state.get("last_intent") == FLOW and bool(turn.slots.get("_appointments"))
        return cancels_booking(text) or just_booked and says_cancel(text)

    async def flow_cancel_appointment(self, turn: Turn) -> None:
        """Cancel a booked visit, shown for a yes first: the one booked in this conversation,
        else the account's (checked like any account): the only one, or the one whose number
        the customer gives from the list."""
        here = [a for a in turn.slots.get("_appointments") or []]
        booked = [await self.core.get_appointment(int(here[-1]))] if here else []
        if not booked or booked[0].status != "booked":
            acc = await self.require_account(turn, CANCEL_FLOW)
            today = utcnow().astimezone(CHINA_TZ).date()
            booked = [a for a in await self.core.list_appointments(acc.account_number, status="booked") if a.date >= today]
        halls = {h.id: h for h in await self.reference("halls", None, self.core.list_halls) or []}

        def shown(a: Any) -> dict[str, Any]:
            hall = halls.get(a.hall_id)
            return {"appointment_id": a.id, "date": a.date.isoformat(), "period": self.phrase(turn, f"utter_fragment_period_{a.period}"),
                    "hall": self._hall_label(turn, hall) if hall else "-"}

        if not booked:
            self.finish(turn)
            self.say(turn, "utter_no_appointment_to_cancel")
            return
        named = [a for a in booked if str(a.id) in (turn.message.text or "").split()] if len(booked) > 1 else booked
        if len(named) != 1:
            lines = "\n".join(self.phrase(turn, "utter_fragment_appointment_line", **shown(a)) for a in booked)
            self.ask(turn, CANCEL_FLOW, "appointment_id", "utter_ask_which_appointment", appointments=lines)
        appt = named[0]
        self.confirm(turn, CANCEL_FLOW, "utter_confirm_cancel_appointment", **shown(appt))
        await self.core.cancel_appointment(appt.id)
        turn.actions.append(("action_cancel_appointment", {"id": appt.id}))
        turn.slots["_appointments"] = [a for a in here if a != appt.id]
        self.finish(turn)
        self.say(turn, "utter_appointment_cancelled", **shown(appt))

    def _absorb(self, turn: Turn, st: dict[str, Any], halls: list[Any], text: str, fresh: bool, asked: str | None) -> bool:
        """Keep what this message says: a new request everything it names, an answer what fits
        the question asked (and a name or a phone given with it). True when anything was kept."""
        took = False
        slots = turn.slots
        if fresh or asked == "place" or changes_request(text):  # "make it the Xuhui one instead"
            found, district = self._halls_in(halls, text, slots.get("district") or turn.entities.get("district"))
            if len(found) == 1:
                st["hall_id"] = found[0].id
                st.pop("slot_id", None)
            if found:
                st["candidates"] = [h.id for h in found]
                took = True
            elif district:
                st["no_hall"] = district
                took = True
        period = self._period_in(turn, text)
        moved = False  # "actually make it Friday morning instead", whatever was asked
        if fresh or asked in ("place", "slot", "confirm") or turn.entities.get("date") or period:
            day = upcoming(turn.entities.get("date") or (slots.get("date") if asked in (None, "place", "slot") else None))
            if day and day != st.get("date"):
                st["date"] = day
                st.pop("slot_id", None)
                took = moved = True
            if period and period != st.get("period"):
                st["period"] = period
                st.pop("slot_id", None)
                took = moved = True
        if moved and asked:
            st["moved"] = True  # said back before the next question
        if asked == "slot" and slots.get("slot_id"):
            st["slot_id"] = slots["slot_id"]
            took = True
        if asked == "purpose" and moved:
            return took  # the day changed; the purpose is still to come
        if asked == "purpose":
            answer = slots.pop("contact_name", None) or (text if 1 < len(text) <= 200 else None)
            if turn.intent == "affirm":
                st["purpose_yes"] = True  # "确认": book it as it stands
                took = True
            elif answer:
                st["purpose"] = str(answer)[:200]
                took = True
            return took
        contact_asked = asked in ("contact", "phone", "name")
        phone = mobile(str(turn.entities.get("phone_number") or "")) or mobile(text) or (
            slots.get("contact_phone") if contact_asked or fresh else None)
        if (fresh or contact_asked or phone) and not (took and changes_request(text)):
            # a name counts where it was asked for, or given with a phone number ("Mary Chen, 136…"),
            # not in a change of the booking ("wait, no, make it the Xuhui one instead")
            name, purpose = self._name_and_purpose(turn, text, halls, asked=asked in ("contact", "name"))
            if asked == "name" and slots.get("contact_name") and looks_like_name(slots["contact_name"]):
                name = name or slots["contact_name"]
            if name and (not st.get("name") or asked in ("contact", "name")):
                st["name"] = name
                took = True
            if purpose and not st.get("purpose"):
                st["purpose"] = purpose
            if phone and phone != st.get("phone"):
                st["phone"] = phone
                st["typed_phone"] = True
                took = True
        return took

    def _appt_account(self, turn: Turn) -> str | None:
        number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
        if not number and len(turn.authorized) == 1:
            number = next(iter(turn.authorized))
        return number

    def _ask_hall(self, turn: Turn, st: dict[str, Any], halls: list[Any]) -> None:
        if not halls:
            self.finish(turn)
            turn.slots.pop("_appt", None)
            self.say(turn, "utter_no_halls")
            raise Stop
        offered = [h for h in halls if h.id in (st.get("candidates") or [])]
        no_hall = st.get("no_hall")
        if no_hall and not offered:
            offered = self._nearest(halls, no_hall)
            lines = "\n".join(self._hall_line(turn, h) for h in offered)
            self.say(turn, "utter_no_hall_in_district", district=district_label(no_hall, turn.lang), halls=lines)
        else:
            offered = offered or halls
            lines = "\n".join(self.phrase(turn, "utter_fragment_hall_choice", name=self._hall_label(turn, h),
                                          address=address_for(h.address, turn.lang),
                                          hours=hours_for(h.opening_hours, turn.lang) or "-") for h in offered)
            self.say(turn, "utter_ask_hall", halls=lines)
        st["asked"] = "place"
        st.pop("candidates", None)
        st.pop("no_hall", None)
        turn.state["form"] = {"name": FLOW, "slot": "district"}
        turn.replies[-1].buttons.extend(Button(title=self._hall_label(turn, h), payload=h.name) for h in offered)
        raise Stop

    async def _pick_slot(self, turn: Turn, st: dict[str, Any], hall: Any) -> Any:
        slot_id = st.get("slot_id")
        day = st.get("date")
        if slot_id:
            slots = await self.core.list_slots(hall.id, day) if day else await self.core.list_slots(hall.id)
            found = next((s for s in slots if s.id == int(slot_id)), None)
            if found is not None:
                return found
            st.pop("slot_id", None)
        if not day:
            st["asked"] = "slot"
            await self._offer_slots(turn, st, hall, None)
        free = await self.core.list_slots(hall.id, day, only_available=True)
        period = st.get("period")
        fits = [s for s in free if not period or s.period == period]
        if len(fits) == 1 or (fits and period):
            st["slot_id"] = fits[0].id
            return fits[0]
        st["asked"] = "slot"
        await self._offer_slots(turn, st, hall, day)
        raise Stop

    async def _offer_slots(self, turn: Turn, st: dict[str, Any], hall: Any, day: str | None) -> None:
        free = await self.core.list_slots(hall.id, day, only_available=True) if day else []
        period = st.get("period")
        if day and period and free and not any(s.period == period for s in free):
            self.say(turn, "utter_no_slots_day_period", day=day, period=self.phrase(turn, f"utter_fragment_period_{period}"))
        elif day and not free:
            self.say(turn, "utter_no_slots_day", day=day)
        if not free:
            free = await self.core.list_slots(hall.id, only_available=True)
        if not free:
            self.finish(turn)
            turn.slots.pop("_appt", None)
            self.say(turn, "utter_no_slots")
            raise Stop
        free = free[:6]
        st.pop("period", None)
        st.pop("date", None)
        turn.slots.pop("date", None)
        turn.slots.pop("slot_id", None)
        turn.state["form"] = {"name": FLOW, "slot": "slot_id", "options": [s.id for s in free]}
        periods = {p: self.phrase(turn, f"utter_fragment_period_{p}") for p in ("morning", "afternoon")}
        lst = "\n".join(self.phrase(turn, "utter_fragment_slot_line", n=i + 1, date=s.date.isoformat(),
                                     period=periods.get(s.period, s.period), start=s.starts_at, end=s.ends_at,
                                     available=s.available) for i, s in enumerate(free))
        self.say(turn, "utter_choose_slot_or_day", slots=lst, hall=self._hall_label(turn, hall), address=address_for(hall.address, turn.lang),
                 hours=hours_for(hall.opening_hours, turn.lang) or "-", phone=hall.phone or "-",
                 extra_buttons=[(f"{s.date.isoformat()} {periods.get(s.period, s.period)}", f'/choose{{"slot_id": {s.id}}}')
                                for s in free])
        raise Stop
