"""Who may see and act on a handoff: the one rule every console endpoint and the websocket use.

The rule, by the handoff's status and holder (``Handoff.agent_id``):

- **waiting** (queued, nobody holds it): every agent may *see* it — masked — so as to decide
  to take it; any agent may *take* it.
- **assigned** (an agent took it): only its holder and supervisors may see it.
- **released** (handed back to the bot): only its last holder and supervisors may see it.
- **acting** on it — reply, note, transfer, close, reveal — needs the handoff *assigned* and
  the caller its holder or a supervisor.
- A supervisor seeing a conversation somebody else holds (or held) is audited
  (``console_audit`` action ``supervisor_view``); every reveal is audited (``reveal``).
- What anyone sees is masked (``bot.console.masking``); the raw value only through a reveal.

Live events follow the same rule (``event_for``): the queue's own events (queued, taken,
transferred, closed) go to every agent, anything about a conversation's content (a customer
message, a reply, a note, a score, a callback) only to those who may see that conversation;
the conversation id in every event is masked like the queue shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.console.service import display_name

SUPERVISOR = "supervisor"
# events that change the queue itself: they carry ids and agent names, no customer data
QUEUE_EVENTS = frozenset({"queued", "taken", "transferred", "closed"})


@dataclass(frozen=True)
class Decision:
    view: bool  # may read the conversation (masked)
    act: bool  # may reply, note, transfer, close, reveal
    audit: bool  # reading it is a supervisor looking at someone else's conversation
    reason: str = ""  # why not (problem code), when view or act is False


def may_view(name: str, role: str, status: str | None, holder: str | None) -> bool:
    if role == SUPERVISOR:
        return True
    if status == "waiting":
        return True
    return holder is not None and holder == name


def decide(name: str, role: str, status: str | None, holder: str | None) -> Decision:
    view = may_view(name, role, status, holder)
    own = holder is not None and holder == name
    audit = role == SUPERVISOR and status != "waiting" and not own
    if not view:
        return Decision(False, False, False, "not_yours")
    if status != "assigned":
        return Decision(True, False, audit, "not_assigned")
    if not (own or role == SUPERVISOR):
        return Decision(True, False, audit, "not_yours")
    return Decision(True, True, audit)


def for_handoff(agent: Any, handoff: Any) -> Decision:
    return decide(agent.name, agent.role, handoff.status, handoff.agent_id)


def event_fields(handoff: Any) -> dict[str, Any]:
    """What every live event about a handoff carries so that ``event_for`` can route it."""
    return {"handoff_id": handoff.id, "conversation_id": handoff.conversation_id,
            "status": handoff.status, "holder": handoff.agent_id}


def event_for(name: str, role: str, event: dict[str, Any]) -> dict[str, Any] | None:
    """The event as this agent may receive it, or None when they may not see it."""
    if not isinstance(event, dict):
        return None
    concerns = "handoff_id" in event or "conversation_id" in event
    if concerns and role != SUPERVISOR and event.get("type") not in QUEUE_EVENTS:
        if not may_view(name, role, event.get("status"), event.get("holder")):
            return None
    out = dict(event)
    cid = out.get("conversation_id")
    if isinstance(cid, str):
        out["conversation_id"] = display_name(cid)
    return out
