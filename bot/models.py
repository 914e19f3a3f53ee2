"""Bot-store tables shared by every part of the gateway.

Every inbound message is persisted before it is processed (``inbound_messages``) and every
outbound one goes through the outbox (``outbox``), so a crash or a core outage loses nothing.
Feature modules (tracker, console, notifications) declare their tables on the same ``Base``
(``common.db.GatewayBase``, where the channels' own tables and the shared ``cache_entries``
are declared too).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.clock import utcnow
from common.db import BigId, CacheEntry, partial  # noqa: F401 - re-exported for the bot's modules
from common.db import GatewayBase as Base


class InboundMessage(Base):
    """A customer message as received; the unique key makes platform retries harmless."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("channel", "sender_id", "dedupe_key", name="uq_inbound_dedupe"),  # ids are per sender
        # the rows still waiting, and the email channel's threads (bot_0015)
        Index("ix_inbound_conv_waiting", "conversation_id", "id", **partial("status = 'received'")),
        Index("ix_inbound_email_conv", "conversation_id", "id", **partial("channel = 'email'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(200))
    sender_id: Mapped[str] = mapped_column(String(200))
    conversation_id: Mapped[str] = mapped_column(String(240))
    kind: Mapped[str] = mapped_column(String(32), default="text")
    text: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="received")  # received|held|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OutboxMessage(Base):
    """An outbound message waiting for (or past) delivery by its channel's worker."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("channel", "dedupe_key", name="uq_outbox_dedupe"),
        Index("ix_outbox_sending_due", "next_attempt_at", **partial("status = 'sending'")),
        # only the REST poll looks replies up by recipient (bot_0013)
        Index("ix_outbox_rest_recipient", "recipient_id", "id", **partial("channel = 'rest'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    recipient_id: Mapped[str] = mapped_column(String(200))
    conversation_id: Mapped[str | None] = mapped_column(String(240), nullable=True)
    kind: Mapped[str] = mapped_column(String(32), default="reply")  # reply|notice|template
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    urgent: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sending|sent|delivered|dead|cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    provider_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ConversationLease(Base):
    """Cross-process ownership of one conversation while its messages are processed.

    A lease, not a held database lock: no connection is pinned while the dialogue runs,
    and a crashed process's lease simply expires.
    """

    __tablename__ = "conversation_leases"

    conversation_id: Mapped[str] = mapped_column(String(240), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
