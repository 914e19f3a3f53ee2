"""Async engine factory shared by the bot store and the core store.

SQLite is the embedded default (WAL, so readers never block the single writer);
PostgreSQL via asyncpg is the scale-out store. Same models, other URL. How SQLite is driven
(pragmas, the one-hop cursor, WAL checkpoints) is in ``common.sqlite_driver``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text, event, exc, text
from sqlalchemy.engine import Connection, make_url
from greenlet import getcurrent
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.sql.cache_key import CacheKey
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.sqlite_driver import (  # noqa: F401 - WalCheckpointer re-exported for the stores' wiring
    WalCheckpointer, _one_hop_cursors, _real_path, _sqlite_begin, _sqlite_pragmas,
)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def json_text(value: Any) -> str:
    """JSON columns' serializer: orjson (UTF-8 text, no ``\\u`` escapes; 5-10x faster than the
    standard library, which the turn's event rows, replies and inbound payloads all paid).
    Non-string keys are written as strings, as ``json.dumps`` does."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def json_value(text: str | bytes) -> Any:
    """JSON columns' deserializer: orjson (the snapshot's tracker state, payloads and event
    data are read on every turn), falling back to the standard library for what orjson
    refuses and ``json.loads`` accepts (``NaN``, ``Infinity`` in rows written before orjson
    was the serializer)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def make_engine(url: str, *, pool_size: int = 16, max_overflow: int = 0, echo: bool = False) -> AsyncEngine:
    """Create an engine with the pragmas / pool settings each backend needs."""
    if is_sqlite(url):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One connection per process: SQLite has one writer anyway, and a queue in front of a
        # single connection is far faster than many connections fighting over the file lock
        # (SQLite's busy handler sleeps up to 100 ms per retry). Code must therefore never
        # open a second session while holding one.
        # No reset-on-return: sessions and connections end their own transactions, and the
        # extra ROLLBACK would keep the one connection checked out for another loop trip.
        engine = create_async_engine(
            # check_same_thread off: the connection is opened on aiosqlite's thread and used
            # on the loop's thread (``_inline``), never by both at once (one checkout at a time)
            url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=1, max_overflow=0, pool_timeout=60,
            pool_reset_on_return=None, json_serializer=json_text, json_deserializer=json_value,
        )
        event.listen(engine.sync_engine, "connect", _one_hop_cursors)
        event.listen(engine.sync_engine, "connect", functools.partial(_sqlite_pragmas, path=_real_path(path)))
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        json_serializer=json_text,
        json_deserializer=json_value,
    )
    _ping_idle_connections(engine)
    return engine


# A pooled connection used within this many seconds is not pinged when checked out again.
PING_IDLE_SECONDS = 5.0


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Pessimistic disconnect handling for connections that sat idle, not for busy ones.

    ``pool_pre_ping`` pings at every checkout — on asyncpg a BEGIN, a ``;`` and a ROLLBACK,
    three round trips for each of the ~2.2 checkouts of a WeChat message (counted), a third of
    its round trips. A connection checked in within the last ``PING_IDLE_SECONDS`` was just working; if
    the server dropped it since (a restart, ``pg_terminate_backend``), its next statement
    fails, SQLAlchemy invalidates it and every older connection of the pool, and the pipeline
    retries the message as for any transient error. An idle connection is pinged first; a
    failed ping makes the pool connect afresh (``DisconnectionError``)."""
    sync = engine.sync_engine

    def fresh(_dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        record.info["powerbot_used"] = time.monotonic()

    def checkout(dbapi_connection, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        used = record.info.get("powerbot_used")
        if used is not None and time.monotonic() - used < PING_IDLE_SECONDS:
            return
        try:
            alive = sync.dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 - any failure means: not usable
            raise exc.DisconnectionError(f"idle connection failed its ping: {error}") from error
        if not alive:
            raise exc.DisconnectionError("idle connection failed its ping")

    event.listen(sync, "connect", fresh)
    event.listen(sync, "checkout", checkout)
    event.listen(sync, "checkin", fresh)


def prebuilt(stmt, *token: str):  # type: ignore[no-untyped-def]
    """Give a statement built once at import (or once per backend) a fixed cache key.

    The dialects' ``INSERT .. ON CONFLICT`` constructs have no cache key in SQLAlchemy 2.0
    (``inherit_cache = False``), so every execution compiles the statement again — a good part
    of a millisecond per inbound row, reply or window renewal. ``token`` must name the
    statement uniquely, and the statement must carry no literal values (every value comes in
    the execution parameters): then one compiled form per engine is right for every
    execution. Do not derive new statements from the result (``.values()``, ``.where()``...)."""
    key = CacheKey(("powerbot-prebuilt", *token), [])
    stmt._generate_cache_key = lambda: key
    return stmt


def sql_const(value: str):  # type: ignore[no-untyped-def]
    """A string constant written into the statement's text instead of bound.

    For the fixed status, kind and channel values of the queries partial indexes exist for
    (``WHERE status = 'pending'``). SQLite plans with the values bound before the first step,
    but PostgreSQL prepares each statement (asyncpg) and a generic plan cannot prove a
    partial index's condition from a parameter: with the constant in the text every plan
    can use the index."""
    from sqlalchemy import String, literal_column

    if not value.replace("_", "").isalnum():
        raise ValueError(f"not a plain constant: {value!r}")
    return literal_column(f"'{value}'", String())


def unnest_rows(table, columns):  # type: ignore[no-untyped-def]
    """``SELECT unnest(:arr_a) AS a, unnest(:arr_b) AS b ...`` over one array per column
    (``{column name: values}``, same length): a PostgreSQL group write binds one array per
    column instead of one parameter per value or one execution per row. Given only the column
    names, the arrays are left to each execution (a statement built once)."""
    from sqlalchemy import bindparam, func, select
    from sqlalchemy.dialects.postgresql import ARRAY

    if isinstance(columns, dict):
        binds = [bindparam(f"arr_{name}", values, type_=ARRAY(table.c[name].type)) for name, values in columns.items()]
    else:
        binds = [bindparam(f"arr_{name}", type_=ARRAY(table.c[name].type)) for name in columns]
    return select(*(func.unnest(b).label(b.key.removeprefix("arr_")) for b in binds))


T = TypeVar("T")


async def in_transaction(engine: AsyncEngine, work: Callable[[Connection], T]) -> T:
    """Run ``work(conn)`` — plain synchronous SQLAlchemy Core calls — in one transaction, in one
    greenlet. The async API spends a greenlet and its bookkeeping on every step (connect, begin,
    each execute, commit, close: ~100 us of CPU per transaction); the hot transactions of a turn
    (snapshot read, group writes) are fixed sequences of pre-built statements and need none of it."""

    def run() -> T:
        getcurrent()._powerbot_direct = True  # this greenlet's statements may skip the await (``_inline``)
        with engine.sync_engine.begin() as conn:
            return work(conn)

    return await greenlet_spawn(run)


async def each_committed(engine: AsyncEngine, work: Callable[[Connection], T]) -> T:
    """Run ``work(conn)`` with each statement committed on its own: for work whose statements
    are each complete alone (one ``WITH .. INSERT`` taking a lease and reading a row, a read
    under a held lease). On PostgreSQL that spares the BEGIN and the COMMIT, two of the
    handful of round trips a message costs; SQLite keeps the transaction (its BEGIN
    IMMEDIATE travels with the first statement anyway)."""
    if engine.dialect.name != "postgresql":
        return await in_transaction(engine, work)

    def run() -> T:
        getcurrent()._powerbot_direct = True
        with engine.sync_engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            return work(conn)

    return await greenlet_spawn(run)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


# --------------------------------------------------------------------------- gateway store tables
# The declarative base of the gateway's store lives here, not in ``bot``, so a channel can
# declare its own tables (the WeChat window ledger, SMS opt-outs) on the same metadata — one
# Alembic environment migrates them all — without importing the bot. The core has its own base.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def partial(condition: str) -> dict[str, Any]:
    """``Index`` keyword arguments for a partial index with the same condition on both stores."""
    return {"postgresql_where": text(condition), "sqlite_where": text(condition)}


class GatewayBase(DeclarativeBase):
    """Declarative base of every table in the gateway's store (``bot.models.Base``)."""

    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class CacheEntry(GatewayBase):
    """Small shared cache (platform access tokens, login locks...) when Redis is not configured."""

    __tablename__ = "cache_entries"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
