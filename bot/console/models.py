"""Tables of the agent console (bot store, migration ``bot_0007_console``).

Independent of the dialogue tables (no foreign keys): conversations are referred to by their
``conversation_id`` string and handoffs by their id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.models import Base, BigId, utcnow


class Agent(Base):
    __tablename__ = "console_agents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="agent")  # agent | supervisor
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    # no longer read: failed logins are counted per name tried (``auth.login_state``) so that
    # unknown names lock the same way; kept to avoid a schema change
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ConsoleSession(Base):
    """A logged-in browser: only the SHA-256 of the cookie token is stored."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[int] = mapped_column(BigId)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """Who revealed which masked customer datum, when (and other sensitive actions)."""

    __tablename__ = "console_audit"
    __table_args__ = (Index("ix_console_audit_conv", "conversation_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_name: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(32))  # reveal | login | login_failed | lockout
    conversation_id: Mapped[str | None] = mapped_column(String(240), nullable=True)
    field: Mapped[str | None] = mapped_column(String(40), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ConsoleMessage(Base):
    """What agents write: replies sent to the customer, internal notes, system lines."""

    __tablename__ = "console_messages"
    __table_args__ = (Index("ix_console_messages_conv", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(String(240))
    handoff_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    agent_name: Mapped[str | None] = mapped_column(String(80), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # reply | note | system
    text: Mapped[str] = mapped_column(Text)
    outbox_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Satisfaction(Base):
    """1–5 score asked after an agent closes a conversation."""

    __tablename__ = "console_satisfaction"
    __table_args__ = (Index("ix_console_satisfaction_conv", "conversation_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(String(240))
    handoff_id: Mapped[int] = mapped_column(BigId, unique=True)
    agent_name: Mapped[str | None] = mapped_column(String(80), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="asked")  # asked | answered | skipped
    score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    asked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CallbackOffer(Base):
    """Offered when nobody is online to take a handoff; accepted → a callback work order."""

    __tablename__ = "console_callback_offers"
    __table_args__ = (Index("ix_console_callback_conv", "conversation_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(String(240))
    handoff_id: Mapped[int] = mapped_column(BigId, unique=True)
    status: Mapped[str] = mapped_column(String(16), default="offered")  # offered | accepted
    estimated_wait_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    work_order_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CannedResponse(Base):
    """A canned answer agents insert with "/shortcut" (migration ``bot_0019_console_canned``)."""

    __tablename__ = "console_canned"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shortcut: Mapped[str] = mapped_column(String(32), unique=True)
    text: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
