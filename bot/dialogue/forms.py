"""Forms: slot filling, validation, confirmation — how a flow asks for what it needs.

A flow is re-run from the top each turn; ``require`` returns a filled slot or asks for it
(``ask``: remember which slot the form waits for, say the question, raise ``Stop`` to end the
turn). On the next turn the policy gives the answer to ``fill_requested``, which reads and
validates the value of *that* slot (an account number, the last 4 digits of a phone, a
choice among offered buttons, a date...) from the parse's entities or the raw text
(``intents.slots``) — an address must read like a place, a phone like a mobile number, an
account must exist in the core — and ``take_extra`` keeps what else an answer gives ("地址…，
电话…"). ``confirm`` asks a yes/no question before a side effect; ``ConfirmedWrites`` (the
core client the flows see) makes sure no write happens without that yes: a flow that writes
without having asked gets the question asked for it, showing what will be written, and runs
again once the customer says yes. ``_clear_form`` forgets the open form (cancel, interruption,
hand-off).

Expects of the class it is mixed into: ``say`` (``Responses``); ``account`` and
``_chosen_account`` (``IdentityMixin``: an answer that is an account number is looked up before
it is accepted, a pick among offered accounts is read the way they were offered); and
``sender_proofs`` (a channel that proves the sender's phone spares asking for one).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from backend_client import NotFound
from bot.dialogue.flows import BUSINESS_INTENTS
from bot.dialogue.flows.places import address_for, district_label, has_chinese
from bot.dialogue.responses import TOPICS, local, preview
from bot.dialogue.turn import Turn
from bot.logs import mask_account, mask_phone
from channels.base import proven_phone
from intents.payload import chosen_option
from intents.places import normalize as district_of, only_district
from intents.signals import (
    asks_dispatch,
    invoice_details,
    address_text,
    affirms,
    asks_about_selling_power,
    asks_eta,
    asks_if_account_needed,
    asks_fee,
    corrects,
    declines,
    firm_yes,
    asks_where_account,
    pays_all,
    refines_place,
    given_last4,
    last4_answer,
    is_question,
    looks_like_address,
    means_registered_address,
    means_registered_phone,
    topic,
    topics_named,
    letter_count,
    swapped_number,
    wants_anonymity,
)
from intents.slots import account_number, choice, contact_name, iso_date, kwh, lone_four_digits, mobile, work_order_id
from intents.slots import district as district_in


# slots that belong to one request; cleared when a new business request starts
TURN_SLOTS = ("month", "date", "kwh", "work_order_id", "description", "topic", "hall_id", "slot_id",
              "contact_phone", "contact_name", "location", "district", "anonymous", "payment_ref", "address")



# requests whose record is the customer's own words: a detail added at any of their prompts joins them
REPORTS = frozenset({"complaint", "feedback", "report_violation", "repair_request", "report_outage"})


# forms whose questions about their subject have an answer of their own (``form_answer``)
REPAIRS = frozenset({"repair_request", "report_outage", "emergency"})
APPLICATIONS = frozenset({"new_connection", "solar_connection", "ev_charging", "account_change"})


def says_yes(turn: Turn) -> bool:
    """A yes to the question just asked: in words ("是的", "go ahead") or as the NLU hears it,
    but not an "ok" that opens another question ("ok when exactly will it be back?")."""
    text = turn.message.text or ""
    return affirms(text) or turn.intent == "affirm" and turn.confidence >= 0.5 and not is_question(text)


def stay_anonymous(turn: Turn) -> None:
    """A report whose author keeps their name and number to themselves."""
    turn.set_slot("anonymous", True)
    turn.set_slot("contact_phone", "")

class Stop(Exception):
    """A flow asked the customer something (or finished early): end the turn here."""


# the turn being decided (set by the policy): what the write guard asks its confirmation in
CURRENT_TURN: ContextVar[Turn | None] = ContextVar("powerbot_current_turn", default=None)

# the core's calls that write something a customer asked for; each needs a yes first
WRITES = frozenset({"create_work_order", "create_subscription", "delete_subscription", "bind_account",
                    "unbind_account", "book_appointment", "cancel_appointment", "create_payment"})


class ConfirmedWrites:
    """The core client as the flows see it: reads pass through; a write the customer has not
    said yes to in this request is not made — the form asks for the yes first, showing what
    will be written, and the flow runs again once it is given (``FormsMixin.confirm``)."""

    def __init__(self, client: Any, engine: Any) -> None:
        self._client = client
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name not in WRITES:
            return attr

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            turn = CURRENT_TURN.get()
            if turn is not None and not self._engine.write_allowed(turn):
                self._engine.ask_write(turn, name, args, kwargs)
            return await attr(*args, **kwargs)

        return guarded


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
        """Go on once the customer said yes to ``response``; ask it otherwise. The yes holds
        for the rest of this request (``run_flow`` forgets it when the flow ends)."""
        if turn.slots.get("_confirmed") == flow:
            turn.state["form"] = None
            turn.writes_ok = True
            return
        self.ask(turn, flow, "confirm", response, **values)

    def write_allowed(self, turn: Turn) -> bool:
        """Whether the customer said yes to what the running request writes."""
        if turn.writes_ok:
            return True
        flow = turn.state.get("last_intent")
        if flow and turn.slots.get("_confirmed") == flow:
            turn.writes_ok = True
            return True
        return False

    def ask_write(self, turn: Turn, method: str, args: tuple, kwargs: dict) -> None:
        """Ask the yes for a write a flow is about to make, showing what it will write."""
        flow = turn.state.get("last_intent") or ""
        account = kwargs.get("account_number") or (args[0] if args and method != "create_work_order" else None)
        acct = mask_account(str(account)) if account else "-"
        if method in ("create_subscription", "delete_subscription"):
            named = str(turn.slots.get("topic") or topic(str(turn.slots.get("_text") or "")) or "").split(",")
            what = self.phrase(turn, "utter_fragment_write_subscription", account=acct,
                               topics=self.topics_phrase(turn, [t for t in named if t in TOPICS]))
        elif method in ("bind_account", "unbind_account"):
            what = self.phrase(turn, "utter_fragment_write_binding", account=acct)
        elif method == "create_work_order":
            desc = preview(str(args[1] if len(args) > 1 else kwargs.get("description") or ""))
            what = self.phrase(turn, "utter_fragment_write_order", description=desc,
                               address=address_for(kwargs.get("address"), turn.lang) or "-", phone=mask_phone(kwargs.get("contact_phone") or "") or "-")
        else:
            what = self.phrase(turn, "utter_fragment_write_other")
        turn.state["form"] = {"name": flow, "slot": "confirm"}
        self.say(turn, "utter_confirm_write", what=what)
        raise Stop

    async def contact_phone(self, turn: Turn, flow: str) -> str:
        """A number to call back: given in this request, the verified account's, the one the
        channel proves, or asked for."""
        p = turn.slots.get("contact_phone")
        if p:
            return p
        await self.account_by_check(turn, flow)  # "ends with 9000": the named account's phone, once checked
        known = await self.known_callback_phone(turn)
        return known or self.require(turn, flow, "contact_phone", "utter_ask_contact_phone")

    async def known_callback_phone(self, turn: Turn) -> str | None:
        """The verified account's mobile or the one the channel proves, without asking."""
        number = turn.slots.get("account_number")
        if number and number in turn.authorized:
            acc = await self.account(turn, number)
            if mobile(acc.phone):
                return mobile(acc.phone)  # type: ignore[return-value]
        return proven_phone(turn.message, self.sender_proofs) or None

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

    async def _fill_address(self, turn: Turn, slot: str) -> bool:
        """An address answer: the NLU's address, or what reads like a place; "the registered
        one" is the verified account's address. A sentence, a number or a question is not one."""
        text = (turn.message.text or "").strip()
        e = turn.entities
        value = e.get("address")
        form = turn.state.get("form") or {}
        if (not value or is_question(text)) and turn.intent in BUSINESS_INTENTS - {form.get("name")} \
                and turn.confidence > 0.8 and not means_registered_address(text):
            return False  # another request ("浦东明天有没有计划停电", "明天我们那停不停电 浦东张江路"), not the place asked for
        if not value and means_registered_address(text):
            number = self._proven_account(turn)
            if number:
                value = (await self.account(turn, number)).address
        if not value and looks_like_address(text):
            value = address_text(text)
        if value and only_district(value):
            value = None  # "浦东新区" said at the address prompt: a district, asked again below
        if not value and (e.get("district") or district_of(text)):
            # "浦东": where, roughly — kept, but a crew needs the street and number (asked again)
            turn.set_slot("district", e.get("district") or district_of(text))
            turn.form_note = ("utter_district_noted", {"district": district_label(turn.slots["district"], turn.lang)})
            return False
        if has_chinese(value) and not district_of(value) and turn.slots.get("district"):
            value = f"{turn.slots['district']}{value}"  # "川沙路1288弄…" after "浦东新区"
        if not value:
            return False
        turn.set_slot(slot, value)
        if e.get("district"):
            turn.set_slot("district", e["district"])
        return True

    def _proven_account(self, turn: Turn) -> str | None:
        """The account a bound or verified customer means by "mine"."""
        number = turn.slots.get("account_number")
        if number in turn.authorized:
            return number
        return next(iter(turn.authorized)) if len(turn.authorized) == 1 else None

    async def _known_phone(self, turn: Turn) -> str | None:
        """"The registered number" / "this number": the verified account's phone, or the phone
        the channel proves."""
        number = self._proven_account(turn)
        if number:
            p = mobile((await self.account(turn, number)).phone)
            if p:
                return p
        return proven_phone(turn.message, self.sender_proofs)

    async def take_extra(self, turn: Turn, form: dict) -> bool:
        """What else an answer gives besides the slot asked ("地址…，电话…"): a phone, an
        address, a date — kept for the questions to come. True when anything new was kept."""
        text = (turn.message.text or "").strip()
        e = turn.entities
        got = False
        shown = {k: turn.slots.get(k) for k in ("contact_phone", "address", "account_number")}
        phone = mobile(str(e.get("phone_number") or "")) or (mobile(text) if not e.get("account_number") else None)
        if not phone and means_registered_phone(text):
            phone = await self._known_phone(turn)
        acc = e.get("account_number") or account_number(text)
        # "不对 我要绑的是店里那个 3100000003" at the confirmation: that account instead (checked anew)
        switch = form.get("slot") == "confirm" and acc and str(acc) != turn.slots.get("account_number")
        if acc and (not turn.slots.get("account_number") or switch) and form.get("slot") != "last4":
            try:
                await self.account(turn, str(acc))
                turn.set_slot("account_number", str(acc))
                if switch:
                    turn.slots.pop("_confirmed", None)
                got = True
                if given_last4(text) and str(acc) not in turn.authorized:  # "户号…，尾号8000"
                    await self.verify(turn, form["name"], turn.accounts_cache[str(acc)])
            except NotFound:
                pass
        if phone and (not turn.slots.get("contact_phone") or form.get("slot") == "confirm"
                      and phone != turn.slots.get("contact_phone")):  # "call me on …" changes the number
            turn.set_slot("contact_phone", phone)
            got = True
        swap = swapped_number(text)
        if swap and turn.slots.get("address") and swap[1] in str(turn.slots["address"]) and swap[0] != swap[1]:
            # "是1203室不是1202": the number corrected inside the address given
            turn.set_slot("address", str(turn.slots["address"]).replace(swap[1], swap[0], 1))
            got = True
        moved = form.get("slot") == "confirm" and e.get("address") and e["address"] != turn.slots.get("address")
        if (not turn.slots.get("address") or moved) and form.get("slot") not in ("address", "location", "district") and (
            e.get("address") or means_registered_address(text) and self._proven_account(turn)
            or form.get("name") == "emergency" and looks_like_address(text)
        ):  # "wait, the address is 98 Gumei Road" at the confirmation changes it, as a number does
            got = await self._fill_address(turn, "address") or got
        elif turn.slots.get("address") and not phone and form.get("slot") == "contact_phone" and refines_place(text):
            # "3号楼 二楼楼道" while the number is asked: where exactly, added to the place given
            joint = "" if has_chinese(text) else ", "
            turn.set_slot("address", f"{turn.slots['address']}{joint}{text}"[:200])
            got = True
        for name in ("date", "month"):
            if e.get(name) and not turn.slots.get(name):
                turn.set_slot(name, e[name])
                got = True
        topics = ",".join(topics_named(text)) if (form.get("name"), form.get("slot")) == ("subscribe_notifications", "confirm") else ""
        if form.get("name") == "pay_bill" and (e.get("month") or pays_all(text)):
            got = True  # "先只交1月份的", "还是一起交了吧": the amount to pay changes (``flow_pay_bill``)
        if topics and topics != turn.slots.get("topic"):
            turn.set_slot("topic", topics)  # "actually just the outage alerts": those topics, shown again
            turn.slots.pop("_confirmed", None)
            got = True
        if form.get("slot") == "confirm" and any(v and turn.slots.get(k) != v for k, v in shown.items()):
            turn.slots.pop("_confirmed", None)  # "好 …电话13800000000" changed what is filed: shown again for a yes
        return got

    def form_answer(self, turn: Turn, name: str) -> str | None:
        """The response answering a question about the form's own subject, asked while it is
        open ("上门修要收费吗", "do I need the property's consent first?"), if there is one."""
        text = turn.message.text or ""
        if not is_question(text):
            return None
        if (turn.state.get("form") or {}).get("slot") == "account_number" and asks_where_account(text):
            return "utter_where_account"  # "户号是啥 在哪看啊？"
        if name in REPAIRS:
            return "utter_repair_fee" if asks_fee(text) else "utter_repair_eta" if asks_eta(text) else None
        if name == "solar_connection" and asks_about_selling_power(text):
            return "utter_solar_sell_back"
        if name == "subscribe_notifications" and asks_fee(text):
            return "utter_notices_free"
        if name == "pay_bill" and asks_fee(text):
            return "utter_payment_free"  # "is there a fee if I pay online?"
        if name in APPLICATIONS and asks_fee(text):
            return "utter_application_free"  # "申请要钱吗？"
        if name in APPLICATIONS and asks_eta(text):
            return "utter_application_eta"  # "roughly how long does the approval take?"
        if name in APPLICATIONS and asks_if_account_needed(text):
            return "utter_application_inquiry"  # "一定要户号吗？我就先问问"
        if name in APPLICATIONS and (turn.intent in (name, "inform", "nlu_fallback", "out_of_scope")
                                     or turn.intent not in BUSINESS_INTENTS or turn.confidence < 0.7):
            return f"utter_materials_{name}"
        return None

    def add_detail(self, turn: Turn, name: str, slot: str | None) -> bool:
        """A statement at a report's prompt ("he came yesterday to fix my meter" while a number
        is asked) joins the report's words. Not a question, not a yes or no, not a request of
        another kind — though a complaint's details may well sound like an outage or a fault."""
        if name == "invoice_request":
            return bool(invoice_details(turn.message.text or ""))  # its flow keeps the title, tax number, e-mail
        if name not in REPORTS | APPLICATIONS or slot == "description":
            return False
        key = "description" if turn.slots.get("description") else "_text"
        text = (turn.message.text or "").strip()
        if not turn.slots.get(key) or letter_count(text) < 6 or corrects(text) or turn.entities.get("address") \
                or is_question(text) or declines(text) or affirms(text) or given_last4(text) \
                or any(turn.entities.get(k) for k in ("account_number", "phone_number", "work_order_id")):
            return False  # details are words, not the numbers a form takes
        kin = (name, "inform", "nlu_fallback") + (
            ("report_outage", "repair_request") if name in ("complaint", "report_outage", "repair_request") else ())
        if turn.intent not in kin and turn.confidence >= 0.7 and not (name == "complaint" and not is_question(text)):
            return False  # (what happened, told at a complaint's question, is its detail whatever it sounds like)
        if name in APPLICATIONS:
            return True  # the application's flow keeps it as a note
        joint = "；" if has_chinese(text) else "; "
        turn.slots[key] = f"{turn.slots[key]}{joint}{text}"[:500]
        return True

    async def fill_requested(self, turn: Turn, form: dict) -> bool:
        """Extract and validate the value of the slot the form asked for."""
        slot = form.get("slot")
        text = (turn.message.text or "").strip()
        e = turn.entities
        if slot == "confirm":
            if form.get("after_side") and not firm_yes(text):
                # "好的" after the answer to a question asked in between: it may answer that answer;
                # a write needs a yes that is surely to it
                turn.form_note = ("utter_confirm_explicitly", {})
                return False
            if says_yes(turn) or form["name"] in REPAIRS and asks_dispatch(text):  # "嗯，派人来看看吧"
                turn.slots["_confirmed"] = form["name"]
                return True
            return False
        if slot == "account_number" and form.get("name") == "work_order_status":
            wid = e.get("work_order_id") or work_order_id(text)
            if wid:  # "which account?" answered with the work order number itself
                turn.set_slot("work_order_id", str(wid).upper())
                return True
        if slot == "account_number" and form.get("options"):
            chosen = await self._chosen_account(turn, text, form["options"])
            if chosen:
                turn.set_slot("account_number", chosen)
                return True
        # an existing supply's application (solar, a charger, a transfer) may be named by its account
        # instead of its address; a new connection has none ("3100000002" there is no address)
        if slot in ("account_number", "location") or slot == "address" and form.get("name") in APPLICATIONS - {"new_connection"}:
            acc = e.get("account_number") or account_number(text)
            if acc:
                try:
                    await self.account(turn, str(acc))
                except NotFound:
                    self.say(turn, "utter_account_not_found", account=mask_account(str(acc)))
                    raise Stop from None
                turn.set_slot("account_number", str(acc))
                turn.slots.pop("_verify_for", None)
                if slot == "address":
                    turn.slots["_named_for"] = form["name"]  # an application's account instead of its address: checked
                if given_last4(text) and str(acc) not in turn.authorized:  # "户号…，尾号8000": checked now
                    await self.verify(turn, form["name"], turn.accounts_cache[str(acc)])
                return True
            pending = turn.slots.get("account_number")
            digits = last4_answer(text)
            if slot == "location" and digits and pending and pending not in turn.authorized:
                # "8000" where the place is asked, after an account was named: the account is checked
                # and its registered address used
                turn.slots["_last4"] = digits
                await self.verify(turn, form["name"], await self.account(turn, str(pending)))
                return True
            if slot in ("location", "address"):
                return await self._fill_address(turn, "address")
            return False
        if slot == "last4":
            if not given_last4(text) and turn.intent in BUSINESS_INTENTS and turn.confidence >= 0.9 and letter_count(text) >= 6:
                return False  # "那帮我约明天上午徐汇营业厅 我叫王强 电话136…": another request, its number no answer
            full = mobile(str(e.get("phone_number") or "")) or mobile(text)
            if full:  # people type the whole number; it is checked whole, not just its tail
                turn.slots["_last4"] = full
                return True
            digits = last4_answer(text) or lone_four_digits(text)
            if digits is None:
                return False
            turn.slots["_last4"] = digits
            return True
        if slot == "contact_phone":
            if wants_anonymity(text) and form.get("name") == "report_violation":
                stay_anonymous(turn)
                return True
            if form.get("name") == "feedback" and (affirms(text) or turn.intent == "affirm") \
                    and not (e.get("phone_number") or mobile(text)):
                # "yes, record it": the question showed the suggestion and asked for a yes (a
                # phone number only if they want a call back)
                turn.set_slot("contact_phone", "")
                turn.slots["_confirmed"] = "feedback"
                return True
            p = mobile(str(e.get("phone_number") or "")) or mobile(text)
            if not p and means_registered_phone(text):
                p = await self._known_phone(turn)
            if p:
                turn.set_slot("contact_phone", p)
                return True
            named = turn.slots.get("account_number")
            # "ends with 9000" for an account named but not checked: the check, then its phone
            return bool(named) and named not in turn.authorized and given_last4(text) is not None
        if slot == "address":
            return await self._fill_address(turn, "address")
        if slot == "district":
            if e.get("district"):
                turn.set_slot("district", e["district"])
                return True
            if turn.intent in BUSINESS_INTENTS and turn.confidence > 0.9:
                return False
            named = district_in(text) if len(text) >= 2 else None  # "几点到几点" names none
            if not named:
                return False
            turn.set_slot("district", named)
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
            if turn.intent in BUSINESS_INTENTS and turn.intent != form.get("name") and turn.confidence > 0.8:
                return False  # another request asked in passing, not the description
            turn.set_slot("description", text)
            return True
        if slot == "contact_name":
            # "确认", "好的" where a name was asked: an answer to another question, never a name
            naming = (turn.slots.get("_appt") or {}).get("asked") in ("name", "contact")
            name = None if naming and (says_yes(turn) or declines(text)) else contact_name(text)
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
