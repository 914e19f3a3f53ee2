"""Run conversation tests against the embedded default, the clock pinned.

One real core (SQLite, demo data seeded at the pinned moment) and one real gateway (SQLite,
the trained NLU) on loopback serve the whole run; conversations run one at a time, so what a
conversation created in the core is the difference of the core's tables before and after it.
Between conversations the core is put back as seeded (rows created deleted, rows changed or
removed restored: work orders, subscriptions, appointments and their slots, payments and the
bills of the accounts they paid for, bindings, the event feed) and the account-wide
verification counters are cleared, so no conversation sees another's traces. A conversation that names a ``sender`` used by an earlier
one starts with that sender's gateway state cleared (tracker, identity, handoffs, SMS opt-out).

Turns go in through the REST channel (``POST /webhooks/rest/webhook``, Rasa's shape) or, for
``channel: sms``, as signed provider callbacks to ``/channels/sms``; an SMS turn's replies are the
outbox rows the turn wrote for that number (a small local provider accepts their delivery).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import Table, delete, func, insert, select, update

from .spec import (
    DEMO_ACCOUNTS,
    UNKNOWN_ACCOUNT,
    BotCheck,
    Conversation,
    ExpectedRow,
    Resolver,
    SpecError,
    date_values,
)

CN_TZ = timezone(timedelta(hours=8))
# The pinned moment: a Tuesday morning in Shanghai, no public holiday near it (tomorrow and the
# day after are working days), 张伟's two unpaid months are 2026-01 (overdue) and 2026-02.
PINNED_NOW = datetime(2026, 3, 10, 10, 0, tzinfo=CN_TZ)
STREETS = {"zhang": "碧波路", "li": "漕溪北路", "shop": "世纪大道"}
SMS_SECRET = "conversation-tests-sms-secret"
SMS_API_KEY = "conversation-tests-sms-key"
TURN_TIMEOUT = 30.0


# ------------------------------------------------------------------------------- results
@dataclass
class TurnResult:
    index: int
    user: str
    reply: str
    replies: int
    expected: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class KindDiff:
    expected: list[dict[str, Any]]
    created: list[dict[str, Any]]
    missing: list[dict[str, Any]] = field(default_factory=list)  # expected, not created
    unexpected: list[dict[str, Any]] = field(default_factory=list)  # created, not expected
    mismatched: list[dict[str, Any]] = field(default_factory=list)  # {expected, actual, problems}

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def wrong_write(self) -> bool:
        return bool(self.unexpected or self.mismatched)


@dataclass
class ConversationResult:
    conversation: Conversation
    sender: str
    turns: list[TurnResult] = field(default_factory=list)
    core: dict[str, KindDiff] = field(default_factory=dict)
    handoff_expected: bool = False
    handoff_actual: bool | None = None
    error: str | None = None
    postponed: int = 0  # turns the gateway postponed (an error) and would have retried later
    skipped: bool = False
    seconds: float = 0.0

    @property
    def turns_ok(self) -> bool:
        return all(t.ok for t in self.turns)

    @property
    def core_ok(self) -> bool:
        return all(d.ok for d in self.core.values())

    @property
    def handoff_ok(self) -> bool:
        return self.handoff_actual is not None and self.handoff_actual == self.handoff_expected

    @property
    def passed(self) -> bool:
        return not self.skipped and self.error is None and self.turns_ok and self.core_ok and self.handoff_ok

    @property
    def wrong_write(self) -> bool:
        return any(d.wrong_write for d in self.core.values())

    @property
    def first_failed_turn(self) -> TurnResult | None:
        return next((t for t in self.turns if not t.ok), None)


# ------------------------------------------------------------------------------- comparing
def _norm(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None


def same(expected: Any, actual: Any) -> bool:
    if expected is None:
        return actual is None or actual == ""
    if isinstance(expected, bool):
        return actual is expected or str(actual).lower() == str(expected).lower()
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and same(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(same, expected, actual))
    if actual is None:
        return False
    e, a = str(expected).strip(), str(_norm(actual)).strip()
    if e == a:
        return True
    de, da = _decimal(e), _decimal(a)
    return de is not None and da is not None and de == da and re.fullmatch(r"-?\d+(\.\d+)?", e) is not None


def row_problems(expected: ExpectedRow, actual: dict[str, Any]) -> list[str]:
    problems = []
    for key, want in expected.fields.items():
        got = actual.get(key)
        if not same(want, got):
            problems.append(f"{key}: expected {want!r}, got {_norm(got)!r}")
    for key in expected.has:
        got = actual.get(key)
        if got is None or (isinstance(got, (str, list, dict)) and not (got.strip() if isinstance(got, str) else got)):
            problems.append(f"{key}: expected a value, got {_norm(got)!r}")
    for key, part in expected.contains.items():
        got = actual.get(key)
        if got is None or part.lower() not in str(got).lower():
            problems.append(f"{key}: expected to contain {part!r}, got {_norm(got)!r}")
    return problems


def _max_matching(ok: list[list[bool]]) -> dict[int, int]:
    """Kuhn's algorithm: expected index -> actual index, as many exact matches as possible."""
    match_of_actual: dict[int, int] = {}

    def attempt(e: int, seen: set[int]) -> bool:
        for a, good in enumerate(ok[e]):
            if good and a not in seen:
                seen.add(a)
                if a not in match_of_actual or attempt(match_of_actual[a], seen):
                    match_of_actual[a] = e
                    return True
        return False

    for e in range(len(ok)):
        attempt(e, set())
    return {e: a for a, e in match_of_actual.items()}


def compare_rows(expected: list[ExpectedRow], created: list[dict[str, Any]]) -> KindDiff:
    diff = KindDiff(expected=[e.as_dict() for e in expected], created=[_plain(r) for r in created])
    problems = [[row_problems(e, a) for a in created] for e in expected]
    matched = _max_matching([[not p for p in row] for row in problems])
    left_e = [i for i in range(len(expected)) if i not in matched]
    left_a = [j for j in range(len(created)) if j not in matched.values()]
    for i, j in zip(left_e, left_a):  # the same kind created, with wrong fields
        diff.mismatched.append({"expected": expected[i].as_dict(), "actual": _plain(created[j]),
                                "problems": problems[i][j]})
    diff.missing = [expected[i].as_dict() for i in left_e[len(left_a):]]
    diff.unexpected = [_plain(created[j]) for j in left_a[len(left_e):]]
    return diff


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _norm(v) for k, v in row.items() if v is not None and k not in ("history", "request_hash")}


def turn_problems(check: BotCheck | None, text: str, n_replies: int, resolve: Callable[..., str]) -> list[str]:
    if check is None:
        return []
    problems = []
    low = text.lower()
    if check.no_reply is True and n_replies:
        problems.append("expected no reply")
    if check.no_reply is False and not n_replies:
        problems.append("expected a reply, got none")
    if check.says_any:
        wanted = [resolve(s) for s in check.says_any]
        if not any(w.lower() in low for w in wanted):
            problems.append(f"says_any: none of {wanted}")
    for s in check.says_all:
        if resolve(s).lower() not in low:
            problems.append(f"says_all: missing {resolve(s)!r}")
    for s in check.not_says:
        if resolve(s).lower() in low:
            problems.append(f"not_says: contains {resolve(s)!r}")
    if check.matches is not None:
        pattern = resolve(check.matches, regex=True)
        if not re.search(pattern, text):
            problems.append(f"matches: no match for {pattern!r}")
    return problems


# ------------------------------------------------------------------------------- core state
def _core_tables() -> dict[str, Table]:
    from core import models as m

    return {
        "work_orders": m.WorkOrder.__table__, "subscriptions": m.Subscription.__table__,
        "appointments": m.Appointment.__table__, "payments": m.Payment.__table__,
        "bindings": m.AccountBinding.__table__, "slots": m.Slot.__table__,
    }  # type: ignore[return-value]


class CoreState:
    """Snapshot of the core's writable tables as seeded; per conversation: the rows it created,
    then the tables put back."""

    def __init__(self, sessionmaker: Any) -> None:
        self.sm = sessionmaker
        self.tables = _core_tables()
        self.base: dict[str, dict[Any, dict[str, Any]]] = {}
        self.bills: dict[Any, dict[str, Any]] = {}
        self.events_max = 0

    async def _read(self, s: Any, table: Table) -> dict[Any, dict[str, Any]]:
        pk = list(table.primary_key.columns)[0].name
        rows = (await s.execute(select(table))).mappings().all()
        return {r[pk]: dict(r) for r in rows}

    async def snapshot(self) -> None:
        from core import models as m

        async with self.sm() as s:
            self.base = {name: await self._read(s, t) for name, t in self.tables.items()}
            self.bills = await self._read(s, m.Bill.__table__)  # type: ignore[arg-type]
            self.events_max = await s.scalar(select(func.coalesce(func.max(m.Event.id), 0))) or 0

    async def created(self) -> dict[str, list[dict[str, Any]]]:
        from core import models as m

        out: dict[str, list[dict[str, Any]]] = {}
        async with self.sm() as s:
            for kind in ("work_orders", "subscriptions", "appointments", "payments", "bindings"):
                now = await self._read(s, self.tables[kind])
                out[kind] = [row for pk, row in now.items() if pk not in self.base[kind]]
            if out["appointments"]:
                slots = {r.id: r for r in (await s.execute(select(m.Slot))).scalars()}
                halls = {h.id: h for h in (await s.execute(select(m.Hall))).scalars()}
                for row in out["appointments"]:
                    slot = slots.get(row["slot_id"])
                    hall = halls.get(slot.hall_id) if slot else None
                    if slot is not None:
                        row.update(date=slot.date, period=slot.period, starts_at=slot.starts_at, ends_at=slot.ends_at,
                                   hall_id=slot.hall_id)
                    if hall is not None:
                        row.update(hall_name=hall.name, hall_district=hall.district)
        for kind, rows in out.items():
            rows.sort(key=lambda r: (str(r.get("created_at") or ""), str(r.get("id"))))
        return out

    async def restore(self) -> None:
        from core import models as m

        async with self.sm() as s:
            paid_for: set[str] = set()  # accounts whose bills a payment may have settled
            for name in ("appointments", "work_orders", "subscriptions", "payments", "bindings", "slots"):
                table, base = self.tables[name], self.base[name]
                pk = list(table.primary_key.columns)[0]
                now = await self._read(s, table)
                if name == "payments":
                    paid_for = {r["account_number"] for k, r in now.items() if base.get(k) != r}
                gone = [k for k in now if k not in base]
                if gone:
                    await s.execute(delete(table).where(pk.in_(gone)))
                for k, row in base.items():
                    if k not in now:
                        await s.execute(insert(table).values(**row))
                    elif now[k] != row:
                        await s.execute(update(table).where(pk == k).values(**row))
            if paid_for:
                bills = m.Bill.__table__
                rows = (await s.execute(select(bills).where(bills.c.account_number.in_(paid_for)))).mappings().all()
                for r in rows:
                    row = self.bills.get(r["id"])
                    if row is None:
                        await s.execute(delete(bills).where(bills.c.id == r["id"]))
                    elif dict(r) != row:
                        await s.execute(update(bills).where(bills.c.id == r["id"]).values(**row))
            await s.execute(delete(m.Event.__table__).where(m.Event.id > self.events_max))
            await s.commit()

    async def placeholder_values(self, today: date) -> dict[str, str | None]:
        from core import models as m

        values: dict[str, str | None] = dict(date_values(today))
        last_month = values["last_month"]
        async with self.sm() as s:
            for who, number in DEMO_ACCOUNTS.items():
                acc = await s.get(m.Account, number)
                if acc is None:
                    raise SpecError(f"the demo account {number} is missing from the core")
                owed = await s.scalar(select(func.coalesce(func.sum(m.Bill.amount - m.Bill.paid_amount), 0))
                                      .where(m.Bill.account_number == number, m.Bill.status != "paid"))
                bill = await s.scalar(select(m.Bill.amount).where(m.Bill.account_number == number,
                                                                  m.Bill.month == last_month))
                wo = await s.scalar(select(m.WorkOrder.id).where(m.WorkOrder.account_number == number)
                                    .order_by(m.WorkOrder.created_at.desc(), m.WorkOrder.id).limit(1))
                values.update({
                    f"acct.{who}": number, f"last4.{who}": acc.phone[-4:], f"phone.{who}": acc.phone,
                    f"e164.{who}": "+86" + acc.phone, f"name.{who}": acc.holder_name, f"address.{who}": acc.address,
                    f"district.{who}": acc.district, f"street.{who}": STREETS[who],
                    f"owed.{who}": f"{Decimal(owed):.2f}",
                    f"bill_last_month.{who}": None if bill is None else f"{Decimal(bill):.2f}",
                    f"wo.{who}": wo,
                })
            if await s.get(m.Account, UNKNOWN_ACCOUNT) is not None:
                raise SpecError(f"{{acct.unknown}} ({UNKNOWN_ACCOUNT}) exists in the demo data")
        values["acct.unknown"] = UNKNOWN_ACCOUNT
        return values


class _Values(dict):  # type: ignore[type-arg]
    """Placeholder values; a placeholder the demo data has no value for fails its conversation."""

    def __getitem__(self, key: str) -> str:
        value = super().__getitem__(key)
        if value is None:
            raise SpecError(f"placeholder {{{key}}} has no value in the demo data")
        return value


# ------------------------------------------------------------------------------- the stack
class SmsProvider:
    """The SMS provider's API as far as the gateway uses it: accepts every message."""

    def __init__(self) -> None:
        self.n = 0
        self.url = ""

    async def one(self, request: web.Request) -> web.Response:
        await request.read()
        self.n += 1
        return web.json_response({"message_id": f"ct-{self.n}", "status": "accepted"})

    async def batch(self, request: web.Request) -> web.Response:
        data = await request.json()
        results = []
        for item in data.get("messages", []):
            self.n += 1
            results.append({"client_ref": item.get("client_ref", ""), "message_id": f"ct-{self.n}", "status": "accepted"})
        return web.json_response({"results": results})


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@dataclass
class Stack:
    core_url: str
    gateway_url: str
    gateway_app: web.Application
    core_state: CoreState
    http: aiohttp.ClientSession
    today: date


@asynccontextmanager
async def embedded_stack(work_dir: Path, interpreter: object | None = None, *,
                         settings_overrides: dict[str, Any] | None = None) -> AsyncIterator[Stack]:
    """The embedded default on loopback: core (SQLite, demo data) + gateway (SQLite, NLU)."""
    from bot.app import create_gateway_app
    from bot.migrate import BOT_MIGRATIONS, CORE_MIGRATIONS, upgrade
    from bot.settings import Settings
    from core.app import create_core_app
    from core.store import open_store

    work_dir.mkdir(parents=True, exist_ok=True)
    core_db = f"sqlite+aiosqlite:///{work_dir / 'core.db'}"
    bot_db = f"sqlite+aiosqlite:///{work_dir / 'bot.db'}"
    await upgrade(core_db, CORE_MIGRATIONS)
    await upgrade(bot_db, BOT_MIGRATIONS)
    runners: list[web.AppRunner] = []
    engine = None
    try:
        provider = SmsProvider()
        papp = web.Application()
        papp.router.add_post("/v1/messages", provider.one)
        papp.router.add_post("/v1/messages/batch", provider.batch)
        prunner, purl = await _serve(papp)
        runners.append(prunner)
        crunner, core_url = await _serve(create_core_app(core_db, seed=True))
        runners.append(crunner)
        base = Settings()  # the POWERBOT_* settings of the environment (NLU paths and texts)
        options: dict[str, Any] = dict(
            database_url=bot_db, core_url=core_url, data_dir=work_dir, port=8080,
            nlu_data_dir=base.nlu_data_dir, nlu_model_dir=base.nlu_model_dir,
            # a test harness, not traffic: no rate limits, no notification producer
            rate_limit_per_sender_per_minute=0, rate_limit_per_ip_per_minute=0,
            sms_inbound_per_minute=0, sms_outbound_per_minute=0, notify_enabled=False,
            sms_api_base_url=f"{purl}/v1", sms_api_key=SMS_API_KEY, sms_secret=SMS_SECRET,
            redis_url=None, payment_sandbox=True,  # the demo core's payments, as `powerbot run` has them
        )
        options.update(settings_overrides or {})
        settings = Settings(**options)
        gapp = create_gateway_app(settings, interpreter=interpreter)
        grunner, gateway_url = await _serve(gapp)
        runners.append(grunner)
        engine, sm = open_store(core_db)
        state = CoreState(sm)
        await state.snapshot()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TURN_TIMEOUT + 15)) as http:
            yield Stack(core_url=core_url, gateway_url=gateway_url, gateway_app=gapp, core_state=state, http=http,
                        today=datetime.now(CN_TZ).date())
    finally:
        if engine is not None:
            await engine.dispose()
        for r in reversed(runners):
            await r.cleanup()


# ------------------------------------------------------------------------------- one conversation
def conversation_id(channel: str, sender: str) -> str:
    return f"{channel}:{sender}"


async def _gateway_session(stack: Stack) -> Any:
    from bot.app import SESSIONMAKER

    return stack.gateway_app[SESSIONMAKER]()


async def _has_open_handoff(stack: Stack, conv_id: str) -> bool:
    from bot.dialogue.handoff import ACTIVE, Handoff

    async with await _gateway_session(stack) as s:
        n = await s.scalar(select(func.count()).select_from(Handoff)
                           .where(Handoff.conversation_id == conv_id, Handoff.status.in_(ACTIVE)))
    return bool(n)


async def _reset_gateway(stack: Stack, channel: str, sender: str, *, reused: bool) -> None:
    """Clear the account-wide verification counters; for a reused sender, its whole state."""
    from bot.dialogue.handoff import Handoff
    from bot.dialogue.store import Conversation as Tracker
    from bot.dialogue.store import CustomerAccount, Event, Identity, VerificationLock
    from bot.dialogue.verification import ACCOUNT_WIDE

    conv_id = conversation_id(channel, sender)
    async with await _gateway_session(stack) as s:
        await s.execute(delete(VerificationLock).where(VerificationLock.identity == ACCOUNT_WIDE))
        if reused:
            await s.execute(delete(VerificationLock).where(VerificationLock.identity == conv_id))
            await s.execute(delete(Tracker).where(Tracker.id == conv_id))
            await s.execute(delete(Event).where(Event.conversation_id == conv_id))
            await s.execute(delete(Handoff).where(Handoff.conversation_id == conv_id))
            customers = select(Identity.customer_id).where(Identity.channel == channel, Identity.sender_id == sender)
            await s.execute(delete(CustomerAccount).where(CustomerAccount.customer_id.in_(customers)))
            await s.execute(delete(Identity).where(Identity.channel == channel, Identity.sender_id == sender))
            if channel == "sms":
                from channels.sms_store import SmsOptOut

                await s.execute(delete(SmsOptOut).where(SmsOptOut.phone == sender))
        await s.commit()


async def _drop_pending(stack: Stack, conv_id: str) -> int:
    """Messages of the conversation the gateway postponed (an error in the turn) would be
    retried later, inside another conversation's diff: they are marked failed here (counted)."""
    from bot.models import InboundMessage

    async with await _gateway_session(stack) as s:
        res = await s.execute(update(InboundMessage)
                              .where(InboundMessage.conversation_id == conv_id,
                                     InboundMessage.status == "received")
                              .values(status="failed", error="conversation test ended"))
        await s.commit()
    return int(res.rowcount or 0)


async def _say_rest(stack: Stack, sender: str, text: str, message_id: str) -> list[str]:
    body = {"sender": sender, "message": text, "message_id": message_id}
    async with stack.http.post(f"{stack.gateway_url}/webhooks/rest/webhook", json=body) as r:
        if r.status != 200:
            raise RuntimeError(f"REST webhook answered {r.status}: {(await r.text())[:300]}")
        return [m.get("text") or "" for m in await r.json()]


async def _say_sms(stack: Stack, sender: str, text: str, message_id: str) -> list[str]:
    from bot.models import InboundMessage, OutboxMessage

    body = json.dumps({"from": sender, "to": "95598", "text": text, "message_id": message_id,
                       "timestamp": int(time.time())}, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json",
               "X-Signature": hmac.new(SMS_SECRET.encode(), body, hashlib.sha256).hexdigest()}
    async with await _gateway_session(stack) as s:
        before = await s.scalar(select(func.coalesce(func.max(OutboxMessage.id), 0)))
    async with stack.http.post(f"{stack.gateway_url}/channels/sms", data=body, headers=headers) as r:
        if r.status != 200:
            raise RuntimeError(f"SMS callback answered {r.status}: {(await r.text())[:300]}")
    from channels.sms import keyword_of

    keyword = keyword_of(text) is not None  # STOP/退订/TD: answered by the channel, no dialogue turn
    deadline = asyncio.get_running_loop().time() + TURN_TIMEOUT
    while True:
        async with await _gateway_session(stack) as s:
            status = None if keyword else (await s.execute(select(InboundMessage.status, InboundMessage.attempts).where(
                InboundMessage.channel == "sms", InboundMessage.sender_id == sender,
                InboundMessage.dedupe_key.contains(message_id)).order_by(InboundMessage.id.desc()).limit(1))).first()
            if keyword or (status is not None and (status[0] != "received" or status[1] > 0)):
                rows = (await s.execute(select(OutboxMessage.payload).where(
                    OutboxMessage.id > before, OutboxMessage.channel == "sms", OutboxMessage.recipient_id == sender,
                    ).order_by(OutboxMessage.id))).scalars().all()
                return [str((p or {}).get("text") or "") for p in rows]
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"the SMS turn was not processed within {TURN_TIMEOUT:.0f}s (status, attempts: {status})")
        await asyncio.sleep(0.02)


async def run_one(stack: Stack, conv: Conversation, values: dict[str, str | None], used_senders: set[str]) -> ConversationResult:
    started = time.perf_counter()
    resolver = Resolver(_Values(values))
    result = ConversationResult(conversation=conv, sender="", handoff_expected=conv.handoff)
    if conv.skip:
        result.skipped = True
        return result
    try:
        # deterministic ids: the same run gives the same answers (response variants are chosen
        # by message id); conversation ids are unique within a run, so these are too
        sender = resolver.text(conv.sender) if conv.sender else f"ct-{conv.id[:120]}"
        result.sender = sender
        key = f"{conv.channel}:{sender}"
        await _reset_gateway(stack, conv.channel, sender, reused=key in used_senders)
        used_senders.add(key)

        def resolve(value: str, *, regex: bool = False) -> str:
            return resolver.text(value, sender, regex=regex)

        expected = {kind: rows for kind, rows in conv.core.items()}
        resolved_rows = {
            kind: [ExpectedRow(fields=resolver.value(r.fields, sender), has=list(r.has),
                               contains={k: resolve(v) for k, v in r.contains.items()}) for r in rows]
            for kind, rows in expected.items()
        }
        say = _say_sms if conv.channel == "sms" else _say_rest
        for i, step in enumerate(conv.steps, 1):
            t0 = time.perf_counter()
            text = resolve(step.user)
            replies = await say(stack, sender, text, f"ct:{conv.id[:180]}:{i}")
            joined = "\n".join(replies)
            check = step.bot
            shown = {} if check is None else _resolved_check(check, resolve)
            result.turns.append(TurnResult(index=i, user=text, reply=joined, replies=len(replies), expected=shown,
                                           problems=turn_problems(check, joined, len(replies), resolve),
                                           seconds=time.perf_counter() - t0))
        created = await stack.core_state.created()
        for kind, rows in created.items():
            diff = compare_rows(resolved_rows.get(kind, []), rows)
            if kind in resolved_rows or rows:
                result.core[kind] = diff
        result.handoff_actual = await _has_open_handoff(stack, conversation_id(conv.channel, sender))
    except SpecError as exc:
        result.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - reported as this conversation's error
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            if result.sender:
                result.postponed = await _drop_pending(stack, conversation_id(conv.channel, result.sender))
            await stack.core_state.restore()
        except Exception as exc:  # noqa: BLE001
            result.error = result.error or f"restoring the core failed: {exc!r}"
        result.seconds = time.perf_counter() - started
    return result


def _resolved_check(check: BotCheck, resolve: Callable[..., str]) -> dict[str, Any]:
    out = check.as_dict()
    for key in ("says_any", "says_all", "not_says"):
        if key in out:
            out[key] = [resolve(s) for s in out[key]]
    if "matches" in out:
        out["matches"] = resolve(out["matches"], regex=True)
    return out


# ------------------------------------------------------------------------------- the run
async def arun(conversations: list[Conversation], *, interpreter: object | None = None,
               work_dir: Path | None = None, progress: Callable[[ConversationResult], None] | None = None,
               settings_overrides: dict[str, Any] | None = None) -> list[ConversationResult]:
    """Run ``conversations`` in order on one embedded stack (call with the clock pinned: ``run``)."""
    with tempfile.TemporaryDirectory(prefix="powerbot-conv-") as tmp:
        async with embedded_stack(work_dir or Path(tmp), interpreter, settings_overrides=settings_overrides) as stack:
            values = await stack.core_state.placeholder_values(stack.today)
            results = []
            used: set[str] = set()
            for conv in conversations:
                res = await run_one(stack, conv, values, used)
                results.append(res)
                if progress:
                    progress(res)
            return results


def run(conversations: list[Conversation], *, interpreter: object | None = None, work_dir: Path | None = None,
        now: datetime = PINNED_NOW, progress: Callable[[ConversationResult], None] | None = None,
        settings_overrides: dict[str, Any] | None = None) -> list[ConversationResult]:
    """Run with the clock pinned at ``now`` (it ticks on from there): the demo data, the
    placeholders and every answer depend on that moment, never on the day the suite runs."""
    import time_machine

    with time_machine.travel(now, tick=True):
        return asyncio.run(arun(conversations, interpreter=interpreter, work_dir=work_dir, progress=progress,
                                settings_overrides=settings_overrides))
