"""The dialogue engine's entry point: one message of one conversation in, a ``TurnResult`` out.

One turn = parse the text → run the policy on the conversation's ``Snapshot`` → return a
``TurnResult``: replies rendered from ``domain.yml``, the new state, what to record. The engine
runs no SQL; the pipeline loads the snapshot and commits the result through the tracker store
(``bot.dialogue.tracker_store``).

Where things are (each a mixin of ``DialogueEngine``, documenting what it expects of the others):

- ``policy``: what to do with an understood message (hazards, hand-off, cancel, offers, forms,
  follow-ups, dispatch to a flow, fallback);
- ``forms``: slot filling and validation (``ask``, ``require``, ``confirm``, ``Stop``);
- ``identity``: known accounts, account lookup, the identity check;
- ``responses``: rendering replies from the domain, formatting numbers and times;
- ``reference``: the core's reference data, cached briefly;
- ``flows/``: the business flows (``flow_<intent>``), by domain;
- the customer's words are read by ``intents`` (entities, signals such as a hazard, the raw
  value a form asked for, button payloads) — this package defines no patterns of its own.

Side effects on the core (work orders, appointments, bindings) are keyed on the inbound
message id, and happen before the turn's result is committed: if the core is unavailable the
``CoreUnavailable`` error propagates (nothing persisted), the pipeline tells the customer the
system is busy and retries the same message later, and the keyed call cannot be doubled.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from backend_client import CoreClient, CoreUnavailable
from backend_client.models import Account
from bot.dialogue.domain import Domain
from bot.dialogue.flows import BUSINESS_INTENTS
from bot.dialogue.flows.applications import ApplicationFlows
from bot.dialogue.flows.appointments import CANCEL_FLOW, AppointmentFlows
from bot.dialogue.flows.billing import BillingFlows
from bot.dialogue.flows.hazards import EMERGENCY, HazardFlows
from bot.dialogue.flows.outages import OutageFlows
from bot.dialogue.flows.service_requests import ServiceRequestFlows
from bot.dialogue.flows.subscriptions import SubscriptionFlows
from bot.dialogue.flows.tariffs import TariffFlows
from bot.dialogue.forms import ConfirmedWrites, FormsMixin, Stop
from bot.dialogue.identity import ACCOUNT_CHECK, IdentityMixin
from bot.dialogue.follow_ups import FollowUpsMixin
from bot.dialogue.policy import FALLBACK_CONFIDENCE, PolicyMixin
from bot.dialogue.reference import ReferenceData
from bot.dialogue.responses import CHINA_TZ, Responses
from bot.dialogue.tracker_store import TrackerStore
from bot.dialogue.turn import Snapshot, Turn, TurnResult
from bot.langs import detect_language
from bot.logs import mask_text
from channels.base import Message, Reply
from common.metrics import NLU_SECONDS
from intents.payload import payload_entities, split_payload
from intents.signals import (after_acknowledgement, asks_eta, change_at, declines, is_cancel, is_question, pieces,
                             without_notice_footer, word_chars)
from intents.signals import has_language, language_neutral

log = logging.getLogger("powerbot.dialogue")

# an nlu_fallback parse this sure is the out-of-scope class itself, not a request below the
# model's fallback threshold (which the parse reports with the threshold as its confidence)
OUT_OF_SCOPE_CONFIDENCE = 0.6
# a message that starts with "知道了"/"ok" and is not clearly understood is read again without it
ACK_REREAD_BELOW = 0.7


class DialogueEngine(
    PolicyMixin, FollowUpsMixin, FormsMixin, IdentityMixin, Responses, ReferenceData,
    HazardFlows, BillingFlows, OutageFlows, ServiceRequestFlows, ApplicationFlows, TariffFlows, AppointmentFlows,
    SubscriptionFlows,
):
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
        # the flows write to the core only what the customer said yes to (``ConfirmedWrites``)
        self.core = ConfirmedWrites(core, self)
        self.interpreter = interpreter
        self.settings = settings
        self.payments = payments
        self.domain = domain or Domain()
        self._reference: dict[tuple[str, Any], tuple[float, Any]] = {}
        self.flows: dict[str, Callable[[Turn], Awaitable[None]]] = {
            name: getattr(self, f"flow_{name}") for name in BUSINESS_INTENTS if hasattr(self, f"flow_{name}")
        }
        self.flows[ACCOUNT_CHECK] = self.flow_account_check
        self.flows[CANCEL_FLOW] = self.flow_cancel_appointment

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
        if not has_language(text) or language_neutral(text):
            # digits, buttons and a bare "ok" keep the language the customer writes in
            lang = (state.get("slots") or {}).get("language") or lang
        withdrawn = None
        if snap.handoff is not None and not _hazard_waiting(snap, text, parse):
            rest = self._request_after_call_off(text, parse, snap)
            if rest is None:
                return self._handoff_turn(message, parse, lang, snap)
            # "算了不用了 我自己查吧 3100000002电费多少": out of the queue, and the rest answered
            withdrawn, message = snap.handoff.id, replace(message, text=rest)
            text, parse = rest, self._parse(rest)
        new_identity: tuple[list[Account], str] | None = None
        identity_pending = False
        if not snap.exists or snap.customer_id is None:
            try:
                new_identity = await self._known_accounts(message)
            except CoreUnavailable:
                # answer what needs no core ("你好", thanks, the hotline); who the sender is
                # is looked up again next turn, and a flow that needs the core is "busy" as before
                identity_pending = True
        intent = parse.get("intent", {}).get("name") or "nlu_fallback"
        if intent == "nlu_fallback" and float(parse.get("intent", {}).get("confidence") or 0.0) >= OUT_OF_SCOPE_CONFIDENCE \
                and word_chars(text) >= 5:
            # the classifier is sure it is something else (a water bill, homework): not "I didn't
            # understand" but "not something 95598 handles" (Rasa's parse calls both nlu_fallback);
            # a few words ("有个事", "帮我看看") are asked to say more instead
            intent = "out_of_scope"
        if message.kind == "location" and intent not in ("request_human", "repair_request"):
            # A shared location (platform-neutral kind) asks "is the power out around here?":
            # the outage flow checks known outages at that address before anything else.
            intent = "report_outage"
        ents: dict[str, Any] = {}
        after_change: set[str] = set()
        changed = change_at(text)  # "明天我要上班 改成后天下午吧": the day after "改成"
        for e in parse.get("entities") or []:
            if changed is not None and int(e.get("start") or 0) >= changed and e.get("entity") not in after_change:
                ents[e.get("entity")] = e.get("value")
                after_change.add(e.get("entity"))
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
        if withdrawn is not None:
            r = self.domain.render("utter_handoff_withdrawn", lang=lang, channel=message.channel, seed=message.message_id)
            turn.replies.insert(0, Reply(channel=message.channel, recipient_id=message.sender_id, text=r.text))
        return TurnResult(message=message, replies=turn.replies, kind="turn", turn=turn, snapshot=snap,
                          new_identity=new_identity, parse=parse, identity_pending=identity_pending,
                          withdraw_handoff=withdrawn)

    async def handle(self, message: Message) -> list[Reply]:
        """One turn on its own — retrieve, decide, save — for a caller without the pipeline
        (the replies are returned, not queued)."""
        snap = await self.store.retrieve(message)
        result = await self.decide(message, snap)
        await self.store.save(result)
        return result.replies

    def _parse(self, text: str) -> dict[str, Any]:
        """The NLU parse of a message; a button's payload (``/intent{json}``) names its intent."""
        payload = split_payload(text)
        if payload and (payload[0] in self.domain.intents or payload[0] in BUSINESS_INTENTS):
            name, raw = payload
            ents = payload_entities(raw) if raw else []
            return {"text": text, "intent": {"name": name, "confidence": 1.0}, "entities": ents,
                    "language": None}
        if not text:
            return {"text": "", "intent": {"name": "nlu_fallback", "confidence": 0.0}, "entities": []}
        # relative dates ("明天", "上个月") are the customer's: China's date, not the server's
        started = time.perf_counter()
        today = datetime.now(CHINA_TZ).date()
        parsed = self.interpreter.parse(without_notice_footer(text), today)
        rest = after_acknowledgement(text)
        if rest and float(parsed["intent"].get("confidence") or 0) < ACK_REREAD_BELOW:
            # "知道了 那先交钱吧": the request after a word of acknowledgement, read alone
            request = self.interpreter.parse(rest, today)
            if request["intent"]["name"] in BUSINESS_INTENTS and float(request["intent"].get("confidence") or 0) >= 0.9:
                parsed = {**request, "text": parsed["text"], "entities": parsed["entities"]}
        NLU_SECONDS.observe(time.perf_counter() - started)
        return parsed

    def _request_after_call_off(self, text: str, parse: dict, snap: Snapshot) -> str | None:
        """What a customer still waiting for an agent asks after calling the agent off ("never
        mind, you can probably answer it: what are the opening hours…"), or None."""
        if snap.handoff is None or snap.handoff.status != "waiting" or not _calls_off(text, parse):
            return None
        asked = []  # the parts after the first that make a request
        for p in pieces(text)[1:]:
            intent = self._parse(p).get("intent") or {}
            if intent.get("name") in BUSINESS_INTENTS and float(intent.get("confidence") or 0.0) >= FALLBACK_CONFIDENCE:
                asked.append(p)
        first = next((p for p in asked if is_question(p)), asked[0] if asked else None)  # a question first
        return text[text.index(first):] if first else None

    def _handoff_turn(self, message: Message, parse: dict, lang: str, snap: Snapshot) -> TurnResult:
        """An agent holds the conversation: the bot records the message and stays quiet, except
        for one "please wait" to the first message since the handoff."""
        h = snap.handoff
        replies: list[Reply] = []
        if h.status == "waiting" and _calls_off(message.text or "", parse):
            # nobody has taken it yet: "算了不用了，我自己查吧" takes the customer out of the queue
            r = self.domain.render("utter_handoff_withdrawn", lang=lang, channel=message.channel, seed=message.message_id)
            replies.append(Reply(channel=message.channel, recipient_id=message.sender_id, text=r.text))
            return TurnResult(message=message, replies=replies, kind="handoff", snapshot=snap, parse=parse,
                              withdraw_handoff=h.id)
        ack = None
        if not h.acked:
            ack = h.id
            r = self.domain.render("utter_handoff_waiting", lang=lang, channel=message.channel, seed=message.message_id)
            replies.append(Reply(channel=message.channel, recipient_id=message.sender_id, text=r.text))
        return TurnResult(message=message, replies=replies, kind="handoff", snapshot=snap, parse=parse, ack_handoff=ack)


def _calls_off(text: str, parse: dict) -> bool:
    """The customer waiting for an agent says they no longer want one."""
    if is_cancel(text) or declines(text):
        return True
    intent = parse.get("intent") or {}
    return intent.get("name") == "deny" and float(intent.get("confidence") or 0.0) >= 0.8


def _hazard_waiting(snap: Snapshot, text: str, parse: dict) -> bool:
    """A hazard's handoff waiting for an agent: the bot goes on with the report (where, a phone,
    the yes) and answers what it understands next ("how long until they come?", a bill) until
    an agent takes over; anything else ("快点", "还在吗") is the agent's. Someone near a
    fallen wire is never left without an answer."""
    h = snap.handoff
    if getattr(h, "reason", None) != "hazard" or getattr(h, "status", None) != "waiting":
        return False
    intent = parse.get("intent") or {}
    understood = intent.get("name") in BUSINESS_INTENTS and float(intent.get("confidence") or 0.0) >= FALLBACK_CONFIDENCE
    return (snap.state.get("form") or {}).get("name") == EMERGENCY or understood or asks_eta(text)


# Log masking, not reading the customer: any short number is hidden in the turn log.
_SHORT_NUMBER = re.compile(r"(?<!\d)\d{4,9}(?!\d)")


def _log_text(text: str) -> str:
    """A customer's message as the turn log shows it: personal data masked, and any short
    number too — it may be the last 4 digits of a phone typed as the identity check."""
    return _SHORT_NUMBER.sub(lambda m: "*" * len(m.group(0)), mask_text(text))
