"""WeChat state shared by every gateway process: the 48-hour window ledger and the token cache.

The customer-service message API (客服消息) only reaches a user inside a window the user
opened: after a user message at most 5 messages within 48 hours; after a menu click, a follow
or a QR scan, 3 messages within 1 minute. The ledger keeps both grants per openid so the bot,
the agents and the notification work know whether free text can still reach a customer, and
fall back (template message → SMS → email) when it cannot.

The access token is cached in Redis when ``POWERBOT_REDIS_URL`` is set, otherwise in the
gateway store's shared ``cache_entries`` table, so every process shares one token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import DateTime, Integer, String, and_, bindparam, case, delete, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from channels.base import PlainStatement, SideWrite, Statement
from common.clock import utcnow
from common.db import CacheEntry, in_transaction, prebuilt
from common.db import GatewayBase as Base

log = logging.getLogger("powerbot.channels.wechat")

MESSAGE_WINDOW = timedelta(hours=48)
MESSAGE_QUOTA = 5
EVENT_WINDOW = timedelta(minutes=1)
EVENT_QUOTA = 3

ERR_WINDOW_CLOSED = "45015"  # response out of time limit
ERR_QUOTA_USED = "45047"  # out of response count limit


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


class WeChatWindow(Base):
    """Per-user customer-service window: two grants (user message; click/follow/scan)."""

    __tablename__ = "wechat_windows"

    openid: Mapped[str] = mapped_column(String(128), primary_key=True)
    msg_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    msg_left: Mapped[int] = mapped_column(Integer, default=0)
    evt_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    evt_left: Mapped[int] = mapped_column(Integer, default=0)
    subscribed: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


@dataclass(frozen=True, slots=True)
class WindowState:
    open: bool
    remaining: int
    until: datetime | None
    reason: str | None  # None when open, else ERR_WINDOW_CLOSED / ERR_QUOTA_USED


def _upsert_statement(dialect: str, values: dict[str, Any], update_cols: list[str]):  # type: ignore[no-untyped-def]
    """``INSERT .. ON CONFLICT (openid) DO UPDATE``, executed with ``values`` as parameters."""
    mod = postgresql if dialect == "postgresql" else sqlite
    table = WeChatWindow.__table__
    ins = mod.insert(table)
    return prebuilt(
        ins.on_conflict_do_update(index_elements=[table.c.openid], set_={c: ins.excluded[c] for c in update_cols}),
        "wechat-window-upsert", dialect, ",".join(values), ",".join(update_cols),
    )


def _consume_statement() -> Any:
    """One message off the event grant when it is open with room, else off the message grant:
    one UPDATE, matching no row when neither grant can give one."""
    t = WeChatWindow.__table__
    now = bindparam("b_now", type_=t.c.evt_until.type)
    evt_open = and_(t.c.evt_until > now, t.c.evt_left > 0)
    msg_open = and_(t.c.msg_until > now, t.c.msg_left > 0)
    return (
        update(t)
        .where(t.c.openid == bindparam("b_openid"), t.c.subscribed == 1, or_(evt_open, msg_open))
        .values(evt_left=case((evt_open, t.c.evt_left - 1), else_=t.c.evt_left),
                msg_left=case((evt_open, t.c.msg_left), else_=t.c.msg_left - 1))
    )


_CONSUME = _consume_statement()


class WindowLedger:
    """Counts what the customer-service API may still send to each user."""

    # A user chatting renews the same 48-hour grant with every message; within this many
    # seconds of a renewal by this process (and no message sent since) the write is skipped.
    # Another replica's sends in between can only make the ledger more cautious, never less.
    RENEW_COALESCE = timedelta(seconds=60)

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *,
                 prepare: Callable[[Any], Statement] = PlainStatement) -> None:
        """``prepare`` makes the upserts runnable (``ChannelContext.prepare``: the gateway's
        precompiled statements); each is built and prepared once per column set."""
        self.sessionmaker = sessionmaker
        self.prepare = prepare
        self._renewed: dict[str, datetime] = {}
        self._upserts: dict[tuple[tuple[str, ...], tuple[str, ...]], Statement] = {}
        self._consume: Statement | None = None

    def _upsert(self, values: dict[str, Any], update_cols: list[str]) -> Statement:
        key = (tuple(values), tuple(update_cols))
        stmt = self._upserts.get(key)
        if stmt is None:
            dialect = self.sessionmaker.kw["bind"].dialect.name
            stmt = self._upserts[key] = self.prepare(_upsert_statement(dialect, values, update_cols))
        return stmt

    async def _write(self, values: dict[str, Any], cols: list[str]) -> None:
        await self._run(self._upsert(values, cols), values)

    async def _run(self, stmt: Statement, values: Mapping[str, Any]) -> None:
        """One upsert in a transaction of its own."""
        params = dict(values)
        await in_transaction(self.sessionmaker.kw["bind"], lambda conn: stmt.run(conn, params))

    def renewal(self, openid: str, *, now: datetime | None = None) -> SideWrite | None:
        """The write that opens (or renews) the 48-hour grant of 5 messages for a user message,
        for the pipeline to run in the transaction storing that message; None when this
        process renewed it less than ``RENEW_COALESCE`` ago."""
        now = now or utcnow()
        last = self._renewed.get(openid)
        if last is not None and timedelta(0) <= now - last < self.RENEW_COALESCE:
            return None
        values = {"openid": openid, "msg_until": now + MESSAGE_WINDOW, "msg_left": MESSAGE_QUOTA,
                  "evt_left": 0, "subscribed": 1, "updated_at": now}
        stmt = self._upsert(values, ["msg_until", "msg_left", "subscribed", "updated_at"])
        return SideWrite(stmt, values, done=lambda: self._renewed_at(openid, now))

    def _renewed_at(self, openid: str, now: datetime) -> None:
        if len(self._renewed) > 50_000:
            self._renewed.clear()
        self._renewed[openid] = now

    async def user_message(self, openid: str, *, now: datetime | None = None) -> None:
        """A user message opens (or renews) the 48-hour grant of 5 messages (written now, in a
        transaction of its own: for a message the pipeline does not store)."""
        write = self.renewal(openid, now=now)
        if write is None:
            return
        await self._run(write.statement, write.params)
        if write.done is not None:
            write.done()

    async def user_event(self, openid: str, *, now: datetime | None = None) -> None:
        """A menu click, follow or scan opens the 1-minute grant of 3 messages."""
        now = now or utcnow()
        await self._write(
            {"openid": openid, "evt_until": now + EVENT_WINDOW, "evt_left": EVENT_QUOTA,
             "msg_left": 0, "subscribed": 1, "updated_at": now},
            ["evt_until", "evt_left", "subscribed", "updated_at"],
        )

    async def unsubscribed(self, openid: str, *, now: datetime | None = None) -> None:
        now = now or utcnow()
        self._renewed.pop(openid, None)
        await self._write(
            {"openid": openid, "msg_left": 0, "evt_left": 0, "subscribed": 0, "updated_at": now},
            ["msg_left", "evt_left", "subscribed", "updated_at"],
        )

    async def state(self, openid: str, *, now: datetime | None = None) -> WindowState:
        now = now or utcnow()
        async with self.sessionmaker() as session:
            row = await session.get(WeChatWindow, openid)
        if row is None or not row.subscribed:
            return WindowState(False, 0, None, ERR_WINDOW_CLOSED)
        remaining, until, any_time_left = 0, None, False
        for end, left in ((_aware(row.msg_until), row.msg_left), (_aware(row.evt_until), row.evt_left)):
            if end is not None and end > now:
                any_time_left = True
                if left > 0:
                    remaining += left
                    until = max(until, end) if until else end
        if remaining:
            return WindowState(True, remaining, until, None)
        return WindowState(False, 0, None, ERR_QUOTA_USED if any_time_left else ERR_WINDOW_CLOSED)

    async def consume(self, openid: str, *, now: datetime | None = None) -> str | None:
        """Take one message from an open grant (atomically). None = granted, else the refusal code.

        The short event grant is used first so the long message grant lasts. One prepared
        statement in a transaction of its own: this runs for every reply sent through the
        customer-service API (each deferred answer), where an ORM session cost several times
        more than the UPDATE itself."""
        now = now or utcnow()
        self._renewed.pop(openid, None)
        if self._consume is None:
            self._consume = self.prepare(_CONSUME)
        stmt = self._consume
        params = {"b_openid": openid, "b_now": now}
        taken = await in_transaction(self.sessionmaker.kw["bind"], lambda conn: stmt.run(conn, params).rowcount)
        if taken == 1:
            return None
        st = await self.state(openid, now=now)
        return st.reason or ERR_WINDOW_CLOSED

    async def refund(self, openid: str, *, now: datetime | None = None) -> None:
        """Give back one message after a send that failed before WeChat counted it."""
        now = now or utcnow()
        async with self.sessionmaker() as session, session.begin():
            for until_col, left_col, quota in (
                (WeChatWindow.msg_until, WeChatWindow.msg_left, MESSAGE_QUOTA),
                (WeChatWindow.evt_until, WeChatWindow.evt_left, EVENT_QUOTA),
            ):
                res = await session.execute(
                    update(WeChatWindow)
                    .where(WeChatWindow.openid == openid, until_col > now, left_col < quota)
                    .values({left_col: left_col + 1})
                )
                if res.rowcount == 1:
                    return

    async def close(self, openid: str) -> None:
        """WeChat said no (45015/45047): believe it until the user writes again."""
        self._renewed.pop(openid, None)
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(WeChatWindow).where(WeChatWindow.openid == openid).values(msg_left=0, evt_left=0)
            )


class TokenCache:
    """Shared access-token storage: Redis when configured, else the gateway store.

    Redis unreachable (down, restarting, wrong URL): warn and use the gateway store until a retry
    after ``REDIS_RETRY_SECONDS`` — the token is refetched if neither has it, never an error.
    """

    REDIS_RETRY_SECONDS = 10.0

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession] | None, redis_url: str | None) -> None:
        self.sessionmaker = sessionmaker
        self.redis_url = redis_url
        self._redis: Any = None
        self._redis_down_until = 0.0

    def _client(self) -> Any:
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(self.redis_url, socket_timeout=3, socket_connect_timeout=1)
        return self._redis

    def _use_redis(self) -> bool:
        import time

        return bool(self.redis_url) and time.monotonic() >= self._redis_down_until

    def _redis_failed(self, exc: BaseException) -> None:
        import time

        self._redis_down_until = time.monotonic() + self.REDIS_RETRY_SECONDS
        log.warning(
            "wechat token cache: Redis unavailable (%s); using the database for %.0f s",
            type(exc).__name__, self.REDIS_RETRY_SECONDS,
        )

    async def get(self, key: str) -> tuple[str, datetime] | None:
        if self._use_redis():
            try:
                raw = await self._client().get(key)
            except Exception as exc:  # noqa: BLE001 - degrade to the database
                self._redis_failed(exc)
            else:
                if not raw:
                    return None
                data = json.loads(raw)
                return data["token"], datetime.fromtimestamp(data["expires_at"], timezone.utc)
        if self.sessionmaker is None:
            return None
        async with self.sessionmaker() as session:
            row = await session.get(CacheEntry, key)
        if row is None or row.expires_at is None:
            return None
        return row.value, _aware(row.expires_at)  # type: ignore[return-value]

    async def set(self, key: str, token: str, expires_at: datetime) -> None:
        if self._use_redis():
            ttl = max(1, int((expires_at - utcnow()).total_seconds()))
            try:
                await self._client().set(
                    key, json.dumps({"token": token, "expires_at": expires_at.timestamp()}), ex=ttl
                )
                return
            except Exception as exc:  # noqa: BLE001 - degrade to the database
                self._redis_failed(exc)
        if self.sessionmaker is None:
            return
        async with self.sessionmaker() as session, session.begin():
            dialect = session.bind.dialect.name
            mod = postgresql if dialect == "postgresql" else sqlite
            stmt = mod.insert(CacheEntry).values(key=key, value=token, expires_at=expires_at)
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[CacheEntry.key], set_={"value": token, "expires_at": expires_at}
                )
            )

    async def discard(self, key: str, token: str) -> None:
        """Drop the cached token, but only if it is still the one that was refused."""
        if self._use_redis():
            try:
                client = self._client()
                raw = await client.get(key)
                if raw and json.loads(raw).get("token") == token:
                    await client.delete(key)
                return
            except Exception as exc:  # noqa: BLE001 - degrade to the database
                self._redis_failed(exc)
        if self.sessionmaker is None:
            return
        async with self.sessionmaker() as session, session.begin():
            await session.execute(delete(CacheEntry).where(CacheEntry.key == key, CacheEntry.value == token))

    async def close(self) -> None:
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except Exception:  # noqa: BLE001
                pass
            self._redis = None


__all__ = [
    "ERR_QUOTA_USED",
    "ERR_WINDOW_CLOSED",
    "TokenCache",
    "WeChatWindow",
    "WindowLedger",
    "WindowState",
]
