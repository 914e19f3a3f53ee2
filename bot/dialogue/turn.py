"""A turn as values: what the engine is given (``Snapshot``) and what it decides (``TurnResult``).

The engine reads nothing and writes nothing itself: the pipeline loads a ``Snapshot`` through
the tracker store, the engine returns a ``TurnResult``, and the pipeline commits it (with the
replies and the inbound row) through the store's plans. Like Rasa's tracker and events, these
are plain data; nothing here knows SQL or a channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from backend_client.models import Account
from channels.base import Message, Reply


@dataclass
class Snapshot:
    """A conversation as a turn finds it (read by ``TrackerStore.retrieve``)."""

    conversation_id: str
    message_id: str
    state: dict[str, Any]
    customer_id: int | None
    version: int | None  # None: no conversation row yet
    authorized: set[str]
    recorded: bool = False  # a turn of this very message is already recorded (a crash replay)
    replay: list[Reply] | None = None  # ...and its replies, once retrieved
    handoff: Any = None  # the active handoff (``bot.dialogue.handoff.Handoff``), if any
    probe: Any = None  # the wrapper's probe value (``TurnHandler.probe``); falsy: nothing for it
    probe_stmt: Any = None  # the probe the snapshot was read with
    rare: bool = False  # read by the one-statement path and something rare applies (not completed yet)

    @property
    def exists(self) -> bool:
        return self.version is not None


@dataclass
class Turn:
    """The policy's working state during one turn; the result of a business turn."""

    message: Message
    parse: dict[str, Any]
    lang: str
    intent: str
    confidence: float
    entities: dict[str, Any]
    state: dict[str, Any]
    conversation_id: str
    customer_id: int | None
    authorized: set[str]
    replies: list[Reply] = field(default_factory=list)
    actions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    slot_events: list[tuple[str, Any]] = field(default_factory=list)
    handoff: tuple[str, str, str | None] | None = None  # reason, priority, summary
    new_accounts: list[tuple[str, str]] = field(default_factory=list)  # (account, how)
    verify_result: tuple[str, bool] | None = None  # (account, ok)
    accounts_cache: dict[str, Account] = field(default_factory=dict)
    # what this turn knows beyond the message (set by the policy and the forms as it runs):
    just_done: Any = None  # the request the last turn wrote after a yes (the tracker's "done")
    writes_ok: bool = False  # the customer said yes to what the running request writes
    whole_text: str | None = None  # the whole message, while one of its clauses is handled
    form_note: tuple[str, dict[str, Any]] | None = None  # why an answer did not fill its slot, said instead of "not understood"

    @property
    def slots(self) -> dict[str, Any]:
        return self.state.setdefault("slots", {})

    def set_slot(self, name: str, value: Any) -> None:
        if self.slots.get(name) != value:
            self.slots[name] = value
            self.slot_events.append((name, value))

    @property
    def key(self) -> str:
        return f"{self.message.channel}:{self.message.message_id}"


TurnKind = Literal["turn", "handoff", "replay", "reply"]


@dataclass
class TurnResult:
    """What one turn decided; the store turns it into writes.

    ``kind``:
    - ``turn``: the policy ran (``turn`` holds the new state, events, identity changes and a
      handoff request);
    - ``handoff``: an agent holds the conversation; the bot records the message and stays
      quiet (``ack_handoff``: the first message since, answered with a "please wait";
      ``withdraw_handoff``: the customer called off a request nobody had taken yet);
    - ``replay``: the message was already decided before a crash; the recorded replies again;
    - ``reply``: replies only, nothing of the tracker changes (a wrapper answered the message).
    """

    message: Message
    replies: list[Reply]
    kind: TurnKind = "reply"
    turn: Turn | None = None
    snapshot: Snapshot | None = None
    new_identity: tuple[list[Account], str] | None = None
    parse: dict[str, Any] | None = None
    ack_handoff: int | None = None
    withdraw_handoff: int | None = None  # a handoff still waiting that the customer called off
    identity_pending: bool = False  # the core could not say who the sender is: link them later


@dataclass
class Committed:
    """What the commit of a turn did: the replies queued in the outbox (id, reply), whether they
    are held on the inbound row instead, the handoff it opened, and (under a lease) the
    conversation's next waiting row."""

    replies: list[Reply]
    queued: list[tuple[int, Reply]] = field(default_factory=list)
    waiting: bool = False
    held: bool = False
    handoff_opened: Any = None
    next_row: Any = None


def slim_parse(parse: dict[str, Any]) -> dict[str, Any]:
    """What an event keeps of the NLU parse."""
    return {
        "intent": parse.get("intent"),
        "entities": [{k: e.get(k) for k in ("entity", "value", "start", "end")} for e in parse.get("entities") or []],
        "intent_ranking": (parse.get("intent_ranking") or [])[:3],
        "language": parse.get("language"),
    }


def reply_data(reply: Reply) -> dict[str, Any]:
    """What a bot event keeps of a reply: enough to send the same reply again."""
    return {
        "buttons": [{"title": b.title, "payload": b.payload} for b in reply.buttons],
        "kind": reply.kind,
        "metadata": reply.metadata,
        "urgent": reply.urgent,
    }
