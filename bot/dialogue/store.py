"""Tracker store of the dialogue engine (SQLAlchemy, same ``Base`` as the bot store).

Tables:

- ``dlg_conversations``: one row per conversation (``channel:sender_id``) with its current state
  (slots, active form, pending confirmation, fallback counter) and a version number.
- ``dlg_events``: the ordered event log of a conversation — ``user`` (text + NLU parse),
  ``bot`` (reply text), ``slot`` (name/value), ``action`` (name + result), ``handoff``.
  Every event carries the slots after the turn so the agent console can show them.
- ``dlg_customers`` / ``dlg_identities`` / ``dlg_customer_accounts``: one customer identity
  across channels. A channel identity (channel, sender_id) belongs to one customer; a customer
  owns account numbers, each either ``bound`` (core binding / registered phone) or
  ``verified`` (account number + last 4 digits of the registered phone in this conversation).
- ``dlg_verification_failures``: wrong-answer counters per (account number, identity) and one
  per account (identity ``*``). Five wrong answers from one identity lock the check for that
  identity; fifteen from all identities together lock it for every unbound identity; a lock
  lasts 30 minutes, counters forget failures older than that (persisted, so a restart does not
  reset them). A neighbour who knows the account number cannot lock the owner out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.models import Base, BigId, utcnow


class Conversation(Base):
    __tablename__ = "dlg_conversations"

    id: Mapped[str] = mapped_column(String(240), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    sender_id: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Event(Base):
    __tablename__ = "dlg_events"
    __table_args__ = (Index("ix_dlg_events_conv", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(String(240))
    type: Mapped[str] = mapped_column(String(16))  # user | bot | slot | action | handoff
    name: Mapped[str | None] = mapped_column(String(80), nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Customer(Base):
    __tablename__ = "dlg_customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Identity(Base):
    __tablename__ = "dlg_identities"
    __table_args__ = (UniqueConstraint("channel", "sender_id", name="uq_dlg_identity"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    sender_id: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("dlg_customers.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CustomerAccount(Base):
    __tablename__ = "dlg_customer_accounts"
    __table_args__ = (
        UniqueConstraint("customer_id", "account_number", name="uq_dlg_customer_account"),
        Index("ix_dlg_customer_accounts_acct", "account_number"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("dlg_customers.id"))
    account_number: Mapped[str] = mapped_column(String(20))
    how: Mapped[str] = mapped_column(String(16))  # bound | phone | verified
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class VerificationLock(Base):
    __tablename__ = "dlg_verification_failures"

    account_number: Mapped[str] = mapped_column(String(20), primary_key=True)
    identity: Mapped[str] = mapped_column(String(200), primary_key=True)  # "channel:sender" or "*"
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
