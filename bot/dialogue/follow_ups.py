"""Follow-ups: a short message that reuses the request just answered.

"那上个月呢" after a bill, "and before that?" (the month before the one shown), "and for homes?"
after a price, "what about Baoshan?" or "几点到几点" after planned outages, "when exactly?" after
a known outage, "是不是超时了" after the orders' status, "when is the deadline again?" after a bill
or a payment, "大概多久能到？" after an order was filed. Each applies only when the message is
not confidently another request (the NLU knows the follow-up's words poorly: they borrow the
context).

Inside an open form, a side request is answered around it (``answer_around``): the form is set
aside, the other request answered, and the form asked again.

Expects of the class it is mixed into: ``run_flow``, ``act``, ``dispatch`` (``PolicyMixin``);
``_take_entities`` (``FormsMixin``); ``say`` (``Responses``).
"""

from __future__ import annotations

from bot.dialogue.flows import BUSINESS_INTENTS
from bot.dialogue.flows.hazards import EMERGENCY
from bot.dialogue.forms import TURN_SLOTS, Stop
from bot.dialogue.turn import Turn
from intents.places import find as districts_in, street_mentioned
from intents.signals import (
    asks_due_date,
    asks_earlier,
    asks_eta,
    asks_if_overdue,
    asks_if_report_needed,
    asks_which_places,
    asks_when,
    names_span,
    names_tariff_category,
    says_previous_month,
    asks_why_so_much,
    fears_disconnection,
    is_question,
    speaks_of_later,
    topic,
)


def _borrows_context(turn: Turn, intent: str, *kin: str) -> bool:
    """Not confidently a request of another kind than ``kin``: the follow-up's words lean on the
    last answer."""
    return intent not in BUSINESS_INTENTS or turn.confidence < 0.8 or intent in kin


class FollowUpsMixin:
    async def follow_up(self, turn: Turn, intent: str, text: str, last: str | None) -> bool:
        """Answer ``text`` as a follow-up of ``last`` if it is one; whether it was."""
        st = turn.state
        # "那上个月呢", "and before that?" after a bill or the usage: that month's
        shown = turn.slots.get("month")
        earlier = bool(shown) and asks_earlier(text) and len(text) <= 40
        if last in ("bill_query", "usage_query") and (turn.entities.get("month") or earlier) \
                and _borrows_context(turn, intent, last):
            month = turn.entities.get("month") or shown
            if shown and (earlier or says_previous_month(text)):
                y, m = map(int, shown.split("-"))
                month = f"{y - (m == 1)}-{(m - 2) % 12 + 1:02d}"  # the month before the one just shown
            turn.set_slot("month", month)
            st["fallbacks"] = 0
            await self.run_flow(turn, last, resume=True)
            return True

        # "那把家里那个交了吧", "饭店那个" from a customer with several accounts: the last request (or the
        # one this message makes) for the account it names
        if len(turn.authorized) > 1 and last in BUSINESS_INTENTS and (intent == last or _borrows_context(turn, intent, last)):
            named = await self._account_named(turn, text, sorted(turn.authorized))
            if named:
                turn.set_slot("account_number", named)
                await self.run_flow(turn, last, resume=True)
                return True

        # "and for homes?", "那居民呢" after a price: the same question for that category
        if last == "tariff_consult" and names_tariff_category(text) and len(text) <= 40 \
                and _borrows_context(turn, intent, last):
            turn.intent = "tariff_consult"
            await self.act(turn, "tariff_consult")
            return True

        # "那宝山呢", "what about Baoshan?", "那世纪大道呢" after planned outages: the same question there
        street = street_mentioned(text) if len(text) <= 20 else None
        if last == "outage_schedule" and topic(text) != "bill" and (
                turn.entities.get("district") or turn.entities.get("date") or asks_when(text) or street
                or names_span(text) or asks_which_places(text)) and _borrows_context(turn, intent, last):
            if (street or names_span(text)) and not turn.entities.get("date"):
                turn.slots.pop("date", None)  # "那世纪大道呢", "这周呢": any coming day
            if len(districts_in(text.lower())) > 1:
                turn.slots["_text"] = text  # "what about Minhang and Baoshan": each of them
            self._take_entities(turn)
            st["fallbacks"] = 0
            await self.run_flow(turn, last, resume=True)
            return True

        # "下周那次是哪天" after a known outage: the planned outages of that district
        if turn.slots.get("_known_outage_district") and last == "report_outage" and speaks_of_later(text) and (
                asks_when(text) or turn.entities.get("date") or is_question(text)):
            turn.set_slot("district", turn.slots["_known_outage_district"])
            self._take_entities(turn)
            await self.run_flow(turn, "outage_schedule", resume=True)
            return True

        # "那我还要不要再报个修啊" after a known outage: no, crews are on it
        if turn.slots.get("_known_outage") and last == "report_outage" and asks_if_report_needed(text):
            self.say(turn, "utter_no_need_to_report", end=turn.slots.get("_known_outage_end") or "-")
            return True

        # "when exactly?" after a known outage: when it is expected to end
        if turn.slots.get("_known_outage_end") and last == "report_outage" and (asks_when(text) or asks_eta(text)):
            self.say(turn, "utter_known_outage_end", end=turn.slots["_known_outage_end"])
            return True

        # "是不是超时了", "when will it be fixed?" after the orders' status: their status again,
        # which says when each is due and whether that has passed
        if last == "work_order_status" and (asks_if_overdue(text) or asks_eta(text)):
            await self.run_flow(turn, last, resume=True)
            return True

        # "when is the deadline again?" after a bill or a payment, "回到刚才电费 2月份那期最晚哪天交"
        # after anything: the bill, with its due date
        if (last in ("pay_bill", "bill_query") or topic(text) == "bill") and asks_due_date(text) \
                and (_borrows_context(turn, intent, "bill_query") or fears_disconnection(text)):  # "…会不会停我电"
            self._take_entities(turn)
            await self.run_flow(turn, "bill_query", resume=True)
            return True

        # "啥？？怎么这么多" right after a bill: the latest bills side by side
        if last == "bill_query" and asks_why_so_much(text) and _borrows_context(turn, intent, "bill_query", "complaint"):
            await self.explain_bill(turn)
            return True

        # "大概多久能到？" after an order was filed: that order's status and its deadline
        if turn.slots.get("_orders") and asks_eta(text) and _borrows_context(turn, intent):
            turn.set_slot("work_order_id", turn.slots["_orders"][-1])
            await self.act(turn, "work_order_status")
            return True
        return False

    async def answer_around(self, turn: Turn, form: dict, answer) -> bool:
        """Answer another request with the open form set aside, then come back to the form.
        ``answer`` says whether it answered (``None`` counts as yes); if not, nothing changed."""
        st = turn.state
        name = form["name"]
        saved = dict(form)
        saved_slots = dict(turn.slots)
        saved_last = st.get("last_intent")
        st["form"] = None
        try:
            if await answer() is False:
                st["form"] = saved
                return False
        except Stop:
            if name != EMERGENCY:
                raise  # the new request asks something: it is now the open one; the old one waits
            # a hazard report comes first: the other request waits until it is filed
            turn.replies = turn.replies[:-1]
            self.say(turn, "utter_side_later")
        if turn.handoff:
            return True
        if st.get("form") and name != EMERGENCY:
            return True
        answered = st.get("last_intent")
        st["form"] = saved
        st["last_intent"] = saved_last
        if answered != saved_last:
            st["previous_intent"] = answered  # what a follow-up inside the form refers to
        for k in (*TURN_SLOTS, "_text", "_confirmed", "address", "account_number"):
            if k in saved_slots:
                turn.slots[k] = saved_slots[k]
            else:
                turn.slots.pop(k, None)
        self.say(turn, "utter_resume_form")
        try:
            await self.run_flow(turn, name, resume=True)
        finally:
            if st.get("form") and st["form"].get("slot") == "confirm":
                st["form"]["after_side"] = True  # its yes must now be more than an "好的" (``fill_requested``)
        return True
