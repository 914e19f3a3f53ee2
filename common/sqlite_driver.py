"""How the gateway drives SQLite: the tricks a benchmark showed pay, in one place.

- pragmas per connection (WAL, synchronous=NORMAL, a busy timeout, foreign keys);
- the one-hop cursor: a transaction's BEGIN IMMEDIATE travels with its first statement, and
  statements run inline on the event loop's thread (``_inline``) when the caller is in a
  greenlet marked direct (``common.db.in_transaction``), instead of a trip to aiosqlite's
  thread for each step — the WeChat benchmark's store CPU per message roughly halved;
- ``WalCheckpointer``: WAL checkpoints from a worker thread on a connection of its own, and a
  RESTART checkpoint once the WAL passes a size, so a sustained load neither stalls the loop
  nor grows the WAL without bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections import deque

from greenlet import getcurrent
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

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
        url = make_url(str(engine.url))
        self.path = _real_path(url.database) if url.get_backend_name() == "sqlite" else None
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
        from common.db import in_transaction  # the store helpers build on this module, not the reverse

        await in_transaction(self.engine, lambda conn: conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={pages}"))
