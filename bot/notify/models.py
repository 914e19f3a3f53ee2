"""Bot-store table of the notification pipeline: the persisted event-feed cursor."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.models import Base, utcnow


class NotifyCursor(Base):
    """Where a producer stopped reading the core's change feed (one row per feed name).

    ``position`` is the numeric event id behind the opaque ``cursor`` so concurrent producers
    (several gateway processes) only ever move it forward.
    """

    __tablename__ = "notify_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
