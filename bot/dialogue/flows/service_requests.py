"""Simple work-order flows: a complaint, feedback, reporting a violation (electricity theft...).

Each collects a description (a long enough first message is the description itself), a number
to call back and a confirmation, then creates a work order (a complaint about staff conduct or a
loss to compensate is marked for a person to follow up). An angry complaint is asked for
its yes at once, showing what will be filed (a number to call back is asked with it when none
is known), and its order is urgent. A complaint about the bill shows the account's last bills
first. A violation may be reported anonymously (no callback number, no channel on the order).

Expects of the class it is mixed into: ``core``, ``sender_proofs``; ``ask``,
``require``, ``confirm``, ``finish``, ``contact_phone``, ``_order_done`` (``FormsMixin``);
``account``, ``require_account`` (``IdentityMixin``); ``say``, ``phrase`` (``Responses``).
"""

from __future__ import annotations

from bot.dialogue.forms import stay_anonymous
from bot.dialogue.flows import remember_order
from bot.dialogue.flows.places import address_for
from bot.dialogue.responses import kwh_fmt, preview
from bot.dialogue.turn import Turn
from bot.logs import mask_phone
from channels.base import proven_phone
from common.money import money_text
from intents.signals import asks_about_penalty, asks_eta, complaint_needs_agent, is_question, is_angry, wants_anonymity, word_chars
from intents.signals import topic as topic_in
from intents.slots import mobile


class ServiceRequestFlows:
    async def flow_complaint(self, turn: Turn) -> None:
        text = str(turn.slots.get("_text") or "")
        if not turn.state.get("form") and is_question(text) and asks_eta(text):
            # "投诉一般多久有人回复": how complaints are handled, not one to file
            self.finish(turn)
            self.say(turn, "utter_complaint_process")
            return
        angry = is_angry(text)
        given = turn.slots.get("account_number")
        if given and given not in turn.authorized and not turn.slots.get("contact_phone"):
            # an account named with the complaint and no number to call: checked, so its phone can be
            # called back (a number typed instead is taken, and the check is not needed)
            await self.verify(turn, "complaint", await self.account(turn, given))
        number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
        if not number and len(turn.authorized) == 1:
            number = next(iter(turn.authorized))
        if topic_in(text) == "bill":
            # a complaint about the bill: the account's last bills first (most "doubled" bills are
            # the season and the tiers), then the complaint if the customer still wants it
            number = (await self.require_account(turn, "complaint")).account_number
            if turn.slots.get("_bill_shown") != text:
                turn.slots["_bill_shown"] = text
                bills = (await self.core.list_bills(number))[:2]
                if bills:
                    lines = "\n".join(self.phrase(turn, "utter_fragment_bill_compare_line", month=b.month, kwh=kwh_fmt(b.kwh),
                                                  amount=money_text(b.amount)) for b in bills)
                    self.say(turn, "utter_bill_compare", lines=lines)
        if not angry and topic_in(text) != "bill":
            filed = await self._simple_order(turn, "complaint", "complaint", "utter_ask_complaint",
                                             "utter_complaint_created", priority="normal")
            self._say_follow_up(turn, filed)
            return
        # an angry or a bill complaint: what will be filed, for a yes (a number to call back asked
        # with it when none is known), then the order, urgent when the customer is angry
        phone = await self._known_phone_for(turn, number)
        address = turn.slots.get("address")
        self.confirm(turn, "complaint", "utter_confirm_complaint_details", description=preview(text), address=address_for(address, turn.lang) or "-",
                     phone=mask_phone(phone) if phone else self.phrase(turn, "utter_fragment_phone_wanted"))
        turn.slots["_confirmed"] = "complaint"  # the yes holds while the callback number is asked
        phone = phone or await self.contact_phone(turn, "complaint")
        person = complaint_needs_agent(text)  # staff conduct or a loss: urgent, as in a plain complaint
        wo = await self.core.create_work_order(
            "complaint", text[:500], account_number=number, priority="high" if angry or person else "normal",
            channel=turn.message.channel, contact_phone=phone, address=address,
            details={"angry": angry, "category": "bill" if topic_in(text) == "bill" else "service",
                     **({"follow_up": "agent"} if person else {})},
            idempotency_key=f"{turn.key}:wo")
        turn.slots.pop("_bill_shown", None)
        remember_order(turn, wo.id)
        self._order_done(turn, wo, "utter_complaint_urgent_created" if angry else "utter_complaint_created")
        self._say_follow_up(turn, text)

    def _say_follow_up(self, turn: Turn, text: str) -> None:
        """A filed complaint about staff conduct or a loss to compensate is followed up by a
        person (its order is urgent and says so); the chat is not queued for one."""
        if complaint_needs_agent(text):
            self.say(turn, "utter_complaint_agent_follows")

    async def _known_phone_for(self, turn: Turn, number: str | None) -> str | None:
        """A number to call back that needs no question: given in this request, the verified
        account's, or the one the channel proves."""
        if turn.slots.get("contact_phone"):
            return str(turn.slots["contact_phone"])
        if number:
            p = mobile((await self.account(turn, number)).phone)
            if p:
                return p
        return proven_phone(turn.message, self.sender_proofs)

    async def flow_feedback(self, turn: Turn) -> None:
        if turn.slots.get("_thanked") != turn.slots.get("_text"):
            turn.slots["_thanked"] = turn.slots.get("_text")  # thanks once per request, before any question
            if word_chars(str(turn.slots.get("_text") or "")) >= 8:
                self.say(turn, "utter_feedback_thanks")
        await self._simple_order(turn, "feedback", "feedback", "utter_ask_feedback", "utter_feedback_created",
                                 priority="low", phone_optional=True)

    async def _simple_order(self, turn: Turn, flow: str, wo_type: str, ask: str, done: str, *, priority: str,
                            phone_optional: bool = False) -> str:
        """File the order once described, with a number to call back and a yes; its description."""
        if not turn.slots.get("description"):
            text = str(turn.slots.get("_text") or "")
            if word_chars(text) >= 8:
                turn.set_slot("description", text)
        desc = self.require(turn, flow, "description", ask)
        if phone_optional:
            # a suggestion needs no call back: shown with a yes to record it, a number if wanted
            if "contact_phone" not in turn.slots:
                known = await self.known_callback_phone(turn)
                if not known:
                    self.ask(turn, flow, "contact_phone", "utter_ask_feedback_record", description=preview(desc))
                turn.set_slot("contact_phone", known)
            phone = turn.slots.get("contact_phone") or None
        else:
            phone = await self.contact_phone(turn, flow)
        number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
        if not number and len(turn.authorized) == 1:
            number = next(iter(turn.authorized))
        self.confirm(turn, flow, "utter_confirm_order", description=preview(desc))
        person = flow == "complaint" and complaint_needs_agent(desc)  # staff conduct or a loss: urgent
        wo = await self.core.create_work_order(
            wo_type, desc[:500], account_number=number, priority="high" if person else priority,
            channel=turn.message.channel, contact_phone=phone,
            details={"follow_up": "agent"} if person else None, idempotency_key=f"{turn.key}:wo")
        remember_order(turn, wo.id)
        self._order_done(turn, wo, done)
        return desc

    async def flow_report_violation(self, turn: Turn) -> None:
        if not turn.state.get("form") and asks_about_penalty(str(turn.slots.get("_text") or "")):
            # "偷电会怎么处罚": what the law says, and how to report one; nothing is filed
            self.finish(turn)
            self.say(turn, "utter_violation_law")
            return
        if not turn.slots.get("description"):
            text = str(turn.slots.get("_text") or "")
            if word_chars(text) >= 10:
                turn.set_slot("description", text)
        desc = self.require(turn, "report_violation", "description", "utter_ask_violation")
        if "contact_phone" not in turn.slots and wants_anonymity(str(turn.slots.get("_text") or "")):
            stay_anonymous(turn)  # "I prefer to stay anonymous" in the report itself
        address = self.require(turn, "report_violation", "address", "utter_ask_violation_address")
        if "contact_phone" not in turn.slots:
            self.ask(turn, "report_violation", "contact_phone", "utter_ask_violation_contact")
        phone = turn.slots.get("contact_phone") or None
        self.confirm(turn, "report_violation", "utter_confirm_anonymous_report" if turn.slots.get("anonymous")
                     else "utter_confirm_order", description=preview(desc))
        wo = await self.core.create_work_order(
            "violation", desc[:500], priority="normal", channel=None if turn.slots.get("anonymous") else turn.message.channel,
            contact_phone=phone, address=address, details={"anonymous": bool(turn.slots.get("anonymous"))},
            idempotency_key=f"{turn.key}:wo")
        remember_order(turn, wo.id)
        self._order_done(turn, wo, "utter_violation_created")
