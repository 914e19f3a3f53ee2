"""Async engine factory shared by the bot store and the core store.

SQLite is the embedded default (WAL, so readers never block the single writer);
PostgreSQL via asyncpg is the scale-out store. Same models, other URL.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text, event, exc, text
from sqlalchemy.engine import Connection, make_url
from greenlet import getcurrent
from sqlalchemy.util import await_only, greenlet_spawn
from sqlalchemy.sql.cache_key import CacheKey
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_conn, _record, *, path: str | None = None) -> None:  # type: ignore[no-untyped-def]
    # We issue BEGIN ourselves (below), so the driver must not open transactions lazily.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    if path is not None and path in _CHECKPOINTED:
        cur.execute("PRAGMA wal_autocheckpoint=0")  # a WalCheckpointer does it, off the loop
    # 0 on the inline path: a locked file is waited for on the driver's thread (``_inline``);
    # a connection without the inline cursor keeps the normal busy timeout
    busy = 0 if type(dbapi_conn) in _FAST_CLASSES.values() else _THREAD_BUSY_TIMEOUT_MS
    cur.execute(f"PRAGMA busy_timeout={busy}")
    cur.close()


# The busy timeout of the inline path: a statement that finds the file locked by another
# process is not waited for on the event loop; it goes to the driver's thread, which waits.
_THREAD_BUSY_TIMEOUT_MS = 30_000


def _is_busy(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and (
        "locked" in str(error) or getattr(error, "sqlite_errorcode", None) in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
    )


def _inline(inner, fn):  # type: ignore[no-untyped-def]
    """Run ``fn`` (a call on the sqlite3 connection) on the event loop's own thread.

    A statement on a local SQLite file in WAL mode with ``synchronous=NORMAL`` takes a few
    microseconds; a trip to aiosqlite's thread costs ~100 us of CPU (queue, futex wake-ups,
    self-pipe, an event-loop iteration) and, while the loop is busy, waits for the GIL for up
    to the 5 ms switch interval. Every trip of a turn paid that, so the trips, not SQLite,
    bounded throughput and latency. Only when the file is locked by another process
    (SQLITE_BUSY: a CLI command writing, a second gateway by mistake) is the call handed to the
    driver's thread, which waits for the lock with the normal busy timeout instead of blocking
    the loop. Inside ``in_transaction`` nothing more is needed; elsewhere the result is still
    awaited through SQLAlchemy's greenlet bridge (two switches, no loop iteration, ~30 us)
    because the async API insists that a statement awaited something."""
    try:
        result = fn()
    except sqlite3.OperationalError as error:
        if not _is_busy(error):
            raise
        return await_only(_on_thread(inner, fn))
    if getattr(getcurrent(), "_powerbot_direct", False):
        return result
    return await_only(_ready(result))


async def _ready(value):  # type: ignore[no-untyped-def]
    return value


async def _on_thread(inner, fn):  # type: ignore[no-untyped-def]
    """Run ``fn`` on the driver's thread, waiting for another process's lock there."""
    raw = inner._conn

    def waiting():  # type: ignore[no-untyped-def]
        raw.execute(f"PRAGMA busy_timeout={_THREAD_BUSY_TIMEOUT_MS}")
        try:
            return fn()
        finally:
            raw.execute("PRAGMA busy_timeout=0")

    return await inner._execute(waiting)


class _OneHopCursor:
    """Cursor for SQLAlchemy's aiosqlite adapter that runs a statement in one call on the
    sqlite3 connection (cursor + execute + fetchall + close) on the event loop's thread
    (``_inline``), where the stock adapter makes four trips to the driver's thread."""

    server_side = False

    def __init__(self, adapt_connection) -> None:  # type: ignore[no-untyped-def]
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection  # aiosqlite.Connection
        self.await_ = adapt_connection.await_
        self.arraysize = 1
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.description = None
        self._rows: deque = deque()

    async def _async_soft_close(self) -> None:
        return

    def close(self) -> None:
        self._rows.clear()

    def _run(self, many: bool, operation, parameters):  # type: ignore[no-untyped-def]
        raw = self._connection._conn  # the sqlite3 connection, used only on the driver's thread

        begin = getattr(self._connection, "_powerbot_begin", None)
        if begin:
            self._connection._powerbot_begin = None

        def work():  # type: ignore[no-untyped-def]
            cur = raw.cursor()
            try:
                if many:
                    cur.executemany(operation, parameters)
                elif parameters is None:
                    cur.execute(operation)
                else:
                    cur.execute(operation, parameters)
                desc = cur.description
                return desc, (cur.fetchall() if desc else None), cur.lastrowid, cur.rowcount
            finally:
                cur.close()

        try:
            if begin:
                # the transaction's deferred BEGIN: the only statement that waits for another
                # process's write lock (in WAL mode, once it is taken, nothing else does)
                _inline(self._connection, lambda: raw.execute(begin))
            desc, rows, lastrowid, rowcount = _inline(self._connection, work)
        except Exception as error:  # noqa: BLE001 - mapped to SQLAlchemy's DBAPI errors
            self._adapt_connection._handle_exception(error)
        if desc:
            self.description = desc
            self.lastrowid = self.rowcount = -1
            self._rows = deque(rows)
        else:
            self.description = None
            self.lastrowid = lastrowid
            self.rowcount = rowcount

    def execute(self, operation, parameters=None):  # type: ignore[no-untyped-def]
        self._run(False, operation, parameters)

    def executemany(self, operation, seq_of_parameters):  # type: ignore[no-untyped-def]
        self._run(True, operation, seq_of_parameters)

    def setinputsizes(self, *inputsizes) -> None:  # type: ignore[no-untyped-def]
        pass

    def __iter__(self):  # type: ignore[no-untyped-def]
        while self._rows:
            yield self._rows.popleft()

    def fetchone(self):  # type: ignore[no-untyped-def]
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size=None):  # type: ignore[no-untyped-def]
        rr = self._rows
        return [rr.popleft() for _ in range(min(size or self.arraysize, len(rr)))]

    def fetchall(self):  # type: ignore[no-untyped-def]
        retval = list(self._rows)
        self._rows.clear()
        return retval


def _one_hop_cursors(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    """Give this adapted aiosqlite connection the one-trip cursor (when the driver internals
    it relies on are there; otherwise the stock cursor stays)."""
    inner = getattr(dbapi_conn, "_connection", None)
    if not (hasattr(inner, "_execute") and hasattr(inner, "_conn")):
        return
    base = type(dbapi_conn)
    fast = _FAST_CLASSES.get(base)
    if fast is None:

        def cursor(self, server_side: bool = False):  # type: ignore[no-untyped-def]
            if server_side:
                _flush_begin(self)
                return base.cursor(self, server_side)
            return _OneHopCursor(self)

        def commit(self):  # type: ignore[no-untyped-def]
            inner = self._connection
            if getattr(inner, "_powerbot_begin", None):
                inner._powerbot_begin = None  # nothing ran: nothing to commit
                return
            try:
                _inline(inner, inner._conn.commit)
            except Exception as error:  # noqa: BLE001 - mapped to SQLAlchemy's DBAPI errors
                self._handle_exception(error)

        def rollback(self):  # type: ignore[no-untyped-def]
            inner = self._connection
            if getattr(inner, "_powerbot_begin", None):
                inner._powerbot_begin = None
                return
            try:
                _inline(inner, inner._conn.rollback)
            except Exception as error:  # noqa: BLE001
                self._handle_exception(error)

        fast = _FAST_CLASSES[base] = type(
            f"OneHop{base.__name__}", (base,),
            {"__slots__": (), "cursor": cursor, "commit": commit, "rollback": rollback},
        )
    dbapi_conn.__class__ = fast


_FAST_CLASSES: dict[type, type] = {}


def _flush_begin(adapted) -> None:  # type: ignore[no-untyped-def]
    """Issue a deferred BEGIN now (before a statement that does not go through the one-trip cursor)."""
    inner = adapted._connection
    begin = getattr(inner, "_powerbot_begin", None)
    if begin:
        inner._powerbot_begin = None
        raw = inner._conn
        adapted.await_(inner._execute(lambda: raw.execute(begin)))


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    # BEGIN IMMEDIATE takes the write lock up front. A deferred transaction that reads and
    # then writes fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT) when another
    # writer committed in between — the busy timeout does not apply to that upgrade.
    # With the one-trip cursor the BEGIN travels with the transaction's first statement (one
    # trip to the driver's thread less per transaction; a transaction that runs no statement
    # costs no trip at all); otherwise it is sent at once.
    adapted = conn.connection.dbapi_connection
    inner = getattr(adapted, "_connection", None)
    if type(adapted) in _FAST_CLASSES.values() and inner is not None:
        inner._powerbot_begin = "BEGIN IMMEDIATE"
        return
    conn.exec_driver_sql("BEGIN IMMEDIATE")


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


def _real_path(path: str | None) -> str | None:
    return os.path.realpath(path) if path and path != ":memory:" and not path.startswith("file:") else None


# SQLite files whose automatic checkpoint is off because a WalCheckpointer runs for them
# (path -> number of running checkpointers)
_CHECKPOINTED: dict[str, int] = {}
_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default


class WalCheckpointer:
    """Checkpoints a SQLite WAL from a worker thread, on its own connection.

    With statements on the event loop's thread (``_inline``), SQLite's automatic checkpoint ran
    inside whichever commit took the WAL past 1000 pages: it copies the pages into the database
    file and fsyncs it — 5 to 50 ms during which the loop served nobody (measured in the WeChat
    benchmark: 43 of 6,087 commits took 5 ms or more, two thirds of all commit time). While a
    checkpointer runs, the gateway's connection does no automatic checkpoint; PASSIVE
    checkpoints here never block a writer, and their fsync waits in a thread.

    Under sustained load a PASSIVE checkpoint never catches up with the writer, and SQLite only
    starts the WAL again from its beginning after a checkpoint that copied every frame: the WAL
    grew without end (300 MB in a 30-second benchmark, beside a 27 MB database). So once the
    WAL holds more than ``restart_frames`` frames, the checkpointer runs a RESTART checkpoint:
    it holds off new write transactions for the few frames the PASSIVE one left (the loop's
    statements then wait on the driver's thread, as for any lock) and the next writer starts
    the WAL again from its first frame."""

    RESTART_WAIT = 0.05  # seconds

    def __init__(self, engine: AsyncEngine, *, interval: float = 0.2, restart_frames: int | None = 4096) -> None:
        self.path = _real_path(make_url(str(engine.url)).database) if is_sqlite(str(engine.url)) else None
        self.engine, self.interval, self.restart_frames = engine, interval, restart_frames
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # one checkpoint at a time on the connection, and never a close during one (a thread
        # cannot be cancelled: a stop waits for the checkpoint in progress)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.checkpoints = 0

    async def start(self) -> None:
        if self.path is None or self._task is not None:
            return
        _CHECKPOINTED[self.path] = _CHECKPOINTED.get(self.path, 0) + 1
        await self._set_autocheckpoint(0)  # a connection opened before the start
        # A PASSIVE checkpoint never waits; a RESTART one holds off writers while it waits for
        # readers, so it waits at most RESTART_WAIT and tries again next round rather than
        # stall the gateway's writes behind another process's long read.
        self._conn = sqlite3.connect(self.path, timeout=self.RESTART_WAIT, check_same_thread=False, isolation_level=None)
        self._stopping = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is None or self.path is None:
            return
        self._stopping.set()
        await asyncio.gather(self._task, return_exceptions=True)  # lets a running checkpoint end
        self._task = None
        try:
            left = _CHECKPOINTED[self.path] = _CHECKPOINTED[self.path] - 1
            if not left:
                del _CHECKPOINTED[self.path]
                await self._set_autocheckpoint(_AUTOCHECKPOINT_PAGES)
            await asyncio.to_thread(self.checkpoint_now)
        finally:
            with self._lock:
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.close()

    def checkpoint_now(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint (on the calling thread), then a RESTART one if the WAL has
        grown past ``restart_frames``: (busy, WAL frames, frames checkpointed)."""
        with self._lock:
            if self._conn is None:
                return 0, 0, 0
            busy, frames, done = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if self.restart_frames is not None and frames > self.restart_frames:
                busy, frames, done = self._conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                self.restarts += 1
            return busy, frames, done

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), self.interval)
                return
            except asyncio.TimeoutError:
                pass
            try:
                await asyncio.to_thread(self.checkpoint_now)
            except sqlite3.Error as exc:  # a locked or busy file: the next round tries again
                logging.getLogger(__name__).warning("wal checkpoint failed: %s", exc)

    async def _set_autocheckpoint(self, pages: int) -> None:
        await in_transaction(self.engine, lambda conn: conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={pages}"))


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


def unnest_rows(table, columns: dict):  # type: ignore[no-untyped-def]
    """``SELECT unnest(:arr_a) AS a, unnest(:arr_b) AS b ...`` over one array per column
    (``{column name: values}``, same length): a PostgreSQL group write binds one array per
    column instead of one parameter per value or one execution per row."""
    from sqlalchemy import bindparam, func, select
    from sqlalchemy.dialects.postgresql import ARRAY

    return select(*(
        func.unnest(bindparam(f"arr_{name}", values, type_=ARRAY(table.c[name].type))).label(name)
        for name, values in columns.items()
    ))


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
