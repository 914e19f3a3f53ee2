"""The policy: what the bot does with one understood message.

In order of precedence:

- a hazard preempts everything: its safety script and form (``flows.hazards``); a "no" files
  nothing;
- "human please" hands off (an angry one with an apology first); an angry message hears an
  apology before anything else;
- an open form: a no, a cancel or a correction ("哦不对，我是要报修…") leaves it (the corrected
  request is taken up); an answer is checked for its kind (``FormsMixin.fill_requested``) and
  whatever else it gives is kept; another understood request is answered around the form and
  the form resumed; thanks or goodbye put it aside (resumed only on a yes); a question not
  understood twice offers a person instead of a third ask;
- a pending yes/no offer is answered; it lapses on anything else (an unclear reply is asked
  for a yes or no twice at most); a yes or no with nothing asked writes nothing;
- two requests in one message ("查下电费，顺便问下浦东明天停不停电") are handled in order
  (``act``), the first question that opens staying open;
- a follow-up reuses the last request (``follow_ups``: "那上个月呢"); a bare account or work-order number
  continues the last request, or asks what it is for; a message of details the NLU calls
  "inform" is the best-ranked business request of the parse;
- otherwise the intent is dispatched — to a business flow, to the simple responses the domain's
  rules give it, to "not something 95598 handles" (out of scope), or to the fallback
  (rephrase → offer an agent → hand off).

Every write to the core waits for the customer's yes (``forms.ConfirmedWrites``).

Expects of the class it is mixed into: ``flows`` (business intent → ``flow_*`` method, built by
the engine), ``domain``, ``core``, ``sender_proofs``; ``say`` (``Responses``);
``fill_requested``, ``take_extra``, ``_clear_form``, ``_take_entities``, ``_known_phone``,
``_proven_account`` (``FormsMixin``); ``account``, ``verify`` (``IdentityMixin``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot.dialogue.flows import BUSINESS_INTENTS
from bot.dialogue.flows.appointments import CANCEL_FLOW
from bot.dialogue.flows.hazards import EMERGENCY
from bot.dialogue.forms import APPLICATIONS, CURRENT_TURN, TURN_SLOTS, Stop, says_yes
from bot.dialogue.identity import ACCOUNT_CHECK
from bot.dialogue.rereading import FALLBACK_CONFIDENCE, reread
from bot.dialogue.turn import Turn
from bot.dialogue.verification import LOCK_MINUTES
from backend_client import NotFound
from bot.logs import mask_account, mask_text
from common.metrics import FALLBACKS
from intents.signals import (
    asks_capabilities, asks_for_something, asks_human, asks_where_account, cannot_verify, asks_if_bot, asks_to_submit, cancels_booking, clauses,
    confirms_submission, corrects, declines, given_last4, has_words, increases_capacity, is_angry, is_caution,
    is_question, last4_answer, looks_like_address, narrows_topics, pieces, reports_hazard, says_cancel, topic,
    wants_anonymity, word_chars,
)
from intents.slots import account_number, has_account_digits, last4, work_order_id

# a clause of a two-request message is acted on when the NLU is this sure of it
CLAUSE_CONFIDENCE = 0.6
# clauses that describe one fault from two sides (where it is, what it does) are one request
_ONE_FAULT = frozenset({"report_outage", "repair_request"})
# the least confidence of a business intent ranked below "inform" that is taken as the request
RANKED_REQUEST_CONFIDENCE = 0.02
# answers a form did not understand in a row before an agent is offered
MAX_FORM_MISSES = 2

# intents a fallback is labelled with in the metrics; any other: "no_action" (an intent
# with nothing to say)
_FALLBACK_INTENTS = frozenset({"nlu_fallback", "out_of_scope", "inform"})
# the flow an offer leads to (asking for it in other words takes the offer up)
_OFFER_FLOWS = {"subscribe_outage": "subscribe_notifications", "pay": "pay_bill", "pay_info": "pay_bill",
                "book_appointment": "book_appointment"}
# offers the reply did not put as a question (a bill with arrears may be paid with a bare "ok"):
# an unclear message lets them lapse instead of asking for a yes or no
_UNASKED_OFFERS = frozenset({"handoff", "pay", "pay_info"})
# requests a statement of how things are may sound like ("the account is still in my landlord's name", "my office is there")
_CONTEXT_PRONE = APPLICATIONS | {"book_appointment", "bind_account", "subscribe_notifications", "unsubscribe_notifications"}
# what a visit to a service hall is for (a booking that names one is one request)
_HALL_BUSINESS = frozenset({"book_appointment", "new_connection", "solar_connection", "ev_charging", "account_change",
                            "invoice_request"})
# small talk that ends what was being asked (the form is put aside, not resumed unasked)
_CLOSING_TALK = frozenset({"thank", "goodbye"})


class PolicyMixin:
    """The turn's decision (mixed into ``DialogueEngine``)."""

    async def policy(self, turn: Turn) -> None:
        token = CURRENT_TURN.set(turn)
        try:
            await self._policy(turn)
        finally:
            CURRENT_TURN.reset(token)

    async def _policy(self, turn: Turn) -> None:
        text = (turn.message.text or "").strip()
        st = turn.state
        form = st.get("form")
        intent = turn.intent
        decline = declines(text) or cancels_booking(text)
        self.note_early_last4(turn, text)
        # the request the last turn wrote after the customer's yes: a "yes"/"confirm" now is
        # said to it, and is answered that it is done (not with "anything else?")
        turn.just_done = st.pop("done", None)

        # 0. understand special phrasings the classifier is weak at
        intent, turn.confidence = reread(intent, turn.confidence, text, in_form=bool(form))
        turn.intent = intent

        # 1. safety first: a hazard preempts everything (its own form asks where and who)
        in_emergency = bool(form) and form.get("name") == EMERGENCY
        if not in_emergency and reports_hazard(text) and intent not in ("affirm", "deny", "cancel"):
            await self.emergency(turn)
            return
        if asks_human(text) or intent == "request_human" and turn.confidence >= FALLBACK_CONFIDENCE and not (
                form and decline) and not (asks_if_bot(text) and is_question(text)):  # "你是机器人吗" is answered
            self._clear_form(turn)
            st.pop("offer", None)
            if is_angry(text) or intent == "complaint":
                self.say(turn, "utter_apology")
            self.hand_off(turn, "request_human", "normal")
            return
        if not form and asks_where_account(text) and not turn.entities.get("account_number"):
            await self.tell_own_accounts(turn)  # "我家户号是多少来着 忘了"
            return
        if not form and (asks_if_bot(text) or asks_capabilities(text)) and intent not in BUSINESS_INTENTS:
            st["fallbacks"] = 0  # who is answering and how to reach a person; or all it can do
            self.say(turn, "utter_iamabot" if asks_if_bot(text) else "utter_capabilities")
            return
        if is_angry(text) and not form:
            self.say(turn, "utter_apology")  # an angry customer hears an apology before anything else
        elif intent == "complaint" and not form:
            self.say(turn, "utter_complaint_apology")  # every complaint starts with one, as at 95598
        if not form and is_caution(text):
            self.say(turn, "utter_caution_safety")

        # 2. an active form: leave it, fill it, or answer around it
        if self.cancels_visit(turn, text):  # "取消预约", "算了还是取消吧" right after booking
            self._clear_form(turn)
            st.pop("offer", None)
            await self.run_flow(turn, CANCEL_FLOW)
            return
        if form:
            st.pop("offer", None)
            await self._form_turn(turn, form, decline)
            return
        paused = st.pop("paused", None)
        if paused and says_yes(turn):
            st["form"] = paused
            self.say(turn, "utter_resume_form")
            await self.run_flow(turn, paused["name"], resume=True)
            return
        if intent == "cancel":
            if st.pop("offer", None) or paused:
                self.say(turn, "utter_cancelled")
            else:
                self.say(turn, "utter_anything_else")
            return

        # 3. pending offer (handoff after fallback, outage notice subscription...)
        offer = st.pop("offer", None)
        offer_misses = int(st.pop("offer_misses", 0) or 0)
        # "哦不对 我说错了 是闵行": the last request asked again right, not a no to the offer
        correction = corrects(text) and any(turn.entities.get(k) for k in ("district", "date", "month", "account_number"))
        if offer and not correction:
            if decline or intent == "deny" or intent == "cancel":
                self.say(turn, "utter_anything_else")
                return
            if says_yes(turn) and turn.just_done and confirms_submission(text):
                self._yes_to_nothing(turn, "affirm")  # "确认" once more for what was just filed, not the offer
                return
            if says_yes(turn) and intent not in _CLOSING_TALK and not turn.entities.get("account_number") and not (
                    intent in BUSINESS_INTENTS and intent != _OFFER_FLOWS.get(offer) and turn.confidence >= 0.7):
                # ("好的，谢谢你们辛苦了" is thanks, not a yes to paying; "好吧 那查下我电费…" a new request)
                await self.accept_offer(turn, offer)
                return
            if _OFFER_FLOWS.get(offer) == intent and turn.confidence >= FALLBACK_CONFIDENCE:
                # "嗯，短信通知我就行": the offer taken up in other words; its flow asks the yes
                await self.accept_offer(turn, offer, confirmed=False)
                return
            if offer not in _UNASKED_OFFERS and _unclear_reply(turn, intent) and not is_question(text) \
                    and offer_misses < MAX_FORM_MISSES:
                # "0000", "嗯？": not a new request, not an answer. Keep the question open and ask
                # for a yes or no (twice at most); a real new request lets the offer lapse
                st["offer"] = offer
                st["offer_misses"] = offer_misses + 1
                self.say(turn, "utter_offer_yes_no")
                return
        elif intent in ("affirm", "deny") and not decline and not correction and turn.confidence >= FALLBACK_CONFIDENCE:
            # nothing was asked: a bare yes or no writes nothing and starts nothing
            st["fallbacks"] = 0
            self._yes_to_nothing(turn, intent)
            return
        elif decline and intent not in BUSINESS_INTENTS and not correction:
            self.say(turn, "utter_anything_else")
            return

        # 4. two requests in one message: each in turn; a long one the NLU cannot place as a whole:
        # the one request one of its parts makes
        found = self._request_in_parts(turn) if (
            intent in _FALLBACK_INTENTS and not turn.entities or turn.confidence < FALLBACK_CONFIDENCE) else None
        if found:
            intent = turn.intent = found
            turn.confidence = max(turn.confidence, CLAUSE_CONFIDENCE)
        parts = self._requests(turn, intent)
        if len(parts) >= 2:
            await self.act(turn, intent, parts)
            return

        # 5. a follow-up that reuses the last request ("那上个月呢", "what about Baoshan?")
        last = st.get("last_intent")
        if await self.follow_up(turn, intent, text, last):
            return

        # 6. a bare piece of information with no form: continue the last request with it
        if intent in ("inform", "nlu_fallback") or turn.confidence < FALLBACK_CONFIDENCE:
            if st.get("locked") and last4(text):
                self.say(turn, "utter_verify_locked", minutes=LOCK_MINUTES)  # the check stays locked
                return
            pending = turn.slots.get("account_number")
            digits = last4_answer(text)
            if pending and pending not in turn.authorized and (last in BUSINESS_INTENTS or last == ACCOUNT_CHECK) and digits:
                # "last 4 digits are 8000" (or "8000" alone) after a request that named an account:
                # checked, then answered
                turn.slots["_last4"] = digits
                try:
                    await self.verify(turn, last, await self.account(turn, str(pending)))
                except NotFound:
                    turn.slots.pop("account_number", None)
                else:
                    await self.run_flow(turn, last, resume=True)
                return
            if (turn.entities.get("account_number") or has_account_digits(text) and not turn.entities.get("phone_number")) \
                    and last in BUSINESS_INTENTS:
                self._take_entities(turn)
                await self.run_flow(turn, last, resume=True)
                return
            if turn.entities.get("work_order_id") or work_order_id(text):
                self._take_entities(turn)
                await self.run_flow(turn, "work_order_status")
                return
            wanted = self._ranked_request(turn) if intent == "inform" else None
            if wanted:
                # "I want to pay, account … and last 4 digits …": the NLU hears the details
                # ("inform"); the request they come with is the best-ranked business intent
                turn.intent = wanted
                await self.act(turn, wanted)
                return
            number = turn.entities.get("account_number") or account_number(text)
            if number and topic(text) == "bill":
                # "我想问一下我家电费交了没有 户号是…": the bill, whatever the NLU made of the words
                turn.intent = "bill_query"
                await self.act(turn, "bill_query")
                return
            if number:
                # "3100000002", "户号…的户主是谁": what shall be done with it? Nothing is shown yet
                turn.set_slot("account_number", str(number))
                turn.slots["_text"], st["last_intent"] = text, ACCOUNT_CHECK  # its last 4 digits next
                st["fallbacks"] = 0
                self.say(turn, "utter_account_purpose", account=mask_account(str(number)))
                return
        await self.act(turn, intent if turn.confidence >= FALLBACK_CONFIDENCE else "nlu_fallback")

    # ------------------------------------------------------------------ two requests in one message
    async def act(self, turn: Turn, intent: str, parts: list[tuple[str, dict]] | None = None) -> None:
        """Act on a new message: each request it makes, in order ("查下电费，顺便问下浦东明天停不停
        电": the bill, then the outage schedule). The first request that asks something keeps
        its question open; the others are answered around it."""
        if parts is None:
            parts = self._requests(turn, intent)
        if len(parts) < 2:
            await self.dispatch(turn, intent)
            return
        st = turn.state
        whole = (turn.message, turn.intent, turn.confidence, turn.entities)
        turn.whole_text = turn.message.text
        kept: tuple[dict, dict] | None = None
        for text, parse in parts:
            name = parse["intent"]["name"]
            ents: dict[str, Any] = dict(whole[3])  # what the whole message gives (an account...)
            for e in parse.get("entities") or []:
                ents[e.get("entity")] = e.get("value")
            turn.message = replace(whole[0], text=text)
            turn.intent, turn.confidence, turn.entities = name, float(parse["intent"].get("confidence") or 0), ents
            before = len(turn.replies)
            try:
                await self.dispatch(turn, name)
            except Stop:
                if st.get("form") and kept is None:
                    kept = (dict(st["form"]), dict(turn.slots))
                elif kept is not None:
                    # one question at a time: the first request's stays open (what this one said before
                    # its question, like the papers an application needs, is kept)
                    del turn.replies[max(before, len(turn.replies) - 1):]
            st["form"] = None
        turn.message, turn.intent, turn.confidence, turn.entities = whole
        if kept is not None:
            st["form"] = kept[0]
            for k, v in kept[1].items():
                turn.slots.setdefault(k, v)
            for k in TURN_SLOTS:
                if k in kept[1]:
                    turn.slots[k] = kept[1][k]
            st["last_intent"] = kept[0]["name"]

    def _ranked_request(self, turn: Turn) -> str | None:
        """The business request a message full of details ("inform") comes with: the best
        business intent of the NLU's ranking, when the message has words besides the details."""
        if not has_words(turn.message.text or ""):
            return None
        for r in turn.parse.get("intent_ranking") or []:
            if r.get("name") in BUSINESS_INTENTS and float(r.get("confidence") or 0) >= RANKED_REQUEST_CONFIDENCE:
                return r["name"]
        return None

    def _request_in_parts(self, turn: Turn) -> str | None:
        """The business request of a long message: the NLU's best guess for the whole, when one of
        its parts makes that request fairly surely."""
        text = turn.message.text or ""
        if len(text) < 24:
            return None
        guess = next((r["name"] for r in turn.parse.get("intent_ranking") or []
                      if r["name"] in BUSINESS_INTENTS and float(r.get("confidence") or 0) >= 0.1), None)
        parts = [(x["intent"]["name"], float(x["intent"].get("confidence") or 0))
                 for x in (self._parse(p) for p in pieces(text) if len(p) >= 4)]
        return guess if any(name == guess and conf >= 0.6 for name, conf in parts) else None

    def _requests(self, turn: Turn, intent: str) -> list[tuple[str, dict]]:
        """The clauses of a message that are requests of their own (each understood, the
        intents different, at least one a business request); one entry or none otherwise."""
        pieces = clauses(turn.message.text or "")
        if len(pieces) < 2 or len(pieces) > 4:
            return []
        parsed = [(p, self._parse(p)) for p in pieces]
        useful = [(p, x) for p, x in parsed
                  if x["intent"]["name"] not in ("nlu_fallback", "inform", "affirm", "deny", "out_of_scope")
                  and float(x["intent"].get("confidence") or 0) >= CLAUSE_CONFIDENCE]
        if any(x["intent"]["name"] in BUSINESS_INTENTS for _, x in useful):  # "…家里还有老人呢" is no greeting to answer,
            useful = [(p, x) for p, x in useful if x["intent"]["name"] not in ("greet", "goodbye", "thank")  # "great." no praise
                      and not (x["intent"]["name"] == "feedback" and word_chars(p) <= 6)]
        if any(asks_for_something(p) for p, _ in useful):  # "…the account is still in my landlord's name. Can I see
            # the last bill?": a statement of how things are, next to a question, is what the question is about
            useful = [(p, x) for p, x in useful if asks_for_something(p) or x["intent"]["name"] not in _CONTEXT_PRONE]
        names = [x["intent"]["name"] for _, x in useful]
        if len(useful) < 2 or len(set(names)) < len(names) or not any(n in BUSINESS_INTENTS for n in names):
            return []
        if set(names) <= _ONE_FAULT or set(names) <= _ONE_FAULT | {"new_connection"} and increases_capacity(turn.message.text or ""):
            return []  # "Is there a fault on Youyi Road? we have no power": one report; a trip a capacity increase is for
        if "book_appointment" in names and set(names) <= _HALL_BUSINESS:
            return []  # "book the Jing'an hall Friday…, about a new connection": what the visit is for
        if intent == "complaint" and any(x["intent"]["name"] == "complaint" and len(p.strip()) <= 12 for p, x in useful):
            return []  # "my bill doubled, the meter is wrong. complaint!": what the complaint is about
        return useful

    async def dispatch(self, turn: Turn, intent: str, *, interrupted: bool = False) -> None:
        st = turn.state
        if intent in self.flows and intent != EMERGENCY:
            st["fallbacks"] = 0
            await self.run_flow(turn, intent)
            return
        if intent == "out_of_scope":
            # not something 95598 handles: say so and what it can do, not "I didn't understand";
            # the second in a row offers a person (it may be a request the NLU does not know)
            FALLBACKS.labels("out_of_scope").inc()
            n = int(st.get("fallbacks") or 0) + 1
            st["fallbacks"] = n
            self.say(turn, "utter_out_of_scope")
            if n >= 2:
                st["offer"] = "handoff"
                self.say(turn, "utter_out_of_scope_offer_human")
            return
        if intent in ("nlu_fallback", "inform") or (
            intent in ("affirm", "deny") and not interrupted
        ):
            if intent in ("affirm", "deny"):
                self._yes_to_nothing(turn, intent)
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

    # ------------------------------------------------------------------ an open form
    async def _form_turn(self, turn: Turn, form: dict, decline: bool) -> None:
        """The answer to what a form asked: leaving it (a no, a cancel), the slot (checked for
        its kind) and anything else it gives, or another request answered around it."""
        st = turn.state
        name, slot = form["name"], form.get("slot")
        intent = turn.intent
        gives = self._gives_value(turn, slot) or (
            name == "report_violation" and slot == "contact_phone" and wants_anonymity(turn.message.text or "")) or (
            name == "book_appointment" and bool(turn.entities.get("date"))) or (  # "不对 改成后天下午": a change
            name == "pay_bill" and bool(turn.entities.get("month")))  # "等下 先只交1月份的吧": one month
        other = intent in BUSINESS_INTENTS and intent != name and turn.confidence >= 0.7 and not {intent, name} <= _ONE_FAULT
        if corrects(turn.message.text or "") and other and not gives:
            # "哦不对，我是要报修…": the old request is dropped, the new one taken up
            self.leave_form(turn, name, quiet=True)
            await self.act(turn, intent)
            return
        if name == CANCEL_FLOW and says_cancel(turn.message.text or ""):
            turn.slots["_confirmed"] = CANCEL_FLOW  # "对 取消": the yes to cancelling
            await self.run_flow(turn, name, resume=True)
            return
        if slot == "last4" and cannot_verify(turn.message.text or "") and not last4_answer(turn.message.text or ""):
            self.leave_form(turn, name, quiet=True)  # "尾号我不知道啊": how else to prove it, nothing shown
            turn.slots.pop("account_number", None)
            self.say(turn, "utter_verify_alternatives")
            return
        if (intent == "cancel" or decline or intent == "deny" and turn.confidence >= 0.8) and not gives:
            self.leave_form(turn, name)
            return
        answer_to = None if _has_digits(turn) else self.form_answer(turn, name)
        if answer_to:
            # "上门修要收费吗" in the middle of a repair: answered (never taken for the slot's value),
            # and the form goes on
            self.say(turn, answer_to)
            await self.run_flow(turn, name, resume=True)
            return
        filled = await self.fill_requested(turn, form)
        answer = intent in ("inform", "affirm", "deny", "nlu_fallback", name) or turn.confidence < 0.7
        extra = await self.take_extra(turn, form) if filled or answer else False
        if not (filled or extra) and self.add_detail(turn, name, slot):
            st["fallbacks"] = 0
            self.say(turn, "utter_detail_added")
            await self.run_flow(turn, name, resume=True)
            return
        if filled or extra:
            st["fallbacks"] = 0
            await self.run_flow(turn, name, resume=True)
            return
        before = st.get("previous_intent")
        if before and before != name and await self.answer_around(
                turn, form, lambda: self.follow_up(turn, intent, turn.message.text or "", before)):
            return  # "那徐汇这周呢" after planned outages, while a subscription waits for an account
        side = intent if turn.confidence >= FALLBACK_CONFIDENCE else "nlu_fallback"
        if slot == "confirm" and asks_to_submit(turn.message.text or ""):
            # "帮我登记过户申请" while its confirmation is open: the same request, shown again
            await self.run_flow(turn, name, resume=True)
            return
        if side in _CLOSING_TALK:
            # "好的知道了，谢谢": answered; the form is put aside, resumed only if the customer wants
            st["paused"] = dict(form)
            st["form"] = None
            await self.dispatch(turn, side, interrupted=True)
            return
        if side == name or side in ("inform", "affirm", "deny", "nlu_fallback", "out_of_scope", "greet") or (
            name == EMERGENCY and side == "repair_request"
        ):
            misses = int(form.get("misses") or 0) + 1
            if misses > MAX_FORM_MISSES:
                # the same question a third time helps no one: offer a person instead
                self._clear_form(turn)
                st["offer"] = "handoff"
                self.say(turn, "utter_offer_human")
                return
            note = turn.form_note or ("utter_not_understood_slot", {})  # "好的，在浦东新区，还需要…"
            self.say(turn, "utter_invalid_phone" if slot == "contact_phone" and _has_digits(turn) else note[0], **note[1])
            try:
                await self.run_flow(turn, name, resume=True)
            finally:
                if st.get("form") and st["form"].get("slot") == slot:
                    st["form"]["misses"] = misses  # the same question asked again: counted
            return
        # interruption: answer the side question, then come back to the form
        await self.answer_around(turn, form, lambda: self.dispatch(turn, side, interrupted=True))

    def _gives_value(self, turn: Turn, slot: str | None) -> bool:
        """Whether a message carries a value of the kind a form asks (so a "不用了" in it is not
        a way out: "电费先不查了，就报修电表。地址…")."""
        e = turn.entities
        return bool(e.get("address") or e.get("phone_number") or e.get("account_number") or narrows_topics(turn.message.text or "")
                    or slot == "last4" and last4(turn.message.text or "")
                    or slot in ("date", "slot_id", "hall_id") and e.get("date")
                    or slot in ("address", "location") and looks_like_address(turn.message.text or ""))

    def leave_form(self, turn: Turn, name: str, *, quiet: bool = False) -> None:
        """The customer does not want what the form was for: nothing is written."""
        self._clear_form(turn)
        turn.state.pop("paused", None)
        for k in TURN_SLOTS:
            turn.slots.pop(k, None)
        if quiet:
            return
        self.say(turn, {EMERGENCY: "utter_emergency_declined", CANCEL_FLOW: "utter_appointment_kept"}.get(name, "utter_cancelled"))

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

    def _yes_to_nothing(self, turn: Turn, intent: str) -> None:
        """A yes or no when nothing is asked. A yes right after a request was written on the
        customer's yes ("confirm" once more) is told that it is done."""
        done = turn.just_done
        if intent == "affirm" and done:
            ref = self.phrase(turn, "utter_fragment_done_order", id=done["order"]) if done.get("order") else ""
            self.say(turn, "utter_already_done", request=self.phrase(turn, f"utter_fragment_request_{done['flow']}"), ref=ref)
        else:
            self.say(turn, "utter_anything_else")

    async def accept_offer(self, turn: Turn, offer: str, *, confirmed: bool = True) -> None:
        """A yes to an offer: its question ("需要订阅停电通知吗？") was the confirmation."""
        if offer == "handoff":
            self.hand_off(turn, "repeated_fallback", "normal")
        elif offer == "subscribe_outage":
            turn.set_slot("topic", "outage")
            if confirmed:
                turn.slots["_confirmed"] = "subscribe_notifications"
            await self.run_flow(turn, "subscribe_notifications", resume=True)
        elif offer in ("pay", "pay_info"):
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
        if st.get("last_intent") not in (None, name):
            st["previous_intent"] = st["last_intent"]  # what a follow-up inside a form refers to
        st["last_intent"] = name
        orders_before = list(turn.slots.get("_orders") or [])
        turn.actions.append((f"flow_{name}", {}))
        flow = self.flows.get(name) or self.flow_emergency  # the hazard's form (``flows.hazards``) is no intent's
        try:
            if not resume:
                await self._check_given(turn, name)
            await flow(turn)  # Stop propagates: the flow asked something
        except NotFound:
            # an account the core does not know, met anywhere in a flow: say so, ask again later
            number = turn.slots.pop("account_number", None)
            self.finish(turn)
            self.say(turn, "utter_account_not_found", account=mask_account(str(number or "")))
            return
        st["form"] = None  # the flow ran to its end
        if turn.writes_ok and self.domain.has(f"utter_fragment_request_{name}"):
            orders = turn.slots.get("_orders") or []  # written after a yes: ``_policy`` reads it next turn
            st["done"] = {"flow": name, "order": orders[-1] if list(orders) != orders_before and orders else None}
        turn.slots.pop("_confirmed", None)

    async def _check_given(self, turn: Turn, flow: str) -> None:
        """A request that names an account and the last 4 digits of its phone at once ("户号…，
        尾号8000，…") is checked before the flow runs, as the answer to the check would be; so is
        one that gives the account's registered phone whole (another number is only a contact)."""
        number = turn.slots.get("account_number")
        text = turn.whole_text or turn.message.text or ""
        if number and number not in turn.authorized and (given_last4(text) or await self.gives_registered_phone(turn, number)):
            await self.verify(turn, flow, await self.account(turn, number))


def _has_digits(turn: Turn) -> bool:
    return any(ch.isdigit() for ch in turn.message.text or "")


def _unclear_reply(turn: Turn, intent: str) -> bool:
    """Neither understood nor carrying anything a flow could use (an account number, a work
    order, a date...): what a customer types by mistake while a yes/no question is open."""
    vague = intent in ("nlu_fallback", "inform", "out_of_scope") or turn.confidence < FALLBACK_CONFIDENCE
    return vague and not turn.entities
