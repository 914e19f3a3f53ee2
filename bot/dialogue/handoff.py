"""Handoff of a conversation from the bot to a human agent (the engine owns this state).

A conversation is *handed off* while it has a handoff row in status ``waiting`` (queued for an
agent) or ``assigned`` (an agent holds it). While handed off the bot does not answer: the
engine records the customer's message and calls ``DialogueEngine.on_handoff_message``
(``async (conversation_id, Message) -> None``), the hook the agent console installs
to push the message to the agent. The first message after the handoff request gets a short
acknowledgement; later ones get no bot reply.

Functions (all take an ``AsyncSession``; the caller commits):

- ``await request_handoff(session, conversation_id, reason, priority="normal", *, summary=None)
  -> Handoff`` — open a handoff (or return the active one, raising its priority if needed).
  ``reason`` is one of ``REASONS``: ``request_human``, ``complaint_angry``,
  ``complaint_follow_up`` (kept for handoffs stored before such complaints became urgent orders
  instead), ``repeated_fallback``, ``hazard`` (fire or a person hurt), ``duplicate_payment``; ``priority`` one of ``low|normal|high|emergency``.
- ``await get_active_handoff(session, conversation_id) -> Handoff | None``.
- ``await list_active_handoffs(session) -> list[Handoff]`` — queue for the console, most urgent
  first, then oldest.
- ``await assign(session, conversation_id, agent_id) -> Handoff`` — an agent takes it
  (``LookupError`` if there is no active handoff).
- ``await release_to_bot(session, conversation_id, note=None) -> Handoff | None`` — the agent
  gives the conversation back; the bot answers again from the next message.

Each handoff also writes a ``handoff`` event into ``dlg_events`` (the conversation's log, where
the console finds the customer's messages with their NLU parse and the slots at each turn:
``bot.dialogue.engine.conversation_events(session, conversation_id)``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, String, Text, case, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bot.dialogue.store import Event
from bot.models import Base, BigId, utcnow

REASONS = ("request_human", "complaint_angry", "complaint_follow_up", "repeated_fallback", "hazard", "duplicate_payment")
PRIORITIES = ("low", "normal", "high", "emergency")
ACTIVE = ("waiting", "assigned")


class Handoff(Base):
    __tablename__ = "handoffs"
    __table_args__ = (Index("ix_handoffs_conv_status", "conversation_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(String(240))
    reason: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    status: Mapped[str] = mapped_column(String(16), default="waiting")  # waiting|assigned|released
    agent_id: Mapped[str | None] = mapped_column(String(120), nullable=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    acked: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def _event(conversation_id: str, name: str, data: dict[str, Any]) -> Event:
    return Event(conversation_id=conversation_id, type="handoff", name=name, data=data)


async def get_active_handoff(session: AsyncSession, conversation_id: str) -> Handoff | None:
    return (
        await session.execute(
            select(Handoff)
            .where(Handoff.conversation_id == conversation_id, Handoff.status.in_(ACTIVE))
            .order_by(Handoff.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def request_handoff(
    session: AsyncSession,
    conversation_id: str,
    reason: str,
    priority: str = "normal",
    *,
    summary: str | None = None,
) -> Handoff:
    if reason not in REASONS:
        raise ValueError(f"unknown handoff reason {reason!r}")
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}")
    current = await get_active_handoff(session, conversation_id)
    if current is not None:
        if PRIORITIES.index(priority) > PRIORITIES.index(current.priority):
            current.priority = priority
        return current
    h = Handoff(conversation_id=conversation_id, reason=reason, priority=priority, status="waiting", summary=summary)
    session.add(h)
    session.add(_event(conversation_id, "requested", {"reason": reason, "priority": priority}))
    await session.flush()
    return h


async def list_active_handoffs(session: AsyncSession) -> list[Handoff]:
    rank = case({p: i for i, p in enumerate(PRIORITIES)}, value=Handoff.priority, else_=0)
    rows = await session.execute(
        select(Handoff).where(Handoff.status.in_(ACTIVE)).order_by(rank.desc(), Handoff.id)
    )
    return list(rows.scalars())


async def assign(session: AsyncSession, conversation_id: str, agent_id: str) -> Handoff:
    h = await get_active_handoff(session, conversation_id)
    if h is None:
        raise LookupError(f"no active handoff for {conversation_id}")
    h.status, h.agent_id, h.assigned_at = "assigned", agent_id, utcnow()
    session.add(_event(conversation_id, "assigned", {"agent_id": agent_id}))
    await session.flush()
    return h


async def release_to_bot(session: AsyncSession, conversation_id: str, note: str | None = None) -> Handoff | None:
    h = await get_active_handoff(session, conversation_id)
    if h is None:
        return None
    return await _release(session, h, note)


async def _release(session: AsyncSession, h: Handoff, note: str | None) -> Handoff:
    h.status, h.released_at = "released", utcnow()
    session.add(_event(h.conversation_id, "released", {"note": note, "agent_id": h.agent_id}))
    await session.flush()
    return h


async def withdraw(session: AsyncSession, handoff_id: int) -> Handoff | None:
    """The customer called off a request no agent has taken yet (an agent's take wins a race:
    an assigned handoff stays)."""
    h = await session.get(Handoff, handoff_id, with_for_update=True)
    if h is None or h.status != "waiting":
        return None
    return await _release(session, h, "withdrawn by the customer")
