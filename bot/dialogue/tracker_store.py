"""The dialogue's tracker store: every statement a turn needs, and nothing else of the turn.

Like Rasa's ``TrackerStore`` (``retrieve`` / ``save``), the policy never sees SQL: the pipeline
asks the store for a turn's ``Snapshot`` and, once the engine has decided, for the ``plans``
that write its ``TurnResult``. A plan is either pre-built Core statements (the common turn, which
the pipeline may write together with concurrent turns in one transaction) or a function of an
ORM session (a new identity to link, a verification to count, a handoff to open). The pipeline
tries the plans in order: a statement plan whose guard missed (a row changed under the turn, a
concurrent insert of the same conversation) gives way to the next.

The hot statements are compiled once (``bot.precompiled``), as the benchmarks showed they pay.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, func, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend_client.models import Account
from bot.db import in_transaction
from common.db import json_text
from bot.dialogue import handoff as ho
from bot.dialogue.store import Conversation, Customer, CustomerAccount, Event, Identity, VerificationLock
from bot.dialogue.turn import Snapshot, Turn, TurnResult, reply_data, slim_parse
from bot.dialogue.verification import (
    ACCOUNT_WIDE, LOCK_MINUTES, MAX_ACCOUNT_FAILURES, MAX_VERIFY_FAILURES, aware, recent_failures,
)
from bot.logs import mask_account, mask_text
from bot.precompiled import Precompiled
from channels.base import Button, Message, Reply
from common.clock import utcnow
from common.metrics import HANDOFFS

log = logging.getLogger("powerbot.dialogue")

Statement = tuple[Any, list[dict[str, Any]], int | None]  # (statement, parameter rows, expected rowcount)


@dataclass
class StatementPlan:
    """Pre-built statements, each run once with its parameter rows (executemany).

    ``prepare(conn)`` runs first in the same transaction (a new sender's customer link, whose
    values come from reads). The plan misses — nothing of it is written — when a statement with
    an expected rowcount changes other rows, or, with ``miss_on_integrity``, when a unique
    constraint fires (a concurrent turn inserted the conversation first)."""

    stmts: list[Statement]
    prepare: Callable[[Connection], None] | None = None
    miss_on_integrity: bool = False


@dataclass
class SessionPlan:
    """A write through an ORM session, in the commit's transaction; returns the handoff it
    opened, if any. Retried on a unique-constraint race."""

    write: Callable[[AsyncSession], Awaitable[Any]]


Plan = StatementPlan | SessionPlan


class PlanMissed(Exception):
    """A statement plan's guard missed: nothing of it was written; try the next plan."""


class TrackerStore:
    """Reads and writes of the dialogue's tables (``bot.dialogue.store``)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    # ------------------------------------------------------------------ retrieve
    def prefetch(self, conn: Connection, conversation_id: str, message_id: str, probe: Any = None) -> Snapshot:
        """The snapshot on a synchronous connection inside a transaction the caller runs anyway
        (the pipeline's inbound insert or lease): one transaction less per message."""
        return read_snapshot(conn, conversation_id, message_id, probe)

    async def retrieve(self, message: Message, *, probe: Any = None, prefetched: Snapshot | None = None) -> Snapshot:
        """The conversation as this message finds it: one statement for the common turn; the
        recorded replies of a replayed message and the active handoff when they apply."""
        cid = message.conversation_id
        snap = prefetched
        if snap is None or snap.conversation_id != cid or snap.message_id != message.message_id or snap.probe_stmt is not probe:
            engine = self.sessionmaker.kw["bind"]
            snap = await in_transaction(engine, lambda conn: read_snapshot(conn, cid, message.message_id, probe))
        if not snap.rare:
            return snap
        async with self.sessionmaker() as session:
            if snap.exists:
                snap.replay = await _replay(session, message)
            if snap.handoff is not None:
                snap.handoff = await ho.get_active_handoff(session, cid)
        snap.rare = False
        return snap

    async def lock_state(self, number: str, identity: str) -> tuple[int, datetime | None]:
        """This identity's recent wrong answers for the account, and until when the check is
        locked for it (its own lock or the account-wide one), if it is."""
        async with self.sessionmaker() as session:
            rows = (await session.execute(select(VerificationLock).where(
                VerificationLock.account_number == number, VerificationLock.identity.in_((identity, ACCOUNT_WIDE))
            ))).scalars().all()
        now = utcnow()
        failures, until = 0, None
        for row in rows:
            if row.locked_until is not None and aware(row.locked_until) > now:
                until = max(until, aware(row.locked_until)) if until else aware(row.locked_until)
            if row.identity == identity:
                failures = recent_failures(row.failures, row.updated_at, now)
        return failures, until

    # ------------------------------------------------------------------ save
    def plans(self, result: TurnResult) -> list[Plan]:
        """How to write the turn, cheapest first."""
        if result.kind == "handoff":
            return [SessionPlan(lambda session: _write_handoff_turn(session, result))]
        turn = result.turn
        if result.kind != "turn" or turn is None:
            return []
        snap = result.snapshot
        assert snap is not None
        plain = turn.handoff is None and not turn.new_accounts and turn.verify_result is None and result.withdraw_handoff is None
        # a sender whose identity the core could not look up stays unlinked until a turn can
        link = not result.identity_pending or not plain
        plans: list[Plan] = []
        if plain and snap.exists and snap.customer_id is not None:
            # the tracker row guarded by its customer: a row changed under us updates nothing
            guarded = {"b_cid": turn.conversation_id, "b_customer": snap.customer_id, "b_state": turn.state,
                       "b_now": utcnow()}
            plans.append(StatementPlan([(_UPDATE_CONVERSATION_P, [guarded], 1), (_INSERT_EVENT_P, event_rows(turn), None)]))
        elif plain and not snap.exists:
            plans.append(_new_conversation_plan(turn, result.new_identity, link=link))
        plans.append(SessionPlan(lambda session: _write_full_turn(session, turn, result.new_identity, link=link,
                                                                  withdraw=result.withdraw_handoff)))
        return plans

    async def save(self, result: TurnResult) -> Any:
        """Write a turn on its own (no pipeline, no outbox): for a caller that runs a turn
        directly. Returns the handoff it opened, if any."""
        engine = self.sessionmaker.kw["bind"]
        for plan in self.plans(result):
            if isinstance(plan, StatementPlan):
                try:
                    await in_transaction(engine, lambda conn, plan=plan: run_plan(conn, plan))
                except PlanMissed:
                    continue
                return None
            async with self.sessionmaker() as session, session.begin():
                return await plan.write(session)
        return None


def run_plan(conn: Connection, plan: StatementPlan) -> None:
    """One statement plan alone on a synchronous connection; raises ``PlanMissed``."""
    from sqlalchemy.exc import IntegrityError

    try:
        if plan.prepare is not None:
            plan.prepare(conn)
        for stmt, params, expect in plan.stmts:
            res = stmt.run(conn, params) if isinstance(stmt, Precompiled) else conn.execute(stmt, params)
            if expect is not None and res.rowcount != expect:
                raise PlanMissed()
    except IntegrityError:
        if not plan.miss_on_integrity:
            raise
        raise PlanMissed() from None


async def conversation_events(session: AsyncSession, conversation_id: str, *, after_id: int = 0, limit: int = 200) -> list[Event]:
    """The conversation's event log (user messages with parse + slots, bot replies, actions,
    handoff changes), oldest first — for the agent console."""
    rows = await session.execute(
        select(Event).where(Event.conversation_id == conversation_id, Event.id > after_id).order_by(Event.id).limit(limit)
    )
    return list(rows.scalars())


# ====================================================================== writes
def event_rows(turn: Turn) -> list[dict[str, Any]]:
    """The turn's events, in order: the user message, then the bot replies.

    The slot changes and the actions the turn ran (flows, work orders, handoffs...) travel in
    the user event's data (``slot_events``: ``[[name, value]...]``, ``actions``:
    ``[[name, data]...]``), not a row each: they are the turn's audit trail, read with the
    turn, never looked up on their own, and as rows they would be about half of all event
    rows written."""
    msg, cid, now = turn.message, turn.conversation_id, utcnow()
    data: dict[str, Any] = {"parse": slim_parse(turn.parse), "slots": dict(turn.slots)}
    if turn.slot_events:
        data["slot_events"] = [[name, value] for name, value in turn.slot_events]
    if turn.actions:
        data["actions"] = [[name, detail] for name, detail in turn.actions]
    rows: list[dict[str, Any]] = [
        {"type": "user", "name": turn.intent, "text": msg.text, "message_id": msg.message_id, "data": data},
    ]
    rows += [{"type": "bot", "text": r.text, "data": reply_data(r)} for r in turn.replies]
    return [{"conversation_id": cid, "name": None, "text": None, "message_id": None, "created_at": now, **r}
            for r in rows]


def _new_conversation_plan(turn: Turn, new_identity: tuple[list[Account], str] | None, *,
                           link: bool = True) -> StatementPlan:
    """A new conversation's first turn (no handoff, nothing to verify) with Core statements and
    no ORM unit of work (this runs for every new sender): link the customer, insert the tracker
    row and the events. Misses when a concurrent turn inserted the conversation or identity
    first; the full plan then loads what is there."""
    msg, now = turn.message, utcnow()

    def link_and_insert(conn: Connection) -> None:
        if link and not (new_identity and new_identity[0]) and conn.dialect.name == "postgresql":
            _LINK_AND_INSERT_CONVERSATION_PG.run(conn, {
                "b_cid": turn.conversation_id, "b_channel": msg.channel, "b_sender": msg.sender_id,
                "b_state": json_text(turn.state), "b_now": now})
            return
        customer_id = _link_customer(conn, msg, new_identity) if link else None
        _INSERT_CONVERSATION_P.run(conn, {
            "id": turn.conversation_id, "channel": msg.channel, "sender_id": msg.sender_id,
            "customer_id": customer_id, "state": turn.state, "version": 1, "created_at": now, "updated_at": now})

    return StatementPlan([(_INSERT_EVENT_P, event_rows(turn), None)], prepare=link_and_insert, miss_on_integrity=True)


async def _write_full_turn(session: AsyncSession, turn: Turn, new_identity: tuple[list[Account], str] | None, *,
                           link: bool = True, withdraw: int | None = None) -> Any:
    """Anything beyond the common turn: the customer linked, accounts added, a verification
    counted, a handoff opened or one still waiting called off (``withdraw``)."""
    if withdraw is not None:
        await ho.withdraw(session, withdraw)
    msg, cid = turn.message, turn.conversation_id
    conv = await session.get(Conversation, cid)
    if conv is None:
        # the customer first, so the new row is inserted once, complete
        linked = await session.run_sync(lambda s: _link_customer(s, msg, new_identity)) if link else None
        conv = Conversation(id=cid, channel=msg.channel, sender_id=msg.sender_id, state={}, version=0,
                            customer_id=linked)
        session.add(conv)
    elif conv.customer_id is None and link:
        conv.customer_id = await session.run_sync(lambda s: _link_customer(s, msg, new_identity))
    customer_id = conv.customer_id
    for number, how in turn.new_accounts:
        exists = (await session.execute(select(CustomerAccount.id).where(
            CustomerAccount.customer_id == customer_id, CustomerAccount.account_number == number))).first()
        if not exists:
            session.add(CustomerAccount(customer_id=customer_id, account_number=number, how=how))
    if turn.verify_result is not None:
        number, ok = turn.verify_result
        await _record_verification(session, number, cid, ok)
    conv.state = turn.state
    conv.version = (conv.version or 0) + 1
    conv.updated_at = utcnow()
    await session.flush()
    await session.execute(_INSERT_EVENT, event_rows(turn))
    if turn.handoff is None:
        return None
    reason, priority, summary = turn.handoff
    HANDOFFS.labels(reason).inc()
    return await ho.request_handoff(session, cid, reason, priority, summary=summary)


async def _write_handoff_turn(session: AsyncSession, result: TurnResult) -> None:
    """A message while an agent holds the conversation: recorded, and the first one since the
    handoff acknowledged."""
    message, parse = result.message, result.parse or {}
    snap = result.snapshot
    state = snap.state if snap is not None else {}
    cid = message.conversation_id
    session.add(Event(conversation_id=cid, type="user", name=(parse.get("intent") or {}).get("name"),
                      text=message.text, message_id=message.message_id,
                      data={"parse": slim_parse(parse), "slots": state.get("slots", {}), "handoff": True}))
    if result.ack_handoff is not None:
        h = await session.get(ho.Handoff, result.ack_handoff)
        if h is not None:
            h.acked = True
    if result.withdraw_handoff is not None:
        await ho.withdraw(session, result.withdraw_handoff)
    for r in result.replies:
        session.add(Event(conversation_id=cid, type="bot", text=r.text, data=reply_data(r)))
    return None


async def _record_verification(session: AsyncSession, number: str, identity: str, ok: bool) -> None:
    """A right answer clears this identity's counter; a wrong one counts for the identity
    (locked at ``MAX_VERIFY_FAILURES``) and for the account (locked for every unbound
    identity at ``MAX_ACCOUNT_FAILURES``: guessing spread over many identities)."""
    now = utcnow()
    for who, limit in ((identity, MAX_VERIFY_FAILURES), (ACCOUNT_WIDE, MAX_ACCOUNT_FAILURES)):
        if ok and who == ACCOUNT_WIDE:
            continue  # one identity's success says nothing about the others' guessing
        row = await session.get(VerificationLock, (number, who))
        if row is None:
            row = VerificationLock(account_number=number, identity=who, failures=0)
            session.add(row)
        if ok:
            row.failures, row.locked_until = 0, None
        else:
            row.failures = recent_failures(row.failures, row.updated_at, now) + 1
            if row.failures >= limit:
                row.locked_until = now + timedelta(minutes=LOCK_MINUTES)
                row.failures = 0
                if who == ACCOUNT_WIDE:
                    log.warning("verification locked for all unbound identities of account %s",
                                mask_account(number))
        row.updated_at = now


_IDENT, _CUST, _CACC = Identity.__table__, Customer.__table__, CustomerAccount.__table__
_IDENTITY_CUSTOMER = select(_IDENT.c.customer_id).where(
    _IDENT.c.channel == bindparam("b_channel"), _IDENT.c.sender_id == bindparam("b_sender"))
_CUSTOMER_OF_ACCOUNTS = (
    select(_CACC.c.customer_id)
    .where(_CACC.c.account_number.in_(bindparam("b_numbers", expanding=True)), _CACC.c.how.in_(("bound", "phone")))
    .order_by(_CACC.c.id).limit(1)
)
_ACCOUNTS_OF_CUSTOMER = select(_CACC.c.account_number).where(_CACC.c.customer_id == bindparam("b_customer"))
_INSERT_CUSTOMER = insert(_CUST).values(created_at=bindparam("b_now")).returning(_CUST.c.id)
_INSERT_IDENTITY = insert(_IDENT)
_INSERT_CUSTOMER_ACCOUNT = insert(_CACC)
_INSERT_CONVERSATION = insert(Conversation.__table__)
# a new sender's link (once per new sender: statements compiled once, run on SQLite's cursor)
_IDENTITY_CUSTOMER_P = Precompiled(_IDENTITY_CUSTOMER)
_INSERT_CUSTOMER_P = Precompiled(_INSERT_CUSTOMER)
_INSERT_IDENTITY_P = Precompiled(_INSERT_IDENTITY)
_INSERT_CONVERSATION_P = Precompiled(_INSERT_CONVERSATION)


# PostgreSQL, a new sender with no accounts to link (most new senders): ``_link_customer`` and
# the tracker insert in one statement (were four round trips). A concurrent turn that linked the
# sender or inserted the conversation first fails it on a unique key, as it fails those.
_LINK_AND_INSERT_CONVERSATION_PG = Precompiled(text("""
    WITH known AS (
        SELECT customer_id FROM dlg_identities WHERE channel = :b_channel AND sender_id = :b_sender
    ), new_customer AS (
        INSERT INTO dlg_customers (created_at) SELECT :b_now WHERE NOT EXISTS (SELECT 1 FROM known)
        RETURNING id
    ), new_identity AS (
        INSERT INTO dlg_identities (channel, sender_id, customer_id, created_at)
        SELECT :b_channel, :b_sender, id, :b_now FROM new_customer
    )
    INSERT INTO dlg_conversations (id, channel, sender_id, customer_id, state, version, created_at, updated_at)
    SELECT :b_cid, :b_channel, :b_sender,
           COALESCE((SELECT customer_id FROM known), (SELECT id FROM new_customer)),
           CAST(:b_state AS JSON), 1, :b_now, :b_now""").bindparams(
    bindparam("b_now", type_=Conversation.__table__.c.created_at.type)))


def _link_customer(db: Any, msg: Message, new_identity: tuple[list[Account], str] | None) -> int:
    """The customer behind a sender, linked in the caller's transaction (``db``: a synchronous
    ``Session`` or ``Connection`` — async callers use ``run_sync``): the sender's identity if it
    has one; else a customer already holding one of the accounts the core links to this sender
    (bound or by phone); else a new customer. A new identity also records the sender's accounts."""
    conn = db if isinstance(db, Connection) else db.connection()
    ident = _IDENTITY_CUSTOMER_P.run(conn, {"b_channel": msg.channel, "b_sender": msg.sender_id}).scalar()
    if ident is not None:
        return ident
    now = utcnow()
    accounts, how = new_identity or ([], "bound")
    numbers = [a.account_number for a in accounts]
    customer_id = None
    held: set[str] = set()
    if numbers:
        customer_id = db.execute(_CUSTOMER_OF_ACCOUNTS, {"b_numbers": numbers}).scalar()
    if customer_id is None:
        customer_id = _INSERT_CUSTOMER_P.run(conn, {"b_now": now}).scalar()
    elif numbers:
        held = set(db.execute(_ACCOUNTS_OF_CUSTOMER, {"b_customer": customer_id}).scalars())
    _INSERT_IDENTITY_P.run(conn, {
        "channel": msg.channel, "sender_id": msg.sender_id, "customer_id": customer_id, "created_at": now})
    rows = [{"customer_id": customer_id, "account_number": n, "how": how, "created_at": now}
            for n in dict.fromkeys(numbers) if n not in held]
    if rows:
        db.execute(_INSERT_CUSTOMER_ACCOUNT, rows)
    return customer_id


_CONV = Conversation.__table__
_UPDATE_CONVERSATION = (
    update(_CONV)
    .where(_CONV.c.id == bindparam("b_cid"), _CONV.c.customer_id == bindparam("b_customer"))
    .values(state=bindparam("b_state", type_=_CONV.c.state.type), version=_CONV.c.version + 1,
            updated_at=bindparam("b_now", type_=_CONV.c.updated_at.type))
)
_INSERT_EVENT = insert(Event.__table__)
# PostgreSQL: the guarded update of many turns' trackers in one statement; the ids it returns
# say which turns' guards held (asyncpg's executemany reports no row counts)
_UPDATE_CONVERSATIONS_PG = Precompiled(text("""
    UPDATE dlg_conversations AS c
    SET state = CAST(v.state AS JSON), version = c.version + 1, updated_at = v.updated_at
    FROM unnest(CAST(:b_cids AS VARCHAR[]), CAST(:b_customers AS BIGINT[]), CAST(:b_states AS TEXT[]),
                CAST(:b_nows AS TIMESTAMPTZ[])) AS v(id, customer_id, state, updated_at)
    WHERE c.id = v.id AND c.customer_id = v.customer_id
    RETURNING c.id""").columns(_CONV.c.id))


class _ConversationUpdate(Precompiled):
    """``_UPDATE_CONVERSATION``, guarded by the tracker's customer; ``run_each`` runs it for
    the turns of a grouped write."""

    def run_each(self, conn: Connection, params: list[dict[str, Any]]) -> list[int] | None:
        """Rows changed per parameter set, in one statement (PostgreSQL; None elsewhere: the
        caller runs the sets itself)."""
        if conn.dialect.name != "postgresql":
            return None
        changed = Counter(row[0] for row in _UPDATE_CONVERSATIONS_PG.run(conn, {
            "b_cids": [p["b_cid"] for p in params], "b_customers": [p["b_customer"] for p in params],
            "b_states": [json_text(p["b_state"]) for p in params], "b_nows": [p["b_now"] for p in params],
        }).all())
        return [changed[p["b_cid"]] for p in params]


# the same two for the pipeline's grouped turn writes (compiled once, run on the driver's cursor)
_UPDATE_CONVERSATION_P = _ConversationUpdate(_UPDATE_CONVERSATION)
_INSERT_EVENT_P = Precompiled(_INSERT_EVENT)


# ====================================================================== snapshot
_SNAPSHOT_STMTS: dict[tuple[str, int], Any] = {}
# The snapshot looks for a recorded turn of the message among the conversation's latest events
# only. A message is processed again after a crash between its turn and the pipeline's close
# (its turn is then the conversation's last: later messages wait behind it) or when its held
# inline answer was released (the customer's messages of the ~12 s since; the per-sender rate
# limit keeps them to a few). Unbounded, the check would read every event of the conversation
# on every turn, and a conversation is a sender's whole history: about 90 us a snapshot with
# 10 events, over 500 us with 5,000, growing until the history retention.
REPLAY_WINDOW = 256


def _snapshot_stmt(dialect: str, probe: Any) -> Any:
    """One SELECT of scalar subqueries (built once per backend and probe): the tracker row,
    the customer's account numbers, a recorded user event for this message id, the active
    handoff, and the wrapper's probe."""
    key = (dialect, id(probe))
    stmt = _SNAPSHOT_STMTS.get(key)
    if stmt is not None:
        return stmt
    cid, mid = bindparam("cid", type_=String()), bindparam("mid", type_=String())
    conv, ev, ca, h = Conversation.__table__, Event.__table__, CustomerAccount.__table__, ho.Handoff.__table__
    customer = select(conv.c.customer_id).where(conv.c.id == cid).scalar_subquery()
    # the id of the REPLAY_WINDOW-th latest event (NULL for a shorter history: all of it)
    window_start = (select(ev.c.id).where(ev.c.conversation_id == cid).order_by(ev.c.id.desc())
                    .limit(1).offset(REPLAY_WINDOW - 1).scalar_subquery())
    agg = (func.string_agg(ca.c.account_number, ",") if dialect == "postgresql"
           else func.group_concat(ca.c.account_number, ","))
    cols = [
        select(conv.c.state).where(conv.c.id == cid).scalar_subquery().label("state"),
        customer.label("customer_id"),
        select(conv.c.version).where(conv.c.id == cid).scalar_subquery().label("version"),
        select(agg).where(ca.c.customer_id == customer).scalar_subquery().label("accounts"),
        select(ev.c.id).where(ev.c.conversation_id == cid, ev.c.id >= func.coalesce(window_start, 0),
                              ev.c.type == "user", ev.c.message_id == mid)
        .limit(1).scalar_subquery().label("replay"),
        select(h.c.id).where(h.c.conversation_id == cid, h.c.status.in_(ho.ACTIVE)).limit(1)
        .scalar_subquery().label("handoff"),
    ]
    if probe is not None:
        cols.append(probe.label("probe"))
    stmt = _SNAPSHOT_STMTS[key] = Precompiled(select(*cols))
    return stmt


def read_snapshot(conn: Connection, cid: str, message_id: str, probe: Any = None) -> Snapshot:
    """The snapshot statement on a synchronous connection, in the caller's transaction."""
    stmt = _snapshot_stmt(conn.dialect.name, probe)
    row = stmt.run(conn, {"cid": cid, "mid": message_id}).first()
    assert row is not None  # a SELECT of scalar subqueries always gives one row
    state, customer_id, version, accounts, replay, handoff = row[:6]
    probe_value = row[6] if probe is not None else None
    exists = version is not None
    if not exists:
        state, customer_id = {}, None
    elif not isinstance(state, dict):
        state = {}
    rare = (exists and replay is not None) or handoff is not None or bool(probe_value)
    authorized = set(accounts.split(",")) if customer_id and accounts else set()
    return Snapshot(conversation_id=cid, message_id=message_id, state=state, customer_id=customer_id,
                    version=version, authorized=authorized, recorded=exists and replay is not None, handoff=handoff, probe=probe_value,
                    probe_stmt=probe, rare=rare)


async def _replay(session: AsyncSession, message: Message) -> list[Reply] | None:
    """The replies of a turn already recorded for this message, or None if it is new.

    A turn can be committed and the process killed (or its connection dropped) before the
    pipeline marks the message done. Running the turn again would answer a different state
    (a handoff it opened, a form it advanced); sending what was decided the first time keeps
    the customer's answer — the safety advice, the work-order number — the same.
    """
    cid = message.conversation_id
    user_id = (
        await session.execute(
            select(Event.id)
            .where(Event.conversation_id == cid, Event.type == "user", Event.message_id == message.message_id)
            .order_by(Event.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    if user_id is None:
        return None
    later = (
        await session.execute(
            select(Event)
            .where(Event.conversation_id == cid, Event.id > user_id, Event.type.in_(("user", "bot")))
            .order_by(Event.id)
        )
    ).scalars()
    replies: list[Reply] = []
    for ev in later:
        if ev.type == "user":
            break
        data = ev.data or {}
        buttons = [
            Button(title=b["title"], payload=b["payload"]) if isinstance(b, dict) else Button(title=b, payload=b)
            for b in data.get("buttons") or []
        ]
        replies.append(
            Reply(channel=message.channel, recipient_id=message.sender_id, text=ev.text or "", buttons=buttons,
                  kind=data.get("kind", "text"), metadata=data.get("metadata") or {}, urgent=bool(data.get("urgent")))
        )
    log.info("replaying %d recorded replies for an already processed message conv=%s", len(replies), mask_text(cid))
    return replies


def copy_state(state: Any) -> dict[str, Any]:
    """A deep copy of a tracker state the policy may change freely."""
    return json.loads(json.dumps(state)) if isinstance(state, dict) else {}
