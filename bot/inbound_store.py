"""The inbound store: every statement of the message path's own tables — inbound rows, the
replies' outbox inserts, conversation leases — built once.

The pipeline decides when they run; this module is what they are. The hot ones are compiled
once and run straight on SQLite's cursor (``bot.precompiled``); the ``INSERT .. ON CONFLICT``
statements are pre-built (``bot.db.prebuilt``), which SQLAlchemy would otherwise compile on
every execution; on PostgreSQL taking a lease and reading the next row, or finishing a turn,
reading the next row and releasing the lease, are one statement each (one round trip).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, bindparam, delete, exists, func, literal, or_, select, text, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import prebuilt, sql_const
from bot.models import ConversationLease, InboundMessage, OutboxMessage
from bot.precompiled import InsertReturning, Precompiled


def dialect_name(session: Any) -> str:
    """Backend name of an ``AsyncSession`` or an ``AsyncConnection``."""
    if isinstance(session, AsyncSession):
        return session.bind.dialect.name
    return session.dialect.name


def dialect_insert(session: Any, table: Any) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support for the session's backend (SQLite / PostgreSQL)."""
    if dialect_name(session) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as ins
    else:
        from sqlalchemy.dialects.sqlite import insert as ins
    return ins(table)


_INSERT_STMTS: dict[tuple[str, str], Any] = {}


# the dedupe key of each table: an inbound message id is unique per sender (a REST client or a
# mail sender picks its own ids), an outbox key per channel
_DEDUPE = {
    InboundMessage.__tablename__: ("channel", "sender_id", "dedupe_key"),
    OutboxMessage.__tablename__: ("channel", "dedupe_key"),
}


def insert_stmt(session: AsyncSession, table: Any) -> Any:
    """``INSERT .. ON CONFLICT (<dedupe key>) DO NOTHING RETURNING id, <dedupe key>``, built
    once per backend and table and executed with a list of rows ("insertmanyvalues": one
    compiled statement from the cache, batched VALUES, duplicates simply not returned)."""
    key = (dialect_name(session), table.name)
    stmt = _INSERT_STMTS.get(key)
    if stmt is None:
        cols = _DEDUPE[table.name]
        stmt = _INSERT_STMTS[key] = prebuilt(
            dialect_insert(session, table)
            .on_conflict_do_nothing(index_elements=list(cols))
            .returning(table.c.id, *(table.c[c] for c in cols)),
            "pipeline-insert", *key,
        )
    return stmt


# the same statements for the grouped transactions (run on a synchronous connection): compiled
# once and executed straight on SQLite's cursor (``bot.precompiled``)
INSERT_RETURNING = {
    table.name: InsertReturning(table, ("id", *_DEDUPE[table.name]), conflict=_DEDUPE[table.name],
                                fallback=lambda conn, table=table: insert_stmt(conn, table))
    for table in (InboundMessage.__table__, OutboxMessage.__table__)
}

_INBOUND = InboundMessage.__table__
FINISH_ROW = (
    update(_INBOUND)
    .where(_INBOUND.c.id == bindparam("b_id"))
    .values(status="done", processed_at=bindparam("b_now", type_=_INBOUND.c.processed_at.type),
            attempts=bindparam("b_attempts", type_=_INBOUND.c.attempts.type), error=None)
)
FINISH_ROW_P = Precompiled(FINISH_ROW)
NEXT_ROW = (
    select(*_INBOUND.c)
    .where(_INBOUND.c.conversation_id == bindparam("b_cid", type_=_INBOUND.c.conversation_id.type),
           _INBOUND.c.status == sql_const("received"))  # its partial index, ix_inbound_conv_waiting
    .order_by(_INBOUND.c.id)
    .limit(1)
)

_OUTBOX = OutboxMessage.__table__
_MARK_INLINE = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(bindparam("b_ids", expanding=True)), _OUTBOX.c.status == "pending")
    .values(status="sent", sent_at=bindparam("b_now", type_=_OUTBOX.c.sent_at.type), provider_id="inline")
    .returning(_OUTBOX.c.id)
)
MARK_INLINE_P = Precompiled(_MARK_INLINE)
# replies held on their inbound row for the channel's inline answer (see the module docstring):
# the row finished as ``FINISH_ROW`` does, but ``held`` until ``b_due``
_HOLD_ROW = FINISH_ROW.values(status="held", next_attempt_at=bindparam("b_due", type_=_INBOUND.c.next_attempt_at.type))
HOLD_ROW_P = Precompiled(_HOLD_ROW)
DELIVERED_HELD_P = Precompiled(
    update(_INBOUND)
    .where(_INBOUND.c.id.in_(bindparam("b_ids", expanding=True)), _INBOUND.c.status == "held")
    .values(status="done")
    .returning(_INBOUND.c.id)
)
EXPIRE_HELD = (
    update(_INBOUND)
    .where(_INBOUND.c.status == sql_const("held"),  # its partial index (bot_0014)
           _INBOUND.c.next_attempt_at <= bindparam("b_now", type_=_INBOUND.c.next_attempt_at.type))
    .values(status="received", next_attempt_at=bindparam("b_now", type_=_INBOUND.c.next_attempt_at.type))
    .returning(_INBOUND.c.conversation_id)
)
WAITING_IN = Precompiled(
    select(_INBOUND.c.conversation_id, func.count())
    .where(_INBOUND.c.conversation_id.in_(bindparam("b_cids", expanding=True)),
           _INBOUND.c.status == sql_const("received"))
    .group_by(_INBOUND.c.conversation_id)
)

_LEASE = ConversationLease.__table__
RELEASE_LEASE = delete(_LEASE).where(_LEASE.c.conversation_id == bindparam("b_cid"),
                                      _LEASE.c.owner == bindparam("b_owner"))
_LEASE_STMTS: dict[str, Any] = {}


def _lease_upsert(ins: Any) -> Any:
    """The lease insert ``ins`` taking over an expired lease or our own (RETURNING the owner)."""
    return ins.on_conflict_do_update(
        index_elements=["conversation_id"],
        set_={"owner": ins.excluded.owner, "expires_at": ins.excluded.expires_at},
        where=or_(_LEASE.c.expires_at < bindparam("b_now", type_=_LEASE.c.expires_at.type),
                  _LEASE.c.owner == bindparam("b_owner", type_=_LEASE.c.owner.type)),
    ).returning(_LEASE.c.owner)


def _released_unless(nxt: Any) -> Any:
    """A CTE releasing our lease of the conversation when the CTE ``nxt`` (its next waiting
    row) is empty: a DELETE in a WITH clause sees the same snapshot as the SELECT."""
    return (
        delete(_LEASE)
        .where(_LEASE.c.conversation_id == bindparam("b_cid"), _LEASE.c.owner == bindparam("b_owner"),
               ~exists(select(literal(1)).select_from(nxt)))
        .returning(_LEASE.c.conversation_id)
        .cte("released")
    )


def _next_or_release_pg() -> Any:
    """PostgreSQL: the conversation's oldest waiting row, and — when there is none — the lease
    released, in one statement: one round trip per turn less than the SELECT and the DELETE
    apart."""
    nxt = NEXT_ROW.cte("nxt")
    return select(nxt).add_cte(_released_unless(nxt))


NEXT_OR_RELEASE_PG = _next_or_release_pg()


def _finish_all_next_or_release_pg() -> Any:
    """PostgreSQL, at the end of turns written in one transaction, each under its
    conversation's lease: every turn's row marked done (``FINISH_ROW``), each conversation's
    next waiting row selected and — none waiting — its lease released, in one statement for
    the group (or a turn written alone). Parameters:
    ``b_ids``/``b_attempts`` (the finished rows), ``b_cids`` (their conversations), ``b_now``,
    ``b_owner``; gives each conversation's next waiting row (the finished rows are still
    waiting in the statement's snapshot: left out by id)."""
    cols = ", ".join(c.name for c in _INBOUND.c)
    sql = text(f"""
        WITH finished AS (UPDATE inbound_messages AS m
            SET status = 'done', processed_at = :b_now, attempts = f.attempts, error = NULL
            FROM unnest(CAST(:b_ids AS BIGINT[]), CAST(:b_attempts AS INTEGER[])) AS f(id, attempts)
            WHERE m.id = f.id
            RETURNING m.id
        ), nxt AS (
            SELECT DISTINCT ON (conversation_id) {cols}
            FROM inbound_messages
            WHERE conversation_id = ANY(CAST(:b_cids AS VARCHAR[])) AND status = 'received'
              AND id <> ALL(CAST(:b_ids AS BIGINT[]))
            ORDER BY conversation_id, id
        ), released AS (
            DELETE FROM conversation_leases
            WHERE conversation_id = ANY(CAST(:b_cids AS VARCHAR[])) AND owner = :b_owner
              AND conversation_id NOT IN (SELECT conversation_id FROM nxt)
            RETURNING conversation_id
        )
        SELECT {cols} FROM nxt""")
    return sql.bindparams(bindparam("b_now", type_=_INBOUND.c.processed_at.type)).columns(*_INBOUND.c)


FINISH_ALL_NEXT_OR_RELEASE_PG = Precompiled(_finish_all_next_or_release_pg(), named=True)


def _lease_and_next_pg() -> Any:
    """PostgreSQL: the conversation's oldest waiting row and, only when there is one, the
    lease taken (as ``lease_stmt``), in one statement that always gives one row:
    ``lease_owner`` set = taken, with the row; ``lease_owner`` NULL and ``id`` set = another
    owner's lease; both NULL = nothing waiting (no lease taken: nothing to release). One
    statement, committed by itself: no second statement to release a lease taken in vain,
    and nothing a cancellation could leave half done."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    # every value a named parameter (b_limit 1) or a constant in the text (the status, for the
    # partial index ix_inbound_conv_waiting): a prebuilt statement carries no bound literals
    nxt = (
        select(*_INBOUND.c)
        .where(_INBOUND.c.conversation_id == bindparam("b_cid", type_=_INBOUND.c.conversation_id.type),
               _INBOUND.c.status == sql_const("received"))
        .order_by(_INBOUND.c.id)
        .limit(bindparam("b_limit", type_=Integer()))
        .cte("nxt")
    )
    ins = pg_insert(_LEASE).from_select(
        ["conversation_id", "owner", "expires_at"],
        select(bindparam("b_cid", type_=_LEASE.c.conversation_id.type), bindparam("b_owner", type_=_LEASE.c.owner.type),
               bindparam("b_expires", type_=_LEASE.c.expires_at.type))
        .where(exists(select(literal(1)).select_from(nxt))),
    )
    lease = _lease_upsert(ins).cte("lease")
    one = select(literal(1).label("one")).subquery("one")
    stmt = select(lease.c.owner.label("lease_owner"), *nxt.c).select_from(
        one.outerjoin(lease, true()).outerjoin(nxt, true()))
    return prebuilt(stmt, "pipeline-lease-and-next", "postgresql")


LEASE_AND_NEXT_PG = Precompiled(_lease_and_next_pg(), named=True)


def lease_stmt(session: Any) -> Any:
    """Take the conversation's lease unless another owner holds an unexpired one (returns the
    owner when taken); executed with conversation_id, owner, expires_at, b_now, b_owner."""
    name = dialect_name(session)
    stmt = _LEASE_STMTS.get(name)
    if stmt is None:
        stmt = _LEASE_STMTS[name] = prebuilt(_lease_upsert(dialect_insert(session, _LEASE)), "pipeline-lease", name)
    return stmt
