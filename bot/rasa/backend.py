"""powerbot in front of a Rasa assistant: each turn decided by a Rasa server over its REST channel.

With ``POWERBOT_DIALOGUE_BACKEND=rasa`` the pipeline's ``TurnHandler`` is ``RasaBackend``
instead of powerbot's dialogue engine. Everything around a turn stays powerbot's: the channels
(WeChat, Alipay, SMS, e-mail, web chat), the inbound queue and the outbox, rate limits, the agent
console, notifications. Only the decision moves: the customer's message is posted to
``{POWERBOT_RASA_URL}/webhooks/rest/webhook`` and Rasa's bot messages come back as the replies
(``bot.rasa.replies``).

The protocol is Rasa Open Source's REST input channel (``rasa/core/channels/rest.py``, read at
3.6.2; unchanged through 3.6.x): request ``{"sender", "message", "input_channel"?,
"metadata"?}``, answer a JSON list of ``{"recipient_id", "text"?, "buttons"?, "image"?,
"attachment"?, "custom"?}``. The sender is the conversation id (``channel:sender``), so a
conversation keeps one Rasa tracker; ``input_channel`` is the powerbot channel (Rasa stores it
as the tracker's ``latest_input_channel``), and ``metadata.powerbot`` says which channel, which
message, and ``handed_back: true`` on the first message after an agent gave the conversation
back.

The conversation is still powerbot's tracker (``TrackerStore``): every message and reply is
recorded for the console, a handoff Rasa asks for (``custom.handoff``) is opened like the
engine's, and while an agent holds the conversation the message goes to the agent — Rasa is not
asked — with the one "please wait" the engine gives. After the agent's close the next message
goes to Rasa again (the console's satisfaction question comes first, as with the engine).

Rasa down (connection refused), failing (not 200, not a list of messages) or slower than
``POWERBOT_RASA_TIMEOUT_SECONDS`` raises ``RasaUnavailable``, a ``TransientError``: the
pipeline answers with the same busy text as when the core is down, keeps the message, and
retries it with backoff until Rasa answers; that answer then goes out through the outbox.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from bot.dialogue.tracker_store import TrackerStore, copy_state
from bot.dialogue.turn import Committed, Snapshot, Turn, TurnResult
from bot.langs import detect_language
from bot.logs import mask_text
from bot.pipeline.handler import TransientError
from bot.rasa.replies import chosen_payload, offered_buttons, read_answer
from channels.base import Message, Reply
from intents.payload import payload_entities, split_payload
from intents.signals import has_language, language_neutral

log = logging.getLogger("powerbot.rasa")

REST_WEBHOOK = "/webhooks/rest/webhook"
STATE_KEY = "rasa"  # what the conversation state keeps for this backend: buttons offered, handoff asked


class RasaUnavailable(TransientError):
    """Rasa did not answer a turn (down, failing, too slow): busy now, the turn retried later."""


class RasaRestClient:
    """Posts one customer message to Rasa's REST channel and returns its bot messages.

    Uses the gateway's one HTTP session, with this client's own timeout on every call."""

    def __init__(self, base_url: str, *, session: aiohttp.ClientSession, timeout: float) -> None:
        self.url = base_url.rstrip("/") + REST_WEBHOOK
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, sender: str, text: str, *, input_channel: str,
                   metadata: dict[str, Any]) -> list[dict[str, Any]]:
        body = {"sender": sender, "message": text, "input_channel": input_channel, "metadata": metadata}
        try:
            async with self.session.post(self.url, json=body, timeout=self.timeout) as resp:
                if resp.status != 200:
                    raise RasaUnavailable(f"Rasa answered HTTP {resp.status}")
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise RasaUnavailable(f"Rasa unreachable or too slow: {type(exc).__name__}") from exc
        if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
            raise RasaUnavailable("Rasa's answer is not a list of bot messages")
        return data


class RasaBackend:
    """The pipeline's ``TurnHandler`` that asks Rasa (see the module docstring)."""

    probe = None  # nothing of its own to read with the snapshot

    def __init__(self, *, store: TrackerStore, rasa: RasaRestClient, texts: Any) -> None:
        self.store = store
        self.rasa = rasa
        self.texts = texts  # bot.texts.TextService: the few texts powerbot itself says (domain.yml)

    async def after_commit(self, result: TurnResult, committed: Committed) -> list[Reply]:
        return []

    async def decide(self, message: Message, snap: Snapshot | None) -> TurnResult:
        if snap is None:  # a pipeline always reads the snapshot through ``store``
            snap = await self.store.retrieve(message)
        if snap.replay is not None:  # decided before a crash: the same replies, Rasa not asked twice
            return TurnResult(message=message, replies=list(snap.replay), kind="replay", snapshot=snap)
        text = (message.text or "").strip()
        lang = _language(text, snap.state)
        parse = _parse(text)
        if snap.handoff is not None:
            return self._handoff_turn(message, parse, lang, snap)
        state = copy_state(snap.state)
        mine = state.setdefault(STATE_KEY, {})
        outgoing = chosen_payload(text, mine.get("buttons")) or text
        if outgoing != text:
            parse = _parse(outgoing)
        meta: dict[str, Any] = {"channel": message.channel, "message_id": message.message_id, "kind": message.kind}
        if mine.pop("handoff", False):
            meta["handed_back"] = True
        metadata = {**dict(message.metadata), "powerbot": meta}
        messages = await self.rasa.send(message.conversation_id, outgoing, input_channel=message.channel,
                                        metadata=metadata)
        answer = read_answer(messages, message)
        replies = answer.replies
        mine["buttons"] = offered_buttons(answer)
        turn = Turn(
            message=message, parse=parse, lang=lang, intent=parse["intent"]["name"],
            confidence=parse["intent"]["confidence"] or 0.0, entities={}, state=state,
            conversation_id=message.conversation_id, customer_id=snap.customer_id, authorized=set(snap.authorized),
        )
        turn.set_slot("language", lang)
        turn.actions.append(("rasa", {"sent": outgoing if outgoing != text else None, "messages": len(messages)}))
        if answer.handoff is not None:
            mine["handoff"], mine["buttons"] = True, []
            turn.handoff = answer.handoff.as_tuple()
            turn.actions.append(("handoff", {"reason": answer.handoff.reason, "priority": answer.handoff.priority}))
            if not any(r.text for r in replies):  # Rasa said nothing: the customer still hears it is happening
                replies.append(self._say(message, "utter_handoff", lang))
        turn.replies = replies
        if log.isEnabledFor(logging.INFO):
            log.info("rasa turn conv=%s replies=%d handoff=%s", mask_text(message.conversation_id), len(replies),
                     answer.handoff.reason if answer.handoff else "-")
        return TurnResult(message=message, replies=replies, kind="turn", turn=turn, snapshot=snap, parse=parse)

    def _handoff_turn(self, message: Message, parse: dict[str, Any], lang: str, snap: Snapshot) -> TurnResult:
        """An agent holds the conversation: recorded for the agent, Rasa not asked; the first
        message since the handoff gets one "please wait" (as the engine does)."""
        h = snap.handoff
        replies: list[Reply] = []
        ack = None
        if not getattr(h, "acked", True):
            ack = h.id
            replies.append(self._say(message, "utter_handoff_waiting", lang))
        return TurnResult(message=message, replies=replies, kind="handoff", snapshot=snap, parse=parse, ack_handoff=ack)

    def _say(self, message: Message, name: str, lang: str) -> Reply:
        text = self.texts.render(name, lang=lang, channel=message.channel, seed=message.message_id).text
        return Reply(channel=message.channel, recipient_id=message.sender_id, text=text)


def _language(text: str, state: dict[str, Any]) -> str:
    """The customer's language for powerbot's own few texts: digits, buttons and a bare "ok"
    keep the language of the conversation."""
    lang = detect_language(text)
    if not has_language(text) or language_neutral(text):
        lang = (state.get("slots") or {}).get("language") or lang
    return lang if lang in ("zh", "en") else "zh"


def _parse(text: str) -> dict[str, Any]:
    """What the conversation log records of the message: Rasa does not say what it understood,
    so only a button payload (``/intent{json}``) names an intent."""
    payload = split_payload(text)
    if payload is None:
        return {"text": text, "intent": {"name": None, "confidence": None}, "entities": []}
    name, raw = payload
    return {"text": text, "intent": {"name": name, "confidence": 1.0},
            "entities": payload_entities(raw) if raw else []}


def rasa_handler_factory(app: Any) -> RasaBackend:
    """``bot.app.HandlerFactory`` of the Rasa backend (``POWERBOT_DIALOGUE_BACKEND=rasa``)."""
    from bot.app import HTTP, SESSIONMAKER, SETTINGS, TEXTS

    settings = app[SETTINGS]
    client = RasaRestClient(settings.rasa_url, session=app[HTTP], timeout=settings.rasa_timeout_seconds)
    return RasaBackend(store=TrackerStore(app[SESSIONMAKER]), rasa=client, texts=app[TEXTS])
