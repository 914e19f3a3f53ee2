"""The bot's side of ``channels.base.ChannelStore``: what a channel may ask of the bot's store.

Channels never read or write ``inbound_messages`` or ``outbox`` themselves; the few things
beyond handing in a message (the pipeline's ``receive``) that they need — a dedupe lookup,
an inbound row the dialogue does not process, the parts of a split SMS, a reply of their
own for the outbox, a provider's delivery report, the REST poll — are answered here, by the
same rules (and through the same partial indexes) the rest of the bot uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import outbox
from bot.db import sql_const
from bot.models import InboundMessage, OutboxMessage
from channels.base import POLL_PROVIDER_ID, Message, Reply

POLL_PAGE = 100  # replies per poll


def poll_query(channel: str, sender: str, after: int):  # type: ignore[no-untyped-def]
    """A sender's polled replies after the cursor, by the partial index of the REST rows
    (``ix_outbox_rest_recipient``; the channel is a constant in the SQL: ``sql_const``)."""
    return (
        select(OutboxMessage)
        .where(
            OutboxMessage.channel == sql_const(channel),
            OutboxMessage.recipient_id == sender,
            OutboxMessage.id > after,
            OutboxMessage.status == "sent",
            OutboxMessage.provider_id == POLL_PROVIDER_ID,
        )
        .order_by(OutboxMessage.id)
        .limit(POLL_PAGE)
    )


def receipt_update(channel: str, provider_id: str, status: str, error: str | None):  # type: ignore[no-untyped-def]
    """The outbox row a provider's report is about takes the reported status, found by the
    partial index of the SMS rows (``ix_outbox_sms_provider``; the channel is a constant in
    the SQL: ``sql_const``)."""
    return (
        update(OutboxMessage)
        .where(
            OutboxMessage.channel == sql_const(channel),
            OutboxMessage.provider_id == provider_id,
            OutboxMessage.status.in_(("sent", "delivered")),
        )
        .values(status=status, last_error=error)
    )


class BotChannelStore:
    """``ChannelStore`` on the bot store. ``wake`` tells the outbox worker a row is due."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, wake: Callable[[], None] | None = None) -> None:
        self.sessionmaker = sessionmaker
        self.wake = wake or (lambda: None)

    async def seen(self, channel: str, sender_id: str, message_id: str) -> bool:
        async with self.sessionmaker() as session:
            row = await session.execute(
                select(InboundMessage.id).where(
                    InboundMessage.channel == channel, InboundMessage.sender_id == sender_id,
                    InboundMessage.dedupe_key == message_id,
                )
            )
            return row.first() is not None

    @staticmethod
    def _row(message: Message, now: datetime | None = None) -> InboundMessage:
        return InboundMessage(
            channel=message.channel, dedupe_key=message.message_id, sender_id=message.sender_id,
            conversation_id=message.conversation_id, kind=message.kind, text=message.text,
            payload=dict(message.metadata), status="done", attempts=0,
            **({"received_at": now, "processed_at": now} if now is not None else {}),
        )

    async def record(self, message: Message) -> bool:
        async with self.sessionmaker() as session, session.begin():
            try:
                async with session.begin_nested():
                    session.add(self._row(message))
            except IntegrityError:
                return False
        return True

    async def store_part(self, message: Message, *, retry_of: Callable[[Mapping[str, Any]], bool]) -> bool:
        now = datetime.now(timezone.utc)
        duplicate = False
        async with self.sessionmaker() as session, session.begin():
            row = (await session.execute(select(InboundMessage).where(
                InboundMessage.channel == message.channel, InboundMessage.sender_id == message.sender_id,
                InboundMessage.dedupe_key == message.message_id))).scalar_one_or_none()
            if row is None:
                try:
                    async with session.begin_nested():
                        session.add(self._row(message, now))
                except IntegrityError:
                    duplicate = True  # a concurrent retry of the same part
            elif retry_of(row.payload or {}):
                duplicate = True
            else:  # the key was used again by a later message: the newest part wins
                row.text, row.payload, row.received_at, row.processed_at = message.text, dict(message.metadata), now, now
        return duplicate

    async def parts(self, channel: str, sender_id: str, keys: Sequence[str], since: datetime) -> list[Mapping[str, Any]]:
        async with self.sessionmaker() as session:
            return list((await session.execute(select(InboundMessage.payload).where(
                InboundMessage.channel == channel, InboundMessage.sender_id == sender_id,
                InboundMessage.dedupe_key.in_(list(keys)), InboundMessage.received_at >= since))).scalars().all())

    async def last_inbound(self, channel: str, sender_id: str) -> Mapping[str, Any] | None:
        async with self.sessionmaker() as session:
            row = (
                await session.execute(
                    select(InboundMessage.payload)
                    .where(InboundMessage.channel == sql_const(channel),  # e.g. ix_inbound_email_conv
                           InboundMessage.conversation_id == f"{channel}:{sender_id}")
                    .order_by(InboundMessage.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
        return row if isinstance(row, dict) else None

    async def enqueue(self, reply: Reply, *, dedupe_key: str) -> None:
        async with self.sessionmaker() as session, session.begin():
            await outbox.enqueue(session, reply, conversation_id=f"{reply.channel}:{reply.recipient_id}",
                                 dedupe_key=dedupe_key)
        self.wake()

    async def delivery_report(self, channel: str, provider_id: str, status: str, error: str | None) -> bool:
        async with self.sessionmaker() as session, session.begin():
            res = await session.execute(receipt_update(channel, provider_id, status, error))
            return res.rowcount > 0

    async def poll(self, channel: str, recipient_id: str, after: int) -> tuple[list[Reply], int]:
        async with self.sessionmaker() as session:
            rows = (await session.execute(poll_query(channel, recipient_id, after))).scalars().all()
        cursor = max([after, *[r.id for r in rows]])
        if not rows and after == 0:
            # A fresh page starts after what was already delivered, but before anything
            # still waiting in the outbox (an agent's reply queued a moment ago).
            async with self.sessionmaker() as session:
                mine = (OutboxMessage.channel == sql_const(channel), OutboxMessage.recipient_id == recipient_id)
                first_pending = (
                    await session.execute(
                        select(func.min(OutboxMessage.id)).where(*mine, OutboxMessage.status == "pending")
                    )
                ).scalar_one_or_none()
                last = (await session.execute(select(func.max(OutboxMessage.id)).where(*mine))).scalar_one_or_none()
            if first_pending is not None:
                cursor = first_pending - 1
            elif last is not None:
                cursor = last
        return [Reply.from_dict(r.payload) for r in rows], cursor
