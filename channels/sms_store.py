"""Bot-store tables of the SMS channel: opt-outs and the parts of sent messages.

- ``sms_opt_outs``: one row per E.164 number that sent STOP / 退订 / TD. While the row exists
  no non-transactional SMS (notices) goes to that number.
- ``sms_parts``: one row per segment accepted by the provider, so a delivery report (which names
  the provider's id of one segment) can be folded into the status of the outbox row whose
  ``provider_id`` is the segment group's ``batch_ref``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.models import Base, utcnow


class SmsOptOut(Base):
    __tablename__ = "sms_opt_outs"

    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    keyword: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SmsPart(Base):
    __tablename__ = "sms_parts"
    __table_args__ = (Index("ix_sms_parts_batch", "batch_ref"), Index("ix_sms_parts_created", "created_at"))

    provider_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    batch_ref: Mapped[str] = mapped_column(String(64))
    part: Mapped[int] = mapped_column(Integer)
    parts: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="sent")  # sent|delivered|failed
    error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
