"""The policy: what the bot does with one understood message.

In order of precedence: a hazard preempts everything (an emergency work order and an agent);
"human please" hands off; "cancel" drops the open form or offer; a pending yes/no offer
(hand-off after fallbacks, subscribing to outage notices, paying, booking) is answered; an open
form gets the slot it asked for, or the customer's side question is answered and the form
resumed; a follow-up reuses the last request ("那上个月呢"); a bare account or work-order number
continues the last request; otherwise the intent is dispatched — to a business flow, to the
simple responses the domain's rules give it, or to the fallback (rephrase → offer an agent →
hand off).

Expects of the class it is mixed into: ``flows`` (business intent → ``flow_*`` method, built by
the engine), ``domain``, ``core``, ``sender_proofs``; ``say`` (``Responses``);
``fill_requested``, ``_clear_form``, ``_take_entities`` (``FormsMixin``); ``account``
(``IdentityMixin``).
"""

from __future__ import annotations

from bot.dialogue.flows import BUSINESS_INTENTS
from bot.dialogue.forms import TURN_SLOTS
from bot.dialogue.turn import Turn
from bot.logs import mask_text
from channels.base import proven_phone
from common.metrics import FALLBACKS
from intents.signals import asks_price, is_cancel, is_hazard, says_previous_month
from intents.slots import has_account_digits, kwh, mobile, work_order_id

FALLBACK_CONFIDENCE = 0.5

# intents a fallback is labelled with in the metrics; any other: "no_action" (an intent
# with nothing to say)
_FALLBACK_INTENTS = frozenset({"nlu_fallback", "out_of_scope", "inform"})


class PolicyMixin:
    """The turn's decision (mixed into ``DialogueEngine``)."""

    async def policy(self, turn: Turn) -> None:
        text = (turn.message.text or "").strip()
        st = turn.state
        form = st.get("form")
        intent = turn.intent

        # 0. understand special phrasings the classifier is weak at
        if intent in ("bill_query", "usage_query", "nlu_fallback") and kwh(text) and asks_price(text) \
                and not has_account_digits(text):
            intent = turn.intent = "tariff_consult"
        if is_cancel(text):
            intent = turn.intent = "cancel"

        # 1. safety first: hazards preempt everything
        if is_hazard(text) and intent not in ("affirm", "deny", "cancel"):
            await self.emergency(turn)
            return
        if intent == "request_human":
            self._clear_form(turn)
            self.hand_off(turn, "request_human", "normal")
            return
        if intent == "cancel":
            if form or st.get("offer"):
                self._clear_form(turn)
                st.pop("offer", None)
                self.say(turn, "utter_cancelled")
            else:
                self.say(turn, "utter_anything_else")
            return

        # 2. pending offer (handoff after fallback, outage notice subscription...)
        offer = st.pop("offer", None)
        if offer and not form:
            if intent == "affirm":
                await self.accept_offer(turn, offer)
                return
            if intent == "deny":
                self.say(turn, "utter_anything_else")
                return
            if offer != "handoff" and _unclear_reply(turn, intent):
                # "0000", "嗯？": not a new request, not an answer. Keep the question open and
                # ask for a yes or no, as a form does for a slot; a real new request (any
                # understood intent) moves on and the offer lapses.
                st["offer"] = offer
                self.say(turn, "utter_offer_yes_no")
                return

        # 3. an active form: fill the requested slot, or handle the interruption
        if form:
            filled = await self.fill_requested(turn, form)
            if filled:
                st["fallbacks"] = 0
                await self.run_flow(turn, form["name"], resume=True)
                return
            if intent in ("deny",) and form.get("slot") != "confirm":
                self._clear_form(turn)
                self.say(turn, "utter_cancelled")
                return
            side = intent if turn.confidence >= FALLBACK_CONFIDENCE else "nlu_fallback"
            if side == form["name"] or side in ("inform", "affirm", "deny", "nlu_fallback", "out_of_scope"):
                # not the answer we need: say so and ask again
                self.say(turn, "utter_not_understood_slot")
                await self.run_flow(turn, form["name"], resume=True)
                return
            # interruption: answer the side question, then come back to the form
            saved = dict(form)
            saved_slots = dict(turn.slots)
            st["form"] = None
            await self.dispatch(turn, side, interrupted=True)
            if not st.get("form") and not turn.handoff:
                st["form"] = saved
                for k in TURN_SLOTS:
                    if k in saved_slots:
                        turn.slots[k] = saved_slots[k]
                self.say(turn, "utter_resume_form")
                await self.run_flow(turn, saved["name"], resume=True)
            return

        # 4. follow-up that reuses context ("那上个月呢")
        last = st.get("last_intent")
        if last in ("bill_query", "usage_query") and turn.entities.get("month") and (
            intent not in BUSINESS_INTENTS or turn.confidence < 0.8 or intent == last
        ):
            month = turn.entities["month"]
            shown = turn.slots.get("month")
            if shown and says_previous_month(turn.message.text or ""):
                y, m = map(int, shown.split("-"))
                month = f"{y - (m == 1)}-{(m - 2) % 12 + 1:02d}"  # the month before the one just shown
            turn.set_slot("month", month)
            st["fallbacks"] = 0
            await self.run_flow(turn, last, resume=True)
            return

        # 5. a bare piece of information with no form: continue the last request with it
        if intent in ("inform", "nlu_fallback") or turn.confidence < FALLBACK_CONFIDENCE:
            if (turn.entities.get("account_number") or has_account_digits(text)) and last in BUSINESS_INTENTS:
                self._take_entities(turn)
                await self.run_flow(turn, last, resume=True)
                return
            if turn.entities.get("work_order_id") or work_order_id(text):
                self._take_entities(turn)
                await self.run_flow(turn, "work_order_status")
                return
        await self.dispatch(turn, intent if turn.confidence >= FALLBACK_CONFIDENCE else "nlu_fallback")

    async def dispatch(self, turn: Turn, intent: str, *, interrupted: bool = False) -> None:
        st = turn.state
        if intent in self.flows:
            st["fallbacks"] = 0
            await self.run_flow(turn, intent)
            return
        if intent in ("nlu_fallback", "out_of_scope", "inform") or (
            intent in ("affirm", "deny") and not interrupted
        ):
            if intent in ("affirm", "deny"):
                self.say(turn, "utter_anything_else")
                return
            await self.fallback(turn)
            return
        st["fallbacks"] = 0
        actions = self.domain.intent_actions.get(intent)
        if actions:
            for a in actions:
                if self.domain.has(a):
                    self.say(turn, a)
            return
        await self.fallback(turn)

    async def fallback(self, turn: Turn) -> None:
        FALLBACKS.labels(turn.intent if turn.intent in _FALLBACK_INTENTS else "no_action").inc()
        st = turn.state
        n = int(st.get("fallbacks") or 0) + 1
        st["fallbacks"] = n
        if n == 1:
            self.say(turn, "utter_rephrase")
        elif n == 2:
            st["offer"] = "handoff"
            self.say(turn, "utter_offer_human")
        else:
            st["fallbacks"] = 0
            self.hand_off(turn, "repeated_fallback", "normal")

    async def accept_offer(self, turn: Turn, offer: str) -> None:
        if offer == "handoff":
            self.hand_off(turn, "repeated_fallback", "normal")
        elif offer == "subscribe_outage":
            turn.set_slot("topic", "outage")
            await self.run_flow(turn, "subscribe_notifications", resume=True)
        elif offer == "pay":
            await self.run_flow(turn, "pay_bill", resume=True)
        elif offer == "book_appointment":
            await self.run_flow(turn, "book_appointment", resume=True)
        else:
            self.say(turn, "utter_anything_else")

    def hand_off(self, turn: Turn, reason: str, priority: str) -> None:
        """Ask for an agent (the tracker store opens the handoff from ``turn.handoff``)."""
        turn.state["form"] = None
        turn.handoff = (reason, priority, f"{turn.intent}: {mask_text(turn.message.text or '')[:200]}")
        turn.actions.append(("action_handoff", {"reason": reason, "priority": priority}))
        self.say(turn, "utter_handoff")

    async def run_flow(self, turn: Turn, name: str, *, resume: bool = False) -> None:
        """Run the business flow ``name``; a new request (not ``resume``) starts from empty slots."""
        st = turn.state
        if not resume:
            for k in TURN_SLOTS:
                turn.slots.pop(k, None)
            turn.slots.pop("_confirmed", None)
            st["form"] = None
            self._take_entities(turn)
            turn.slots["_text"] = turn.message.text
        st["last_intent"] = name
        turn.actions.append((f"flow_{name}", {}))
        await self.flows[name](turn)  # Stop propagates: the flow asked something
        st["form"] = None  # the flow ran to its end
        turn.slots.pop("_confirmed", None)

    # ------------------------------------------------------------------ emergencies
    async def emergency(self, turn: Turn) -> None:
        """A hazard: safety advice, an emergency repair order and an agent, whatever was open."""
        self._clear_form(turn)
        turn.state["last_intent"] = "repair_request"
        self.say(turn, "utter_emergency_safety", urgent=True)
        self._take_entities(turn)
        number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
        if not number and len(turn.authorized) == 1:
            number = next(iter(turn.authorized))
        address = turn.slots.get("address")
        phone = None
        if number:
            acc = await self.account(turn, number)
            address = address or acc.address
            phone = mobile(acc.phone)
        phone = phone or proven_phone(turn.message, self.sender_proofs) or turn.slots.get("contact_phone")
        wo = await self.core.create_work_order(
            "repair", (turn.message.text or "")[:500], account_number=number, priority="emergency",
            channel=turn.message.channel, contact_phone=phone, address=address,
            details={"hazard": True, "conversation_id": turn.conversation_id},
            idempotency_key=f"{turn.key}:wo",
        )
        turn.actions.append(("action_create_work_order", {"id": wo.id, "type": "repair", "priority": "emergency"}))
        self.say(turn, "utter_emergency_order", work_order_id=wo.id)
        turn.state["form"] = None
        turn.handoff = ("hazard", "emergency", f"hazard {wo.id}: {mask_text(turn.message.text or '')[:200]}")
        turn.actions.append(("action_handoff", {"reason": "hazard", "priority": "emergency"}))


def _unclear_reply(turn: Turn, intent: str) -> bool:
    """Neither understood nor carrying anything a flow could use (an account number, a work
    order, a date...): what a customer types by mistake while a yes/no question is open."""
    vague = intent in ("nlu_fallback", "inform", "out_of_scope") or turn.confidence < FALLBACK_CONFIDENCE
    return vague and not turn.entities
