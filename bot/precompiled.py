"""The turn's hot statements, compiled once and run straight on the driver's cursor.

``Connection.execute`` costs 50-90 us of CPU per statement on this box (cache key, execution
context, parameter dictionaries, result object, events) against ~10 us for sqlite3 itself; a
WeChat message runs about five fixed statements (inbound insert, snapshot read, tracker update,
event insert, outbox insert, inbound close), so SQLAlchemy's execution layer was about a fifth
of the gateway's CPU per message. These statements never change shape: compiling them once
(per set of parameter keys) and keeping SQLAlchemy's own bind and result processors gives
exactly the SQL and the stored values ``Connection.execute`` would, for a fraction of the work.

SQLite and PostgreSQL (asyncpg) take the direct path: SQLite's driver cursor is the gateway's
one-trip cursor (it also sends the transaction's deferred BEGIN and hands a locked file to the
driver's thread); asyncpg's is SQLAlchemy's own adapter cursor, which begins the transaction
and keeps asyncpg's prepared statements, so only the execution layer above it is skipped (on
PostgreSQL a third of the gateway's CPU per statement went there). A failure is handled as
``Connection.execute`` handles it (a lost connection is invalidated, the error wrapped), and
``before_cursor_execute`` listeners still see each statement (the statement counter; their
``context`` is None). Other
backends run the same statements through ``Connection.execute`` and get the same ``Rows``.
Statements run here are not seen by SQLAlchemy's ``echo``.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exc
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from common.db import unnest_rows

@dataclass(slots=True)
class Rows:
    """What a statement gave: rows as tuples (result processors applied) and the row count."""

    rows: list[tuple[Any, ...]]
    rowcount: int

    def all(self) -> list[tuple[Any, ...]]:
        return self.rows

    def first(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


def _default_value(default: Any) -> Any:
    """A column's Python default for one row (SQLAlchemy wraps callables to take a context)."""
    return default.arg(None) if default.is_callable else default.arg


def _result_rows(res: Any, named: bool = False) -> Rows:
    """``Rows`` of a ``Connection.execute`` result (the path of the other backends)."""
    if not res.returns_rows:
        return Rows([], res.rowcount)
    return Rows(list(res.all()) if named else [tuple(r) for r in res.all()], res.rowcount)


@dataclass(slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the bound parameters, in the SQL's positional order
    processors: tuple[Callable[[Any], Any] | None, ...]  # their bind processors
    fixed: dict[str, Any]  # values of the parameters the statement itself gives
    defaults: tuple[tuple[str, Any], ...]  # (key, Column default) for columns missing from the rows
    results: tuple[Callable[[Any], Any] | None, ...] | None  # per result column; None: no rows
    expanding: tuple[tuple[str, tuple[str, ...]], ...] = ()  # list parameter -> its rendered names
    row_type: Callable[..., tuple[Any, ...]] | None = None  # named rows (``Precompiled(named=True)``)

    def bind(self, values: dict[str, Any]) -> tuple[Any, ...]:
        merged = {**self.fixed, **values} if self.fixed else values
        if self.defaults or self.expanding:
            merged = dict(merged)
            for key, default in self.defaults:
                merged[key] = _default_value(default)
            for name, names in self.expanding:
                merged.update(zip(names, merged[name]))
        try:
            ordered = [merged[name] for name in self.names]
        except KeyError as missing:
            raise exc.ArgumentError(f"missing value for bind parameter {missing.args[0]!r}") from None
        # every value through its processor, None too (JSON stores 'null')
        return tuple([v if p is None else p(v) for p, v in zip(self.processors, ordered)])

    def rows(self, raw: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        procs, make = self.results, self.row_type
        if not procs or not any(procs):
            return [make(*r) for r in raw] if make is not None else [tuple(r) for r in raw]
        done = [tuple(p(v) if p is not None else v for p, v in zip(procs, r)) for r in raw]
        return [make(*r) for r in done] if make is not None else done


def _compile(stmt: Any, conn: Connection, keys: Sequence[str] | None, sample: dict[str, Any],
             named: bool = False) -> _Compiled:
    """Compile for ``conn``'s dialect; ``sample`` (an execution's parameters) gives the lengths of
    the lists of expanding ``IN`` parameters, which the SQL is rendered for."""
    dialect = conn.dialect
    # for_executemany: an INSERT run for many rows gets no implicit RETURNING of its key
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None,
                            for_executemany=not isinstance(sample, dict))
    if compiled.positiontup is None:
        raise exc.ArgumentError("precompiled statements need a positional paramstyle")
    required = {name for name, bind in compiled.binds.items() if bind.required}
    sql, order = compiled.string, compiled.positiontup
    processors, fixed = compiled._bind_processors, compiled.construct_params(_check=False)
    expanding: tuple[tuple[str, tuple[str, ...]], ...] = ()
    if compiled.post_compile_params:
        # ``IN (<list>)`` renders late: render it now, for a constant list once, for a list
        # given per execution once per length (the caller keys its cache by the lengths)
        lists = [bind.key for bind in compiled.post_compile_params if bind.required]
        if lists and not isinstance(sample, dict):
            raise exc.ArgumentError("an expanding IN cannot run as executemany")
        state = compiled.construct_expanded_state(
            {**{name: None for name in required}, **{name: sample[name] for name in lists}})
        sql, order, processors, fixed = state.statement, state.positiontup, state.processors, state.parameters
        expanding = tuple((name, tuple(state.parameter_expansion[name])) for name in lists)
        required -= set(lists)
    processors = {name: _faster(compiled.binds.get(name), dialect, fn) for name, fn in processors.items()}
    defaults: list[tuple[str, Any]] = []
    for col in list(compiled.insert_prefetch) + list(compiled.update_prefetch):
        default = col.default if col in compiled.insert_prefetch else col.onupdate
        if default is None or not (default.is_scalar or default.is_callable):
            raise exc.ArgumentError(f"column {col.key!r} needs a value: its default cannot be precomputed")
        defaults.append((col.key, default))
    results = None
    if compiled._result_columns:
        results = tuple(
            entry.type._cached_result_processor(dialect, None) for entry in compiled._result_columns
        )
    row_type = None
    if named and compiled._result_columns:
        row_type = namedtuple("Row", [entry.keyname for entry in compiled._result_columns])  # type: ignore[misc]
    return _Compiled(
        sql, tuple(order), tuple(processors.get(name) for name in order),
        {name: fixed.get(name) for name in order if name not in required},
        tuple(defaults), results, expanding, row_type,
    )


_SQLITE_DATETIME_FORMAT = sqlite.DATETIME()._storage_format


def _faster(bind: Any, dialect: Any, process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """SQLite's DATETIME processor builds a dict and %-formats it for every value; for a
    ``datetime`` (its default storage format) ``isoformat`` gives the same text for a quarter
    of the CPU. Everything else keeps SQLAlchemy's processor."""
    if bind is None or dialect.name != "sqlite":
        return process
    impl = bind.type.dialect_impl(dialect)
    if not (isinstance(impl, sqlite.DATETIME) and impl._storage_format == _SQLITE_DATETIME_FORMAT):
        return process

    last: list[Any] = [None, None]  # the rows of a write share their "now": format it once

    def datetime_text(value: Any) -> Any:
        if value is last[0]:
            return last[1]
        if type(value) is datetime:
            text = value.replace(tzinfo=None).isoformat(" ", "microseconds")
            last[:] = value, text  # datetimes are immutable: the same object, the same text
            return text
        return process(value)

    return datetime_text


def _bucket(n: int) -> int:
    """The smallest power of two >= n: the lengths an expanding ``IN`` is rendered for."""
    return 1 << max(0, n - 1).bit_length()


def _pieces(n: int, largest: int) -> list[int]:
    """``n`` as a sum of powers of two, at most ``largest`` each, largest first: the chunk sizes
    of a multi-row insert, so that one statement per power of two is ever compiled."""
    out = [largest] * (n // largest)
    rest = n % largest
    while rest:
        top = 1 << (rest.bit_length() - 1)
        out.append(top)
        rest -= top
    return out


def _direct(conn: Connection) -> bool:
    dialect = conn.dialect
    return dialect.name == "sqlite" or dialect.driver == "asyncpg"


def _run(conn: Connection, compiled: _Compiled, rows: list[tuple[Any, ...]] | tuple[Any, ...], many: bool) -> Rows:
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if conn.dispatch.before_cursor_execute:
            conn.dispatch.before_cursor_execute(conn, cursor, compiled.sql, rows, None, many)
        if many:
            cursor.executemany(compiled.sql, rows)
        else:
            cursor.execute(compiled.sql, rows)
        raw = cursor.fetchall() if compiled.results is not None else []
        return Rows(compiled.rows(raw), cursor.rowcount)
    except BaseException as error:  # noqa: BLE001 - as Connection.execute: a cancelled query invalidates too
        conn._handle_dbapi_exception(error, compiled.sql, rows, cursor, None)
    finally:
        cursor.close()


class Precompiled:
    """A fixed Core statement: one parameter dict runs it once, a list of dicts runs it for each
    (``executemany``; no RETURNING and no expanding ``IN`` then). An expanding ``IN`` is
    rendered for lengths that are powers of two, its list padded by repeating its last value
    (the same set): the group writes' lists have every length, and each length was a compile
    of its own (~1 ms) and an entry in SQLite's statement cache. ``rowcount`` is the total."""

    def __init__(self, stmt: Any, *, named: bool = False) -> None:
        self.stmt = stmt
        self.named = named  # rows as named tuples (attribute access, like SQLAlchemy's Row)
        self._compiled: dict[tuple[str, bool, tuple[str, ...], tuple[int, ...]], _Compiled] = {}
        self._lists: tuple[str, ...] = ()  # expanding IN parameters (known after the first compile)

    def _for(self, conn: Connection, values: dict[str, Any], many: bool) -> _Compiled:
        keys = tuple(values)
        key = (conn.dialect.name, many, keys, tuple(len(values[name]) for name in self._lists))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = _compile(self.stmt, conn, keys if self.stmt.is_insert else None, [values] if many else values,
                                self.named)
            self._lists = tuple(name for name, _ in compiled.expanding)
            key = (conn.dialect.name, many, keys, tuple(len(values[name]) for name in self._lists))
            self._compiled[key] = compiled
        return compiled

    def run(self, conn: Connection, params: dict[str, Any] | list[dict[str, Any]]) -> Rows:
        if not _direct(conn):
            return _result_rows(conn.execute(self.stmt, params), named=self.named)
        if isinstance(params, dict):
            for name in self._lists:
                values = params[name]
                if values and (pad := _bucket(len(values)) - len(values)):
                    params = {**params, name: [*values, *[values[-1]] * pad]}
            compiled = self._for(conn, params, many=False)
            return _run(conn, compiled, compiled.bind(params), many=False)
        if not params:
            return Rows([], 0)
        compiled = self._for(conn, params[0], many=True)
        if compiled.results is not None:
            raise exc.ArgumentError("executemany cannot return rows; use InsertReturning")
        return _run(conn, compiled, [compiled.bind(p) for p in params], many=True)


class InsertReturning:
    """``INSERT .. VALUES (..), (..) [ON CONFLICT (..) DO NOTHING] RETURNING ..`` for a list of
    rows (every row with the same keys), one statement per chunk — what SQLAlchemy's
    "insertmanyvalues" sends. Chunks have power-of-two sizes (``_pieces``: 107 rows are 64 +
    32 + 8 + 2 + 1), so eight statements serve every batch instead of one compile per size.
    On PostgreSQL one statement of any size instead: ``INSERT .. SELECT unnest(<array per
    column>) ..`` (one prepared statement, one round trip for every batch; chunks were a round
    trip each). ``fallback(conn)`` gives the statement other backends execute with the list of
    rows."""

    CHUNK = 128  # rows per statement at most (a power of two): well inside SQLite's 32,766 bound parameters

    def __init__(self, table: Any, returning: Sequence[str], *, conflict: Sequence[str] | None,
                 fallback: Callable[[Connection], Any]) -> None:
        self.table = table
        self.returning = tuple(returning)
        self.conflict = tuple(conflict) if conflict else None
        self.fallback = fallback
        self._compiled: dict[tuple[str, tuple[str, ...], int], _Compiled] = {}
        defaults = {c.key: c.default for c in table.c if c.default is not None}
        for key, default in defaults.items():
            if not (default.is_scalar or default.is_callable):
                raise exc.ArgumentError(f"column {key!r}: its default cannot be precomputed")
        self._defaults = defaults

    def _for(self, conn: Connection, keys: tuple[str, ...], n: int) -> _Compiled:
        compiled = self._compiled.get((conn.dialect.name, keys, n))
        if compiled is None:
            from sqlalchemy.dialects.postgresql import insert as pg_insert
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
            cols = list(keys) + [k for k in self._defaults if k not in keys]
            values = [{c: bindparam(f"{c}__{i}", type_=self.table.c[c].type) for c in cols} for i in range(n)]
            stmt = insert(self.table).values(values)
            if self.conflict:
                stmt = stmt.on_conflict_do_nothing(index_elements=list(self.conflict))
            stmt = stmt.returning(*(self.table.c[c] for c in self.returning))
            compiled = self._compiled[(conn.dialect.name, keys, n)] = _compile(stmt, conn, None, {})
        return compiled

    def _unnest_for(self, conn: Connection, cols: tuple[str, ...]) -> _Compiled:
        compiled = self._compiled.get((conn.dialect.name, cols, 0))
        if compiled is None:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(self.table).from_select(list(cols), unnest_rows(self.table, cols))
            if self.conflict:
                stmt = stmt.on_conflict_do_nothing(index_elements=list(self.conflict))
            stmt = stmt.returning(*(self.table.c[c] for c in self.returning))
            compiled = self._compiled[(conn.dialect.name, cols, 0)] = _compile(stmt, conn, None, {})
        return compiled

    def _run_unnest(self, conn: Connection, rows: list[dict[str, Any]]) -> Rows:
        keys = tuple(rows[0])
        cols = keys + tuple(k for k in self._defaults if k not in keys)
        columns: dict[str, list[Any]] = {f"arr_{k}": [] for k in cols}
        for row in rows:
            if len(row) != len(keys):
                raise exc.ArgumentError("every row of an InsertReturning needs the same keys")
            for k in keys:
                columns[f"arr_{k}"].append(row[k])
        for k in cols[len(keys):]:
            columns[f"arr_{k}"] = [_default_value(self._defaults[k]) for _ in rows]
        compiled = self._unnest_for(conn, cols)
        got = _run(conn, compiled, compiled.bind(columns), many=False)
        return Rows(got.rows, len(got.rows))

    def run(self, conn: Connection, rows: list[dict[str, Any]]) -> Rows:
        if not rows:
            return Rows([], 0)
        if not _direct(conn):
            return _result_rows(conn.execute(self.fallback(conn), rows))
        if conn.dialect.name == "postgresql":
            return self._run_unnest(conn, rows)
        keys = tuple(rows[0])
        missing = [(k, d) for k, d in self._defaults.items() if k not in keys]
        out: list[tuple[Any, ...]] = []
        total = 0
        start = 0
        for size in _pieces(len(rows), self.CHUNK):
            chunk = rows[start:start + size]
            start += size
            compiled = self._for(conn, keys, len(chunk))
            flat: dict[str, Any] = {}
            for i, row in enumerate(chunk):
                if len(row) != len(keys):
                    raise exc.ArgumentError("every row of an InsertReturning needs the same keys")
                for k in keys:
                    flat[f"{k}__{i}"] = row[k]
                for k, d in missing:
                    flat[f"{k}__{i}"] = _default_value(d)
            got = _run(conn, compiled, compiled.bind(flat), many=False)
            out += got.rows
            total += len(got.rows)
        return Rows(out, total)
