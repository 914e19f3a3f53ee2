"""The SMS channel's own tables in the gateway store: opt-outs and the parts of sent messages.

- ``sms_opt_outs``: one row per E.164 number that sent STOP / 退订 / TD. While the row exists
  no non-transactional SMS (notices) goes to that number.
- ``sms_parts``: one row per segment accepted by the provider, so a delivery report (which names
  the provider's id of one segment) can be folded into the status of the reply whose
  provider id is the segment group's ``batch_ref``. Kept ``retention_days`` (``PURGE_PARTS``):
  reports come within hours or days.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, Integer, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from channels.base import Purge
from common.clock import utcnow
from common.db import GatewayBase as Base
from common.db import in_transaction


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


async def purge_parts(engine: Any, cutoff: datetime, batch_size: int, dry_run: bool) -> int:
    """SMS segments older than the cutoff, oldest first by ``ix_sms_parts_created`` (the table
    is keyed by the provider's ids, in no order of age), a batch per transaction."""
    t = SmsPart.__table__
    old = t.c.created_at < cutoff
    if dry_run:
        return await in_transaction(engine, lambda conn: conn.execute(select(func.count()).where(old)).scalar_one())
    oldest = select(t.c.provider_id).where(old).order_by(t.c.created_at).limit(batch_size)
    deleted = 0
    while True:
        n = await in_transaction(engine, lambda conn: conn.execute(
            t.delete().where(t.c.provider_id.in_(oldest.scalar_subquery()))).rowcount)
        deleted += n
        if n < batch_size:
            return deleted
        await asyncio.sleep(0)  # let the hot path's transactions in between batches


PURGE_PARTS = Purge("sms_parts", "finished", purge_parts)
