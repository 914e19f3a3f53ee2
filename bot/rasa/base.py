"""What every powerbot action for Rasa shares: the core client, the turn's context, asking and
confirming.

Rasa keeps the conversation (its tracker), powerbot keeps the business rules. An action reads
the tracker it is sent, asks the core through ``backend_client`` and answers with Rasa events
and responses:

- a full sentence is a response of the assistant's domain (``utter_*``, the starter project's
  ``examples/rasa/domain.yml`` converted from ``training_data/domain.yml``) sent by name with
  its values, so Rasa picks the variant for the language and channel; a piece of a sentence
  (a status label, a line of a list) is rendered here from powerbot's own domain
  (``utter_fragment_*``) and passed as a value. No customer text lives in Python.
- a question ends the action (``Asked``): the response asking it, and the slot the
  assistant's form should fill next.
- a write to the core is made only once the customer said yes to exactly what it writes
  (``WriteAction``): the first run shows the draft, remembers its fingerprint in the slot
  ``confirm_key`` and opens the form ``confirm_form`` for the answer; a run after the
  customer's yes (slot ``confirm`` true, and the ``affirm`` intent on the latest message) with
  the same fingerprint writes it, once, with an idempotency key derived from the conversation
  and the draft. A yes to anything else, or to a draft that changed since, writes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from backend_client import CoreClient, CoreUnavailable
from bot.langs import detect_language

log = logging.getLogger("powerbot.rasa")

# slots the actions keep in the Rasa tracker (declared by the starter project's domain)
CONFIRM = "confirm"
CONFIRM_KEY = "confirm_key"
PENDING_ACTION = "pending_action"  # the request to resume once the identity check passes
VERIFIED_ACCOUNT = "verified_account"
CONFIRM_FORM = "confirm_form"  # the form whose one slot is the yes/no to a draft


class CoreAccess:
    """The action server's one core client (one aiohttp session, a timeout on every call),
    opened on the server's event loop at the first call and closed when the server stops."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.timeout = 5.0
        self.token: str | None = None
        self._client: CoreClient | None = None
        self._lock = asyncio.Lock()

    def configure(self, url: str, *, timeout: float = 5.0, token: str | None = None) -> None:
        self.url, self.timeout, self.token = url, timeout, token

    async def client(self) -> CoreClient:
        if self._client is None:
            if self.url is None:
                from bot.settings import get_settings

                s = get_settings()
                self.configure(s.core_base_url, timeout=s.core_timeout_seconds, token=s.core_token())
            async with self._lock:
                if self._client is None:
                    assert self.url is not None
                    self._client = CoreClient(self.url, timeout=self.timeout, token=self.token)
                    await self._client.__aenter__()
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


CORE = CoreAccess()


class Asked(Exception):
    """The action asked the customer something (or told them why not): end the action."""


def _fragments() -> Any:
    from bot.dialogue.domain import Domain

    return Domain()


class Context:
    """One action call: the tracker, where its answers go, and the events it returns."""

    _domain: Any = None

    def __init__(self, dispatcher: CollectingDispatcher, tracker: Tracker, core: CoreClient) -> None:
        self.dispatcher = dispatcher
        self.tracker = tracker
        self.core = core
        self.events: list[EventType] = []
        text = str((tracker.latest_message or {}).get("text") or "")
        self.lang = str(tracker.get_slot("language") or detect_language(text))
        self.channel = str(tracker.get_latest_input_channel() or "rest")

    # --- reading the tracker ------------------------------------------------------------
    def slot(self, name: str) -> Any:
        return self.tracker.get_slot(name)

    @property
    def text(self) -> str:
        return str((self.tracker.latest_message or {}).get("text") or "")

    @property
    def intent(self) -> str | None:
        return ((self.tracker.latest_message or {}).get("intent") or {}).get("name")

    # --- answering ----------------------------------------------------------------------
    def say(self, response: str, /, **values: Any) -> None:
        """A response of the assistant's domain, with the values its placeholders name."""
        self.dispatcher.utter_message(response=response, **{k: ("" if v is None else v) for k, v in values.items()})

    def phrase(self, name: str, /, **values: Any) -> str:
        """A piece of a sentence (``utter_fragment_*`` of powerbot's domain) in this language."""
        if Context._domain is None:
            Context._domain = _fragments()
        return Context._domain.render(name, lang=self.lang, channel=self.channel, **values).text

    def set(self, name: str, value: Any) -> None:
        self.events.append(SlotSet(name, value))

    def ask(self, response: str, /, *, form: str | None = None, slot: str | None = None, **values: Any) -> None:
        """Ask with ``response`` and end the action; with ``form``/``slot`` the assistant's form
        ``form`` takes the answer as ``slot`` (its validation reads it)."""
        self.say(response, **values)
        if form and slot:
            # the form waits for the answer: Rasa listens first (a form run now would ask again)
            self.events += [ActiveLoop(form), SlotSet("requested_slot", slot), FollowupAction("action_listen")]
        raise Asked


@dataclass
class Draft:
    """A write the customer is asked to confirm: what the confirmation shows and the write itself."""

    confirm: str  # the response that shows it
    shown: dict[str, Any]  # its values
    fields: dict[str, Any]  # what will be written (its fingerprint)
    write: Callable[[str], Awaitable[tuple[str, dict[str, Any]]]]  # idempotency key → (done response, values)
    after: list[EventType] = field(default_factory=list)

    def key(self, action: str) -> str:
        raw = json.dumps([action, self.fields], sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:20]


class CoreAction(Action, ABC):
    """An action backed by the core: ``act`` answers, a question ends it early (``Asked``), a
    core that does not answer is told as powerbot tells it (``utter_busy``)."""

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        ctx = Context(dispatcher, tracker, await CORE.client())
        try:
            await self.act(ctx)
        except Asked:
            # a question a form takes the answer of: this request resumes once the form is done
            # (the starter project's rules run ``action_resume``)
            asks = any(e.get("event") == "active_loop" and e.get("name") for e in ctx.events)
            if asks and not any(e.get("event") == "slot" and e.get("name") == PENDING_ACTION for e in ctx.events):
                ctx.set(PENDING_ACTION, self.name())
        except CoreUnavailable:
            log.warning("core unavailable during %s", self.name())
            ctx.say("utter_busy")
        return ctx.events

    @abstractmethod
    async def act(self, ctx: Context) -> None: ...


class WriteAction(CoreAction, ABC):
    """An action that writes to the core: only what the customer saw and said yes to."""

    async def act(self, ctx: Context) -> None:
        d = await self.draft(ctx)
        key = d.key(self.name())
        if ctx.slot(CONFIRM_KEY) == key and ctx.slot(CONFIRM) is not None and ctx.intent in ("affirm", "deny"):
            ctx.set(CONFIRM, None)
            ctx.set(CONFIRM_KEY, None)
            ctx.set(PENDING_ACTION, None)
            if ctx.slot(CONFIRM) is True and ctx.intent == "affirm":
                response, values = await d.write(f"rasa:{ctx.tracker.sender_id}:{key}")
                ctx.events += d.after
                ctx.say(response, **values)
            else:
                ctx.say("utter_cancelled")
            return
        self.preview(ctx, d, key)

    def preview(self, ctx: Context, d: Draft, key: str) -> None:
        """Show the draft for a yes: the confirmation form takes the answer (slot ``confirm``)
        and hands back to this action (``pending_action``), which writes only this draft."""
        ctx.set(CONFIRM, None)
        ctx.set(CONFIRM_KEY, key)
        ctx.set(PENDING_ACTION, self.name())
        ctx.ask(d.confirm, form=CONFIRM_FORM, slot=CONFIRM, **d.shown)

    @abstractmethod
    async def draft(self, ctx: Context) -> Draft: ...
