"""The dialogue engine: tracker, rules + forms policy, identity, handoff.

One turn = parse the text → run the policy on the conversation's ``Snapshot`` (rules from
``rules.yml`` for simple intents, Python flows with slot filling for business) → return a
``TurnResult``: replies rendered from ``domain.yml``, the new state, what to record. The engine
runs no SQL; the pipeline loads the snapshot and commits the result through the tracker store
(``bot.dialogue.tracker_store``).

Side effects on the core (work orders, appointments, bindings) are keyed on the inbound
message id, and happen before the turn's result is committed: if the core is unavailable the
``CoreUnavailable`` error propagates (nothing persisted), the pipeline tells the customer the
system is busy and retries the same message later, and the keyed call cannot be doubled.
Flows are re-run from the top each turn (like Rasa forms with dynamic required slots): every
``require`` either returns a filled slot or asks for it and stops the turn.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from backend_client import Conflict, CoreClient, NotFound, ValidationFailed
from backend_client.models import Account
from bot.dialogue.domain import Domain
from bot.dialogue.tracker_store import TrackerStore
from bot.dialogue.turn import Snapshot, Turn, TurnResult
from bot.dialogue.verification import LOCK_MINUTES, MAX_VERIFY_FAILURES, aware as _aware
from bot.langs import detect_language
from bot.logs import mask_account, mask_phone, mask_text
from channels.base import Button, Message, Reply, proven_phone
from common.clock import utcnow
from common.metrics import FALLBACKS, NLU_SECONDS
from common.money import money_text

log = logging.getLogger("powerbot.dialogue")

# intents a fallback is labelled with in the metrics; any other: "no_action" (an intent
# with nothing to say)
_FALLBACK_INTENTS = frozenset({"nlu_fallback", "out_of_scope", "inform"})

FALLBACK_CONFIDENCE = 0.5
REFERENCE_TTL = 60.0  # seconds a tariff table / hall list of the core is reused
CHINA_TZ = timezone(timedelta(hours=8))

ACCOUNT_RE = re.compile(r"(?<![\dA-Za-z])(\d{10,13})(?!\d)")
MOBILE_RE = re.compile(r"(?<!\d)(?:\+?86)?(1[3-9]\d{9})(?!\d)")
# The core names its tariffs in Chinese; English-speaking customers get these names.
LAST4_RE = re.compile(r"^\D{0,12}(\d{4})\D{0,6}$")
WO_RE = re.compile(r"\b(WO\d{12})\b", re.I)
KWH_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:度|千瓦时|kwh|kw·h|units?)", re.I)
CHOICE_RE = re.compile(r"^\D{0,6}(\d{1,2})\D{0,4}$")
CANCEL_RE = re.compile(r"^\s*(算了|取消|不办了|不用了|不要了|退出|cancel|stop|never ?mind|forget it)\s*[。.!！]?\s*$", re.I)
HAZARD_RE = re.compile(
    r"电线断|断线|掉下来|断落|冒火|着火|起火|火花|打火|冒烟|烧焦|焦糊|糊味|触电|电到人|漏电|爆炸|"
    r"burning smell|spark|fire|smoke|electrocut|fallen (?:power )?(?:wire|line)|live wire|wire (?:is )?down",
    re.I,
)
ANGRY_RE = re.compile(
    r"[!！]{2,}|太差|垃圾|气死|什么破|无能|不负责|第[二三四五]次|忍无可忍|受够|骂|媒体|曝光|12345|"
    r"terrible|worst|ridiculous|unacceptable|furious|angry|disgusting|useless",
    re.I,
)
ANON_RE = re.compile(r"匿名|不留|不方便|anonymous|no contact", re.I)

BUSINESS_INTENTS = {
    "bill_query", "usage_query", "pay_bill", "payment_issue", "report_outage", "outage_schedule",
    "repair_request", "complaint", "feedback", "report_violation", "work_order_status",
    "new_connection", "solar_connection", "ev_charging", "account_change", "tariff_consult",
    "invoice_request", "book_appointment", "subscribe_notifications", "unsubscribe_notifications",
    "bind_account",
}
# slots that belong to one request; cleared when a new business request starts
TURN_SLOTS = ("month", "date", "kwh", "work_order_id", "description", "topic", "hall_id", "slot_id",
              "contact_phone", "contact_name", "location", "district", "anonymous", "payment_ref")

WO_TYPE = {
    "new_connection": "new_connection", "solar_connection": "solar", "ev_charging": "ev_charging",
    "account_change": "account_change",
}
TOPIC_WORDS = [
    ("outage", re.compile(r"停电|停送电|outage", re.I)),
    ("bill", re.compile(r"账单|电费|bill", re.I)),
    ("work_order", re.compile(r"工单|进度|work ?order|progress", re.I)),
    ("payment", re.compile(r"缴费|到账|payment", re.I)),
]
# Labels and pieces of sentences the flows assemble are responses ``utter_fragment_*`` of
# training_data/domain.yml (``DialogueEngine.phrase``): topic names, work-order statuses...
TOPICS = ("outage", "bill", "work_order", "payment")
WO_STATUSES = ("created", "dispatched", "in_progress", "resolved", "closed")
BILL_STATUSES = ("paid", "partial", "unpaid")
PAYMENT_STATUSES = ("paid", "pending")


def kwh_fmt(v: Decimal | float | int | None) -> str:
    if v is None:
        return "-"
    d = Decimal(str(v))
    return f"{d.normalize():f}" if d == d.to_integral() else f"{d.quantize(Decimal('0.01'))}"


def local(dt: datetime | None) -> str:
    if dt is None:
        return "-"
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")


class Stop(Exception):
    """A flow asked the customer something (or finished early): end the turn here."""


class DialogueEngine:
    """Decides one message of one conversation; called by the pipeline, strictly in order
    (the pipeline's ``TurnHandler``)."""

    probe = None  # nothing of its own to read with the snapshot

    async def after_commit(self, result: TurnResult, committed: Any) -> list[Reply]:
        return []

    def __init__(
        self,
        *,
        store: TrackerStore | None = None,
        sessionmaker: Any = None,
        core: CoreClient,
        interpreter: Any,
        settings: Any = None,
        payments: Any = None,
        domain: Domain | None = None,
        sender_proofs: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.store = store if store is not None else TrackerStore(sessionmaker)
        # channel name -> what its platform proves about a sender (``Channel.proves``)
        self.sender_proofs: Mapping[str, frozenset[str]] = sender_proofs or {}
        self.core = core
        self.interpreter = interpreter
        self.settings = settings
        self.payments = payments
        self.domain = domain or Domain()
        self._reference: dict[tuple[str, Any], tuple[float, Any]] = {}
        self.flows: dict[str, Callable[[Turn], Awaitable[None]]] = {
            name: getattr(self, f"flow_{name}") for name in BUSINESS_INTENTS if hasattr(self, f"flow_{name}")
        }

    # ================================================================== entry point
    async def decide(self, message: Message, snap: Snapshot) -> TurnResult:
        """Decide one turn from the conversation as the store found it (``snap``): the replies,
        the new state, the events and what to write — nothing is read or written here but the
        core's data the flows ask for. The pipeline commits the result (``TrackerStore.plans``)."""
        if snap.replay is not None:
            return TurnResult(message=message, replies=list(snap.replay), kind="replay", snapshot=snap)
        text = (message.text or "").strip()
        parse = self._parse(text)
        lang = parse.get("language") or detect_language(text)
        if lang not in ("zh", "en"):
            lang = "zh"
        state = snap.state
        if not _has_language(text):
            lang = (state.get("slots") or {}).get("language") or lang  # digits/buttons keep the language
        if snap.handoff is not None:
            return self._handoff_turn(message, parse, lang, snap)
        new_identity: tuple[list[Account], str] | None = None
        if not snap.exists or snap.customer_id is None:
            new_identity = await self._known_accounts(message)
        intent = parse.get("intent", {}).get("name") or "nlu_fallback"
        if message.kind == "location" and intent not in ("request_human", "repair_request"):
            # A shared location (platform-neutral kind) asks "is the power out around here?":
            # the outage flow checks known outages at that address before anything else.
            intent = "report_outage"
        ents: dict[str, Any] = {}
        for e in parse.get("entities") or []:
            ents.setdefault(e.get("entity"), e.get("value"))
        turn = Turn(
            message=message, parse=parse, lang=lang, intent=intent,
            confidence=float(parse.get("intent", {}).get("confidence") or 0.0), entities=ents,
            state=state, conversation_id=message.conversation_id, customer_id=snap.customer_id,
            authorized=set(snap.authorized),
        )
        if new_identity is not None:
            for acc in new_identity[0]:
                turn.authorized.add(acc.account_number)
                turn.accounts_cache[acc.account_number] = acc
        turn.set_slot("language", lang)
        try:
            await self.policy(turn)
        except Stop:
            pass
        if log.isEnabledFor(logging.INFO):  # masking costs regex passes: only for a line that is written
            log.info(
                "turn conv=%s intent=%s conf=%.2f replies=%d text=%s",
                mask_text(message.conversation_id), turn.intent, turn.confidence, len(turn.replies),
                _log_text(text[:80]),
            )
        return TurnResult(message=message, replies=turn.replies, kind="turn", turn=turn, snapshot=snap,
                          new_identity=new_identity, parse=parse)

    async def handle(self, message: Message) -> list[Reply]:
        """One turn on its own — retrieve, decide, save — for a caller without the pipeline
        (the replies are returned, not queued)."""
        snap = await self.store.retrieve(message)
        result = await self.decide(message, snap)
        await self.store.save(result)
        return result.replies

    def _parse(self, text: str) -> dict[str, Any]:
        m = re.match(r"^/([a-z_]+)(\{.*\})?$", text, re.S)
        if m and (m.group(1) in self.domain.intents or m.group(1) in BUSINESS_INTENTS):
            ents = _payload_entities(m.group(2)) if m.group(2) else []
            return {"text": text, "intent": {"name": m.group(1), "confidence": 1.0}, "entities": ents,
                    "language": None}
        if not text:
            return {"text": "", "intent": {"name": "nlu_fallback", "confidence": 0.0}, "entities": []}
        # relative dates ("明天", "上个月") are the customer's: China's date, not the server's
        with NLU_SECONDS.time():
            return self.interpreter.parse(text, datetime.now(CHINA_TZ).date())

    # ================================================================== identity
    async def _known_accounts(self, message: Message) -> tuple[list[Account], str]:
        """Accounts the core already links to this identity: a binding, or the registered phone
        of a sender whose channel proves the number (``Channel.proves``)."""
        found: dict[str, Account] = {}
        how = "bound"
        for acc in await self.core.find_accounts_by_binding(message.channel, message.sender_id):
            found[acc.account_number] = acc
        phone = proven_phone(message, self.sender_proofs)
        if phone:
            for acc in await self.core.find_accounts_by_phone(phone):
                found.setdefault(acc.account_number, acc)
            how = "phone"
        return list(found.values()), how

    async def reference(self, kind: str, key: Any, fetch: Callable[..., Awaitable[Any]]) -> Any:
        """Reference data of the core (tariff tables, the list of service halls) kept for
        ``REFERENCE_TTL`` seconds: the same for every customer and changed by a tariff decision
        or a hall opening, not per message. Availability (slots), bills, accounts and work
        orders are never cached."""
        now = time.monotonic()
        hit = self._reference.get((kind, key))
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await (fetch(key) if key is not None else fetch())
        if len(self._reference) > 1000:
            self._reference.clear()
        self._reference[(kind, key)] = (now + REFERENCE_TTL, value)
        return value

    async def account(self, turn: Turn, number: str) -> Account:
        if number not in turn.accounts_cache:
            turn.accounts_cache[number] = await self.core.get_account(number)
        return turn.accounts_cache[number]

    # ================================================================== handoff turn
    def _handoff_turn(self, message: Message, parse: dict, lang: str, snap: Snapshot) -> TurnResult:
        """An agent holds the conversation: the bot records the message and stays quiet, except
        for one "please wait" to the first message since the handoff."""
        h = snap.handoff
        replies: list[Reply] = []
        ack = None
        if not h.acked:
            ack = h.id
            r = self.domain.render("utter_handoff_waiting", lang=lang, channel=message.channel, seed=message.message_id)
            replies.append(Reply(channel=message.channel, recipient_id=message.sender_id, text=r.text))
        return TurnResult(message=message, replies=replies, kind="handoff", snapshot=snap, parse=parse, ack_handoff=ack)

    # ================================================================== output helpers
    def say(self, turn: Turn, name: str, /, *, kind: str = "text", metadata: dict | None = None,
            urgent: bool = False, extra_buttons: list[tuple[str, str]] | None = None, **values: Any) -> None:
        r = self.domain.render(name, lang=turn.lang, channel=turn.message.channel,
                               seed=f"{turn.message.message_id}:{len(turn.replies)}", **values)
        buttons = [Button(title=t, payload=p) for t, p in (r.buttons + (extra_buttons or []))]
        turn.replies.append(Reply(channel=turn.message.channel, recipient_id=turn.message.sender_id, text=r.text,
                                  buttons=buttons, kind=kind, metadata=metadata or {}, urgent=urgent))
        turn.actions.append((name, {}))

    def phrase(self, turn: Turn, name: str, /, **values: Any) -> str:
        """A piece of a sentence (``utter_fragment_*`` of domain.yml) in the turn's language."""
        return self.domain.render(name, lang=turn.lang, channel=turn.message.channel, **values).text

    def label(self, turn: Turn, prefix: str, key: str | None, known: tuple[str, ...] | frozenset[str]) -> str:
        """The label ``{prefix}_{key}`` of a known key; an unknown key as it is."""
        return self.phrase(turn, f"{prefix}_{key}") if key in known else (key or "")

    # ================================================================== policy
    async def policy(self, turn: Turn) -> None:
        text = (turn.message.text or "").strip()
        st = turn.state
        form = st.get("form")
        intent = turn.intent

        # 0. understand special phrasings the classifier is weak at
        if intent in ("bill_query", "usage_query", "nlu_fallback") and KWH_RE.search(text) and re.search(
            r"多少钱|费用|电费|cost|price|how much", text, re.I) and not ACCOUNT_RE.search(text):
            intent = turn.intent = "tariff_consult"
        if CANCEL_RE.match(text):
            intent = turn.intent = "cancel"

        # 1. safety first: hazards preempt everything
        if HAZARD_RE.search(text) and intent not in ("affirm", "deny", "cancel"):
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
            if shown and re.search(r"上个?月|前一个?月|last month|previous month|month before", turn.message.text or "", re.I):
                y, m = map(int, shown.split("-"))
                month = f"{y - (m == 1)}-{(m - 2) % 12 + 1:02d}"  # the month before the one just shown
            turn.set_slot("month", month)
            st["fallbacks"] = 0
            await self.run_flow(turn, last, resume=True)
            return

        # 5. a bare piece of information with no form: continue the last request with it
        if intent in ("inform", "nlu_fallback") or turn.confidence < FALLBACK_CONFIDENCE:
            if (turn.entities.get("account_number") or ACCOUNT_RE.search(text)) and last in BUSINESS_INTENTS:
                self._take_entities(turn)
                await self.run_flow(turn, last, resume=True)
                return
            if turn.entities.get("work_order_id") or WO_RE.search(text):
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
        turn.state["form"] = None
        turn.handoff = (reason, priority, f"{turn.intent}: {mask_text(turn.message.text or '')[:200]}")
        turn.actions.append(("action_handoff", {"reason": reason, "priority": priority}))
        self.say(turn, "utter_handoff")

    def _clear_form(self, turn: Turn) -> None:
        turn.state["form"] = None
        turn.slots.pop("_confirmed", None)

    def _take_entities(self, turn: Turn) -> None:
        text = turn.message.text or ""
        e = turn.entities
        acc = e.get("account_number") or (m.group(1) if (m := ACCOUNT_RE.search(text)) and not MOBILE_RE.fullmatch(m.group(1)) else None)
        if acc:
            turn.set_slot("account_number", str(acc))
        for name in ("month", "date", "district", "work_order_id"):
            if e.get(name):
                turn.set_slot(name, e[name])
        if not e.get("work_order_id") and (m := WO_RE.search(text)):
            turn.set_slot("work_order_id", m.group(1).upper())
        if e.get("phone_number"):
            turn.set_slot("contact_phone", _mobile(str(e["phone_number"])) or e["phone_number"])
        if e.get("address"):
            turn.set_slot("address", e["address"])
        if (m := KWH_RE.search(text)):
            turn.set_slot("kwh", m.group(1))

    async def run_flow(self, turn: Turn, name: str, *, resume: bool = False) -> None:
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

    # ================================================================== form machinery
    def ask(self, turn: Turn, flow: str, slot: str, response: str, /, **values: Any) -> None:
        turn.state["form"] = {"name": flow, "slot": slot}
        self.say(turn, response, **values)
        raise Stop

    def finish(self, turn: Turn) -> None:
        turn.state["form"] = None
        turn.slots.pop("_confirmed", None)

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
            wid = e.get("work_order_id") or ((m.group(1).upper()) if (m := WO_RE.search(text)) else None)
            if wid:  # "which account?" answered with the work order number itself
                turn.set_slot("work_order_id", str(wid).upper())
                return True
        if slot == "account_number" and form.get("options"):
            chosen = _chosen_account(text, form["options"])
            if chosen:
                turn.set_slot("account_number", chosen)
                return True
        if slot in ("account_number", "location"):
            acc = e.get("account_number")
            if not acc:
                m = ACCOUNT_RE.search(text)
                acc = m.group(1) if m and not MOBILE_RE.fullmatch(m.group(1)) else None
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
            full = _mobile(str(e.get("phone_number") or "")) or _mobile(text)
            if full:  # people type the whole number; it is checked whole, not just its tail
                turn.slots["_last4"] = full
                return True
            m = LAST4_RE.match(text)
            if not m:
                return False
            turn.slots["_last4"] = m.group(1)
            return True
        if slot == "contact_phone":
            if ANON_RE.search(text) and form.get("name") == "report_violation":
                turn.set_slot("anonymous", True)
                turn.set_slot("contact_phone", "")
                return True
            p = _mobile(str(e.get("phone_number") or "")) or _mobile(text)
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
            if e.get("date"):
                turn.set_slot("date", e["date"])
                return True
            m = re.search(r"(\d{4}-\d{2}-\d{2})", text)
            if m:
                turn.set_slot("date", m.group(1))
                return True
            return False
        if slot == "work_order_id":
            wid = e.get("work_order_id") or ((m.group(1).upper()) if (m := WO_RE.search(text)) else None)
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
            if 1 < len(text) <= 30 and not re.search(r"\d", text):
                turn.set_slot("contact_name", re.sub(r"^(我叫|我是|姓名[:：]?|my name is|i am)\s*", "", text, flags=re.I))
                return True
            return False
        if slot in ("hall_id", "slot_id"):
            options = form.get("options") or []
            m = CHOICE_RE.match(text)
            if m:
                k = int(m.group(1))
                if 1 <= k <= len(options):
                    turn.set_slot(slot, options[k - 1])
                    return True
                if k in options:
                    turn.set_slot(slot, k)
                    return True
            pm = re.match(rf"^/choose\{{\"{slot}\":\s*(\d+)\}}$", text)
            if pm and int(pm.group(1)) in options:
                turn.set_slot(slot, int(pm.group(1)))
                return True
            return False
        if slot == "topic":
            for topic, rx in TOPIC_WORDS:
                if rx.search(text):
                    turn.set_slot("topic", topic)
                    return True
            if turn.intent == "affirm":
                turn.set_slot("topic", "all")
                return True
            return False
        if slot == "kwh":
            m = KWH_RE.search(text) or re.search(r"(\d+(?:\.\d+)?)", text)
            if m:
                turn.set_slot("kwh", m.group(1))
                return True
            return False
        return False

    async def require_account(self, turn: Turn, flow: str, *, verify: bool = True) -> Account:
        """The account this request is about, shown only to a bound or verified identity."""
        number = turn.slots.get("account_number")
        if not number:
            if len(turn.authorized) == 1:
                number = next(iter(turn.authorized))
                turn.set_slot("account_number", number)
            elif turn.authorized:
                # the buttons name the accounts masked and answer with their position: a full
                # account number never leaves in a button (the list stays in the tracker)
                opts = sorted(turn.authorized)
                buttons = [(mask_account(n), f'/choose{{"account_choice": {k}}}') for k, n in enumerate(opts, 1)]
                turn.state["form"] = {"name": flow, "slot": "account_number", "options": opts}
                self.say(turn, "utter_ask_account_choice", extra_buttons=buttons)
                raise Stop
            else:
                self.ask(turn, flow, "account_number", "utter_ask_account_number")
        try:
            acc = await self.account(turn, number)
        except NotFound:
            turn.slots.pop("account_number", None)
            self.say(turn, "utter_account_not_found", account=mask_account(number))
            self.ask(turn, flow, "account_number", "utter_ask_account_number")
            raise
        if not verify or number in turn.authorized:
            return acc
        await self.verify(turn, flow, acc)
        return acc

    async def verify(self, turn: Turn, flow: str, acc: Account) -> None:
        identity = turn.conversation_id  # the channel identity ("channel:sender") asking
        failed_before, locked_until = await self.store.lock_state(acc.account_number, identity)
        if locked_until is not None:
            self._clear_form(turn)
            turn.slots.pop("account_number", None)
            self.say(turn, "utter_verify_locked", minutes=LOCK_MINUTES)
            raise Stop
        given = turn.slots.pop("_last4", None)
        if given is None:
            self.ask(turn, flow, "last4", "utter_ask_last4", account=mask_account(acc.account_number))
        if given is not None and (given == acc.phone[-4:] if len(given) == 4 else given == acc.phone):
            turn.verify_result = (acc.account_number, True)
            turn.authorized.add(acc.account_number)
            turn.new_accounts.append((acc.account_number, "verified"))
            self.say(turn, "utter_verified")
            return
        failures = failed_before + 1
        turn.verify_result = (acc.account_number, False)
        if failures >= MAX_VERIFY_FAILURES:
            self._clear_form(turn)
            turn.slots.pop("account_number", None)
            self.say(turn, "utter_verify_locked", minutes=LOCK_MINUTES)
            raise Stop
        self.ask(turn, flow, "last4", "utter_verify_failed", left=MAX_VERIFY_FAILURES - failures)

    def require(self, turn: Turn, flow: str, slot: str, response: str, /, **values: Any) -> Any:
        v = turn.slots.get(slot)
        if v is None or v == "" and slot != "contact_phone":
            self.ask(turn, flow, slot, response, **values)
        return v

    def confirm(self, turn: Turn, flow: str, response: str, /, **values: Any) -> None:
        if turn.slots.get("_confirmed") == flow:
            turn.slots.pop("_confirmed", None)
            turn.state["form"] = None
            return
        self.ask(turn, flow, "confirm", response, **values)

    async def contact_phone(self, turn: Turn, flow: str) -> str:
        p = turn.slots.get("contact_phone")
        if p:
            return p
        number = turn.slots.get("account_number")
        if number and number in turn.authorized:
            acc = await self.account(turn, number)
            if _mobile(acc.phone):
                return _mobile(acc.phone)  # type: ignore[return-value]
        proven = proven_phone(turn.message, self.sender_proofs)
        if proven:
            return proven
        return self.require(turn, flow, "contact_phone", "utter_ask_contact_phone")

    # ================================================================== emergencies
    async def emergency(self, turn: Turn) -> None:
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
            phone = _mobile(acc.phone)
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

    # ================================================================== flows
    async def flow_bill_query(self, turn: Turn) -> None:
        acc = await self.require_account(turn, "bill_query")
        month = turn.slots.get("month")
        bills = await self.core.list_bills(acc.account_number, month=month)
        if not bills:
            self.say(turn, "utter_no_bill", month=month or "")
            return
        b = bills[0]
        arrears = await self.core.get_arrears(acc.account_number)
        turn.set_slot("month", b.month)
        self.say(turn, "utter_bill", account=mask_account(acc.account_number), month=b.month, amount=money_text(b.amount),
                 kwh=kwh_fmt(b.kwh), paid=money_text(b.paid_amount), balance=money_text(b.balance), due=b.due_date.isoformat(),
                 status=self.label(turn, "utter_fragment_bill_status", b.status, BILL_STATUSES),
                 owed=money_text(arrears.amount_owed))
        if arrears.amount_owed > 0:
            turn.state["offer"] = "pay"

    async def flow_usage_query(self, turn: Turn) -> None:
        acc = await self.require_account(turn, "usage_query")
        month = turn.slots.get("month")
        bills = await self.core.list_bills(acc.account_number, month=month)
        if not bills:
            self.say(turn, "utter_no_bill", month=month or "")
            return
        b = bills[0]
        turn.set_slot("month", b.month)
        extra = ""
        if b.peak_kwh is not None and b.valley_kwh is not None:
            extra = self.phrase(turn, "utter_fragment_usage_split", peak=kwh_fmt(b.peak_kwh), valley=kwh_fmt(b.valley_kwh))
        self.say(turn, "utter_usage", account=mask_account(acc.account_number), month=b.month, kwh=kwh_fmt(b.kwh),
                 split=extra, amount=money_text(b.amount))

    async def flow_pay_bill(self, turn: Turn) -> None:
        acc = await self.require_account(turn, "pay_bill")
        arrears = await self.core.get_arrears(acc.account_number)
        if arrears.amount_owed <= 0:
            self.finish(turn)
            self.say(turn, "utter_no_arrears", account=mask_account(acc.account_number))
            return
        amount = money_text(arrears.amount_owed)
        if self.payments is None:
            self.say(turn, "utter_how_to_pay", account=mask_account(acc.account_number), amount=amount)
            return
        self.confirm(turn, "pay_bill", "utter_confirm_payment", account=mask_account(acc.account_number), amount=amount)
        link = await self.payments.create_payment_link(
            account_number=acc.account_number, amount=amount, channel=turn.message.channel,
            recipient_id=turn.message.sender_id,
            subject=self.phrase(turn, "utter_payment_subject", account=mask_account(acc.account_number)),
        )
        turn.actions.append(("action_payment_link", {"out_trade_no": link.out_trade_no, "amount": link.amount}))
        self.say(turn, "utter_payment_link", kind="payment_link",
                 metadata={"pay_url": link.pay_url, "out_trade_no": link.out_trade_no, "amount": link.amount,
                           **({"qr_code": link.qr_code} if link.qr_code else {})},
                 amount=link.amount, pay_url=link.pay_url)

    async def flow_payment_issue(self, turn: Turn) -> None:
        acc = await self.require_account(turn, "payment_issue")
        if turn.slots.get("_confirmed") != "payment_issue":
            payments = await self.core.list_payments(acc.account_number)
            arrears = await self.core.get_arrears(acc.account_number)
            if payments:
                lines = [self.phrase(turn, "utter_fragment_payment_line",
                                     date=p.created_at.astimezone(CHINA_TZ).strftime('%m-%d') if p.created_at else '-',
                                     amount=money_text(p.amount),
                                     status=self.label(turn, "utter_fragment_payment_status", p.status, PAYMENT_STATUSES))
                         for p in payments[:5]]
                self.say(turn, "utter_payments_found", payments="\n".join(lines), owed=money_text(arrears.amount_owed))
            else:
                self.say(turn, "utter_no_payments", owed=money_text(arrears.amount_owed))
        self.confirm(turn, "payment_issue", "utter_confirm_payment_order")
        phone = await self.contact_phone(turn, "payment_issue")
        wo = await self.core.create_work_order(
            "complaint", self.phrase(turn, "utter_fragment_payment_check") + str(turn.slots.get("_text") or "")[:300],
            account_number=acc.account_number, priority="normal", channel=turn.message.channel,
            contact_phone=phone, details={"category": "payment_issue"}, idempotency_key=f"{turn.key}:wo")
        self._order_done(turn, wo, "utter_payment_order_created")

    def _order_done(self, turn: Turn, wo: Any, response: str, **values: Any) -> None:
        turn.actions.append(("action_create_work_order", {"id": wo.id, "type": wo.type, "priority": wo.priority}))
        turn.set_slot("work_order_id", wo.id)
        self.finish(turn)
        self.say(turn, response, work_order_id=wo.id, sla=local(wo.sla_due_at), **values)

    async def _location(self, turn: Turn, flow: str) -> tuple[str | None, str | None, str | None]:
        """(account_number, district, address) for outage/repair flows. The account's registered
        address is used only for a bound or verified identity: for anyone else an account
        number proves nothing, so the customer is asked where the fault is (and the order is
        not linked to an account they have not proven)."""
        number = turn.slots.get("account_number")
        unproven = bool(number) and number not in turn.authorized
        if unproven:
            number = None
        if not number and len(turn.authorized) == 1:
            number = next(iter(turn.authorized))
        if number:
            try:
                acc = await self.account(turn, number)
                return acc.account_number, acc.district, turn.slots.get("address") or acc.address
            except NotFound:
                turn.slots.pop("account_number", None)
        address = turn.slots.get("address")
        district = turn.slots.get("district") or _district(address or "")
        if not address and not district:
            self.ask(turn, flow, "location", "utter_ask_location_address" if unproven else "utter_ask_location")
        return None, district, address

    async def flow_report_outage(self, turn: Turn) -> None:
        number, district, address = await self._location(turn, "report_outage")
        if turn.slots.get("_confirmed") != "report_outage":
            now = utcnow()
            known = []
            for o in await self.core.list_outages(district=district, active_at=now) if district else []:
                if o.status in ("active", "scheduled") and (not o.streets or not address or any(s in address for s in o.streets)):
                    known.append(o)
            if known:
                o = known[0]
                self.finish(turn)
                turn.state["offer"] = "subscribe_outage"
                turn.actions.append(("action_known_outage", {"outage_id": o.id}))
                self.say(turn, "utter_known_outage", scope=o.scope, cause=o.cause or self.phrase(turn, "utter_fragment_fault_cause"),
                         end=local(o.estimated_end_at))
                return
        phone = await self.contact_phone(turn, "report_outage")
        self.confirm(turn, "report_outage", "utter_confirm_outage_order", address=address or "-")
        wo = await self.core.create_work_order(
            "outage", str(turn.slots.get("_text") or "")[:500] or "停电", account_number=number, priority="high",
            channel=turn.message.channel, contact_phone=phone, address=address, details={"district": district},
            idempotency_key=f"{turn.key}:wo")
        self._order_done(turn, wo, "utter_outage_order_created")

    async def flow_outage_schedule(self, turn: Turn) -> None:
        district = turn.slots.get("district") or _district(turn.slots.get("address") or "")
        if not district:
            number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
            number = number or (next(iter(turn.authorized)) if len(turn.authorized) == 1 else None)
            if number:
                try:
                    district = (await self.account(turn, number)).district
                except NotFound:
                    pass
        if not district:
            district = self.require(turn, "outage_schedule", "district", "utter_ask_district")
            district = _district(district) or district
        day = turn.slots.get("date")
        kwargs: dict[str, Any] = {"district": district, "kind": "planned"}
        if day:
            d0 = datetime.fromisoformat(day).replace(tzinfo=CHINA_TZ)
            kwargs.update(starts_after=d0 - timedelta(days=1), starts_before=d0 + timedelta(days=1))
        else:
            kwargs.update(starts_after=utcnow() - timedelta(days=1))
        outages = [o for o in await self.core.list_outages(**kwargs) if o.status in ("scheduled", "active")]
        if day:
            outages = [o for o in outages if _overlaps_day(o, day)]
        self.finish(turn)
        if not outages:
            self.say(turn, "utter_no_planned_outage", district=district, day=day or self.phrase(turn, "utter_fragment_coming_days"))
            return
        lines = "\n".join(
            self.phrase(turn, "utter_fragment_outage_line", start=local(o.start_at), end=local(o.estimated_end_at), scope=o.scope)
            + (self.phrase(turn, "utter_fragment_outage_cause", cause=o.cause) if o.cause else "")
            for o in outages[:5])
        turn.state["offer"] = "subscribe_outage"
        self.say(turn, "utter_planned_outages", district=district, outages=lines)

    async def flow_repair_request(self, turn: Turn) -> None:
        number, district, address = await self._location(turn, "repair_request")
        phone = await self.contact_phone(turn, "repair_request")
        self.confirm(turn, "repair_request", "utter_confirm_repair", address=address or "-")
        wo = await self.core.create_work_order(
            "repair", str(turn.slots.get("_text") or "")[:500] or "报修", account_number=number, priority="normal",
            channel=turn.message.channel, contact_phone=phone, address=address, details={"district": district},
            idempotency_key=f"{turn.key}:wo")
        self._order_done(turn, wo, "utter_repair_created")

    async def flow_complaint(self, turn: Turn) -> None:
        text = str(turn.slots.get("_text") or "")
        if ANGRY_RE.search(text) and turn.slots.get("_confirmed") != "complaint":
            number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
            if not number and len(turn.authorized) == 1:
                number = next(iter(turn.authorized))
            wo = await self.core.create_work_order(
                "complaint", text[:500], account_number=number, priority="high", channel=turn.message.channel,
                details={"angry": True}, idempotency_key=f"{turn.key}:wo")
            turn.actions.append(("action_create_work_order", {"id": wo.id, "type": "complaint", "priority": "high"}))
            self.say(turn, "utter_complaint_sorry", work_order_id=wo.id)
            self.finish(turn)
            self.hand_off(turn, "complaint_angry", "high")
            return
        await self._simple_order(turn, "complaint", "complaint", "utter_ask_complaint", "utter_complaint_created", priority="normal")

    async def flow_feedback(self, turn: Turn) -> None:
        await self._simple_order(turn, "feedback", "feedback", "utter_ask_feedback", "utter_feedback_created", priority="low")

    async def _simple_order(self, turn: Turn, flow: str, wo_type: str, ask: str, done: str, *, priority: str) -> None:
        if not turn.slots.get("description"):
            text = str(turn.slots.get("_text") or "")
            if len(re.sub(r"\W", "", text)) >= 8:
                turn.set_slot("description", text)
        desc = self.require(turn, flow, "description", ask)
        phone = await self.contact_phone(turn, flow)
        number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
        if not number and len(turn.authorized) == 1:
            number = next(iter(turn.authorized))
        self.confirm(turn, flow, "utter_confirm_order", description=desc[:60])
        wo = await self.core.create_work_order(
            wo_type, desc[:500], account_number=number, priority=priority, channel=turn.message.channel,
            contact_phone=phone, idempotency_key=f"{turn.key}:wo")
        self._order_done(turn, wo, done)

    async def flow_report_violation(self, turn: Turn) -> None:
        if not turn.slots.get("description"):
            text = str(turn.slots.get("_text") or "")
            if len(re.sub(r"\W", "", text)) >= 10:
                turn.set_slot("description", text)
        desc = self.require(turn, "report_violation", "description", "utter_ask_violation")
        address = self.require(turn, "report_violation", "address", "utter_ask_violation_address")
        if "contact_phone" not in turn.slots:
            self.ask(turn, "report_violation", "contact_phone", "utter_ask_violation_contact")
        phone = turn.slots.get("contact_phone") or None
        self.confirm(turn, "report_violation", "utter_confirm_order", description=desc[:60])
        wo = await self.core.create_work_order(
            "violation", desc[:500], priority="normal", channel=None if turn.slots.get("anonymous") else turn.message.channel,
            contact_phone=phone, address=address, details={"anonymous": bool(turn.slots.get("anonymous"))},
            idempotency_key=f"{turn.key}:wo")
        self._order_done(turn, wo, "utter_violation_created")

    async def flow_work_order_status(self, turn: Turn) -> None:
        wid = turn.slots.get("work_order_id")
        if wid:
            try:
                wo = await self.core.get_work_order(wid)
            except NotFound:
                turn.slots.pop("work_order_id", None)
                self.finish(turn)
                self.say(turn, "utter_work_order_not_found", work_order_id=wid)
                return
            if wo.account_number and wo.account_number not in turn.authorized:
                turn.set_slot("account_number", wo.account_number)
                await self.verify(turn, "work_order_status", await self.account(turn, wo.account_number))
        else:
            acc = await self.require_account(turn, "work_order_status")
            orders = await self.core.list_work_orders(acc.account_number, limit=1)
            if not orders:
                self.finish(turn)
                self.say(turn, "utter_no_work_orders")
                return
            wo = orders[0]
        self.finish(turn)
        self.say(turn, "utter_work_order_status", work_order_id=wo.id,
                 status=self.label(turn, "utter_fragment_work_order_status", wo.status, WO_STATUSES), created=local(wo.created_at), sla=local(wo.sla_due_at))

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
        self._order_done(turn, wo, "utter_application_created")

    async def flow_new_connection(self, turn: Turn) -> None:
        await self._application(turn, "new_connection")

    async def flow_solar_connection(self, turn: Turn) -> None:
        await self._application(turn, "solar_connection")

    async def flow_ev_charging(self, turn: Turn) -> None:
        await self._application(turn, "ev_charging")

    async def flow_account_change(self, turn: Turn) -> None:
        await self._application(turn, "account_change", needs_account=True)

    async def flow_tariff_consult(self, turn: Turn) -> None:
        text = str(turn.slots.get("_text") or turn.message.text or "")
        category = "commercial" if re.search(r"商业|工商|一般工商|commercial|business|shop", text, re.I) else "residential"
        number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
        if number and not re.search(r"商业|居民|commercial|residential", text, re.I):
            category = (await self.account(turn, number)).category
        tariff = await self.reference("tariff", category, self.core.get_tariff)
        name = (self.phrase(turn, f"utter_fragment_tariff_name_{category}", name=tariff.name)
                if category in ("residential", "commercial") else tariff.name)
        self.finish(turn)
        kwh = turn.slots.get("kwh")
        if kwh:
            q = await self.core.quote(category, kwh)
            lines = "\n".join(f"{l.label}: {kwh_fmt(l.kwh)} × {l.price} = {money_text(l.amount)}" for l in q.lines)
            self.say(turn, "utter_quote", kwh=kwh_fmt(q.kwh), amount=money_text(q.amount), lines=lines, tariff=name)
            return
        if tariff.tiers:
            rows = "\n".join(
                (self.phrase(turn, "utter_fragment_tier_range", tier=t.tier, start=kwh_fmt(t.from_kwh), end=kwh_fmt(t.to_kwh))
                 if t.to_kwh is not None else self.phrase(turn, "utter_fragment_tier_over", tier=t.tier, start=kwh_fmt(t.from_kwh)))
                + f": {t.price}"
                for t in tariff.tiers)
        else:
            rows = f"{tariff.flat_price}"
        tou = ""
        if tariff.peak_price is not None and tariff.valley_price is not None:
            tou = self.phrase(turn, "utter_fragment_time_of_use", peak_hours=tariff.peak_hours, peak_price=tariff.peak_price,
                              valley_hours=tariff.valley_hours, valley_price=tariff.valley_price)
        self.say(turn, "utter_tariff", tariff=name, rows=rows, tou=tou)

    async def flow_invoice_request(self, turn: Turn) -> None:
        acc = await self.require_account(turn, "invoice_request")
        paid = [p for p in await self.core.list_payments(acc.account_number) if p.status == "paid"]
        if not paid:
            self.finish(turn)
            self.say(turn, "utter_no_paid_payments")
            return
        p = paid[0]
        self.confirm(turn, "invoice_request", "utter_confirm_invoice", amount=money_text(p.amount), out_trade_no=p.out_trade_no)
        phone = await self.contact_phone(turn, "invoice_request")
        wo = await self.core.create_work_order(
            "invoice", f"e-invoice for {p.out_trade_no}", account_number=acc.account_number, priority="low",
            channel=turn.message.channel, contact_phone=phone, details={"out_trade_no": p.out_trade_no},
            idempotency_key=f"{turn.key}:wo")
        self._order_done(turn, wo, "utter_invoice_created")

    async def flow_book_appointment(self, turn: Turn) -> None:
        flow = "book_appointment"
        number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
        if not number and len(turn.authorized) == 1:
            number = next(iter(turn.authorized))
        acc = await self.account(turn, number) if number else None
        district = turn.slots.get("district") or (acc.district if acc else None)
        if not district:
            district = self.require(turn, flow, "district", "utter_ask_district")
            district = _district(district) or district
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

    async def flow_subscribe_notifications(self, turn: Turn) -> None:
        acc = await self.require_account(turn, "subscribe_notifications")
        topic = turn.slots.get("topic") or _topic(str(turn.slots.get("_text") or "")) or "all"
        topics = ["outage", "bill", "work_order", "payment"] if topic == "all" else [topic]
        channel, identity = turn.message.channel, turn.message.sender_id
        try:
            for tp in topics:
                await self.core.create_subscription(acc.account_number, tp, channel, identity)
            via = ""
        except ValidationFailed:
            channel, identity = "sms", "+86" + (_mobile(acc.phone) or acc.phone)
            for tp in topics:
                await self.core.create_subscription(acc.account_number, tp, channel, identity)
            via = self.phrase(turn, "utter_fragment_notices_by_sms", phone=mask_phone(_mobile(acc.phone) or acc.phone))
        turn.actions.append(("action_subscribe", {"topics": topics, "channel": channel}))
        self.finish(turn)
        topic_names = self.phrase(turn, "utter_fragment_list_separator").join(
            self.phrase(turn, f"utter_fragment_topic_{t}") for t in topics)
        self.say(turn, "utter_subscribed", topics=topic_names, via=via)

    async def flow_unsubscribe_notifications(self, turn: Turn) -> None:
        acc = await self.require_account(turn, "unsubscribe_notifications")
        topic = turn.slots.get("topic") or _topic(str(turn.slots.get("_text") or ""))
        self.confirm(turn, "unsubscribe_notifications", "utter_confirm_unsubscribe",
                     topics=self.phrase(turn, f"utter_fragment_topic_{topic if topic in TOPICS else 'all'}"))
        removed = await self.core.delete_subscription(acc.account_number, topic, turn.message.channel, turn.message.sender_id)
        removed += await self.core.delete_subscription(acc.account_number, topic, "sms", "+86" + (_mobile(acc.phone) or acc.phone))
        turn.actions.append(("action_unsubscribe", {"topic": topic, "removed": removed}))
        self.finish(turn)
        self.say(turn, "utter_unsubscribed", count=removed)

    async def flow_bind_account(self, turn: Turn) -> None:
        number = turn.slots.get("account_number")
        if not number:
            self.ask(turn, "bind_account", "account_number", "utter_ask_account_number")
        acc = await self.account(turn, number)
        if number not in turn.authorized or not any(
            b.channel == turn.message.channel and b.identity == turn.message.sender_id for b in acc.bindings
        ):
            if number not in turn.authorized:
                await self.verify(turn, "bind_account", acc)
        await self.core.bind_account(number, turn.message.channel, turn.message.sender_id)
        turn.new_accounts.append((number, "bound"))
        turn.authorized.add(number)
        turn.actions.append(("action_bind_account", {"account": mask_account(number)}))
        self.finish(turn)
        self.say(turn, "utter_bound", account=mask_account(number), name=_mask_name(acc.holder_name))


# ====================================================================== helpers
_CODES_RE = re.compile(r"^/[a-z_]+|\bWO\d{6,}\b|\d+", re.I)


def _has_language(text: str) -> bool:
    """Whether a message says which language the customer writes: digits, button payloads and
    codes such as a work order number ("WO202611280001") do not."""
    if text.startswith("/"):  # a button payload ("/choose{...}")
        return False
    return bool(re.search(r"[A-Za-z\u4e00-\u9fff]", _CODES_RE.sub("", text)))


def _mobile(text: str) -> str | None:
    m = MOBILE_RE.search(text or "")
    return m.group(1) if m else None


_DISTRICT_RE = re.compile(r"([\u4e00-\u9fa5]{2,4}?(?:新区|区|县))")


def _district(text: str) -> str | None:
    m = _DISTRICT_RE.search(text or "")
    if not m:
        return None
    d = m.group(1)
    for prefix in ("上海市", "上海", "北京市", "市"):
        if d.startswith(prefix) and len(d) > len(prefix) + 1:
            d = d[len(prefix):]
    return d


def _topic(text: str) -> str | None:
    for topic, rx in TOPIC_WORDS:
        if rx.search(text):
            return topic
    return None


def _overlaps_day(o: Any, day: str) -> bool:
    d0 = datetime.fromisoformat(day).replace(tzinfo=CHINA_TZ)
    d1 = d0 + timedelta(days=1)
    start = _aware(o.start_at)
    end = _aware(o.estimated_end_at) if o.estimated_end_at else start + timedelta(hours=8)
    return start < d1 and end > d0


def _mask_name(name: str) -> str:
    return (name[0] + "*" * (len(name) - 1)) if name else ""


_PAYLOAD_ENTITY = {
    "account_number": re.compile(r"\d{10,13}"),
    "phone_number": re.compile(r"(?:\+?86)?1[3-9]\d{9}"),
    "work_order_id": re.compile(r"WO\d{12}", re.I),
    "amount": re.compile(r"\d{1,9}(?:\.\d{1,2})?"),
    "month": re.compile(r"\d{4}-(?:0[1-9]|1[0-2])"),
}


_SHORT_NUMBER = re.compile(r"(?<!\d)\d{4,9}(?!\d)")


def _log_text(text: str) -> str:
    """A customer's message as the turn log shows it: personal data masked, and any short
    number too — it may be the last 4 digits of a phone typed as the identity check."""
    return _SHORT_NUMBER.sub(lambda m: "*" * len(m.group(0)), mask_text(text))


def _payload_entities(raw: str) -> list[dict[str, Any]]:
    """Entities of a Rasa-style ``/intent{json}`` message (a button's payload, or typed by
    anyone): only an object's scalar values, each checked for its kind like extracted text —
    a number where an address belongs or a date that does not exist is dropped, not passed
    to a flow that would fail on it."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return []
    if not isinstance(data, dict):
        return []
    ents = []
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            continue
        value = str(value).strip()[:200]
        rule = _PAYLOAD_ENTITY.get(name)
        if rule is not None and not rule.fullmatch(value):
            continue
        if name == "date":
            try:
                value = date.fromisoformat(value).isoformat()
            except ValueError:
                continue
        elif name in ("address", "district") and (len(value) < 2 or value.isdigit()):
            continue
        if value:
            ents.append({"entity": name, "value": value})
    return ents


def _chosen_account(text: str, options: list[str]) -> str | None:
    """The account a customer picked from an offered list: by the button's position
    (``/choose{"account_choice": 2}`` or "2"), by its masked form, or by its last 4 digits."""
    m = re.fullmatch(r'/choose\{"account_choice":\s*(\d{1,2})\}', text) or CHOICE_RE.match(text)
    if m and 1 <= int(m.group(1)) <= len(options):
        return options[int(m.group(1)) - 1]
    hits = [n for n in options if text in (mask_account(n), n[-4:])]
    return hits[0] if len(hits) == 1 else None


def _unclear_reply(turn: Turn, intent: str) -> bool:
    """Neither understood nor carrying anything a flow could use (an account number, a work
    order, a date...): what a customer types by mistake while a yes/no question is open."""
    vague = intent in ("nlu_fallback", "inform", "out_of_scope") or turn.confidence < FALLBACK_CONFIDENCE
    return vague and not turn.entities
