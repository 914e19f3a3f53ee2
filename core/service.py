"""Core business operations over the store. Handlers stay thin; every rule lives here.

Concurrency: idempotency rides on unique constraints (concurrent duplicates race on the
database and the loser reads the winner's row); counters and state changes are conditional
``UPDATE ... WHERE`` statements, correct under PostgreSQL row locks and SQLite's single writer.
Writes are issued before reads inside a transaction where possible, so SQLite takes its write
lock first (no lock-upgrade deadlocks). Events are appended last in the transaction, under a
PostgreSQL advisory lock, so event ids commit in order and a cursor never skips one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.money import cents
from common.pii import mask_account
from common.clock import utcnow

from . import models as m
from . import schemas as sc
from .pricing import CN_TZ, DEFAULT_TARIFFS, QuoteError, quote, sla_due
from .problems import ProblemError, bad_param, not_found

log = logging.getLogger("core.service")

ACCOUNT_PATTERN = re.compile(sc.ACCOUNT_RE)
WO_PATTERN = re.compile(r"^WO\d{12}$")
MONTH_PATTERN = re.compile(sc.MONTH_RE)
DISTRICT_PATTERN = re.compile(r"[\u4e00-\u9fff]{1,6}(区|县)")
SHANGHAI_DISTRICTS = (
    "浦东新区", "黄浦区", "徐汇区", "长宁区", "静安区", "普陀区", "虹口区", "杨浦区", "闵行区",
    "宝山区", "嘉定区", "金山区", "松江区", "青浦区", "奉贤区", "崇明区",
)


def district_of(address: str) -> str | None:
    """The district named in a free-text address, if any (known Shanghai names first)."""
    for d in SHANGHAI_DISTRICTS:
        if d in address:
            return d
    found = DISTRICT_PATTERN.search(address.split("市")[-1])
    return found.group(0) if found else None

NEXT_STATUS = {"created": "dispatched", "dispatched": "in_progress", "in_progress": "resolved", "resolved": "closed"}
OUTAGE_TRANSITIONS = {
    "scheduled": {"active", "cancelled", "restored"},
    "active": {"restored"},
    "restored": set(),
    "cancelled": set(),
}


def today_cn() -> date:
    return datetime.now(CN_TZ).date()


def dump(model: type[sc.Out], obj: Any, **extra: Any) -> dict[str, Any]:
    if extra:
        data = {**{k: getattr(obj, k) for k in model.model_fields if hasattr(obj, k)}, **extra}
        return model.model_validate(data).model_dump(mode="json")
    return model.model_validate(obj).model_dump(mode="json")


def body_hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def check_account_number(no: str) -> str:
    if not ACCOUNT_PATTERN.match(no):
        raise bad_param("account_number", "must be 10–13 digits")
    return no


def parse_dt(name: str, value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise bad_param(name, "must be an ISO 8601 datetime with offset") from None
    if dt.tzinfo is None:
        raise bad_param(name, "needs a UTC offset, e.g. +08:00")
    return dt


def parse_date(name: str, value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise bad_param(name, "must be a date YYYY-MM-DD") from None


def parse_decimal(name: str, value: str | None) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        d = Decimal(value)
    except Exception:  # noqa: BLE001
        raise bad_param(name, "must be a decimal number") from None
    if not d.is_finite() or d < 0 or d > Decimal("10000000"):
        raise bad_param(name, "must be a number between 0 and 10000000")
    return d


def parse_int(name: str, value: str | None, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    try:
        v = int(value)
    except ValueError:
        raise bad_param(name, "must be an integer") from None
    if not lo <= v <= hi:
        raise bad_param(name, f"must be between {lo} and {hi}")
    return v


def one_of(name: str, value: str | None, allowed: set[str] | tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    if value not in allowed:
        raise bad_param(name, "must be one of " + ", ".join(sorted(allowed)))
    return value


class CoreService:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], dialect: str) -> None:
        self.sm = sessionmaker
        self.dialect = dialect

    # --- helpers -------------------------------------------------------------------------
    async def _emit(self, s: AsyncSession, type_: str, payload: dict[str, Any]) -> None:
        if self.dialect == "postgresql":
            await s.execute(text("SELECT pg_advisory_xact_lock(95598)"))
        s.add(m.Event(type=type_, payload=json.loads(json.dumps(payload, default=str))))

    async def _account(self, s: AsyncSession, no: str, *, body: bool = False) -> m.Account:
        acc = await s.get(m.Account, no)
        if acc is None:
            if body:
                raise ProblemError(422, "unknown_account", f"account {no} does not exist")
            raise not_found("account", no)
        return acc

    async def _account_doc(self, s: AsyncSession, acc: m.Account) -> dict[str, Any]:
        rows = (
            await s.scalars(
                select(m.AccountBinding).where(m.AccountBinding.account_number == acc.account_number).order_by(m.AccountBinding.id)
            )
        ).all()
        return dump(sc.AccountOut, acc, bindings=[dump(sc.BindingOut, b) for b in rows])

    @staticmethod
    def _bill_doc(b: m.Bill, today: date) -> dict[str, Any]:
        balance = cents(b.amount - b.paid_amount)
        return dump(sc.BillOut, b, balance=balance, overdue=bool(balance > 0 and b.due_date < today))

    async def health(self) -> str:
        async with self.sm() as s:
            await s.execute(text("SELECT 1"))
        return "ok"

    async def ensure_reference_data(self) -> None:
        """Insert the default tariff table if missing (idempotent, concurrency-safe)."""
        for t in DEFAULT_TARIFFS:
            async with self.sm() as s:
                if await s.get(m.Tariff, t["category"]) is not None:
                    continue
                s.add(
                    m.Tariff(
                        **{
                            **t,
                            "flat_price": None if t["flat_price"] is None else Decimal(t["flat_price"]),
                            "peak_price": None if t["peak_price"] is None else Decimal(t["peak_price"]),
                            "valley_price": None if t["valley_price"] is None else Decimal(t["valley_price"]),
                        }
                    )
                )
                try:
                    await s.commit()
                except IntegrityError:
                    await s.rollback()

    # --- accounts ------------------------------------------------------------------------
    async def get_account(self, no: str) -> dict[str, Any]:
        check_account_number(no)
        async with self.sm() as s:
            return await self._account_doc(s, await self._account(s, no))

    async def find_accounts(self, phone: str | None, channel: str | None, identity: str | None) -> dict[str, Any]:
        async with self.sm() as s:
            if phone:
                if not re.match(r"^\+?\d{5,20}$", phone):
                    raise bad_param("phone", "must be a phone number")
                phone = phone.removeprefix("+86")
                q = select(m.Account).where(m.Account.phone == phone).order_by(m.Account.account_number).limit(50)
            elif channel and identity:
                q = (
                    select(m.Account)
                    .join(m.AccountBinding, m.AccountBinding.account_number == m.Account.account_number)
                    .where(m.AccountBinding.channel == channel, m.AccountBinding.identity == identity)
                    .order_by(m.AccountBinding.id.desc())
                    .limit(50)
                )
            else:
                raise ProblemError(400, "missing_filter", "give phone, or binding_channel and binding_identity")
            accounts = (await s.scalars(q)).all()
            return {"accounts": [await self._account_doc(s, a) for a in accounts]}

    async def bind(self, no: str, data: sc.BindingIn) -> dict[str, Any]:
        check_account_number(no)
        async with self.sm() as s:
            await self._account(s, no)
            s.add(m.AccountBinding(account_number=no, channel=data.channel, identity=data.identity))
            try:
                await s.commit()
            except IntegrityError:
                await s.rollback()  # already bound: idempotent
            return await self._account_doc(s, await self._account(s, no))

    async def unbind(self, no: str, data: sc.BindingIn) -> dict[str, Any]:
        check_account_number(no)
        async with self.sm() as s:
            await s.execute(
                delete(m.AccountBinding).where(
                    m.AccountBinding.account_number == no,
                    m.AccountBinding.channel == data.channel,
                    m.AccountBinding.identity == data.identity,
                )
            )
            acc = await self._account(s, no)
            await s.commit()
            return await self._account_doc(s, acc)

    # --- bills ---------------------------------------------------------------------------
    async def list_bills(self, no: str, month: str | None, status: str | None) -> dict[str, Any]:
        check_account_number(no)
        if month and not MONTH_PATTERN.match(month):
            raise bad_param("month", "must be YYYY-MM")
        one_of("status", status, {"unpaid", "paid", "partial"})
        async with self.sm() as s:
            await self._account(s, no)
            q = select(m.Bill).where(m.Bill.account_number == no)
            if month:
                q = q.where(m.Bill.month == month)
            if status == "unpaid":
                q = q.where(m.Bill.status.in_(("unpaid", "partial")))
            elif status:
                q = q.where(m.Bill.status == status)
            bills = (await s.scalars(q.order_by(m.Bill.month.desc()))).all()
            today = today_cn()
            return {"bills": [self._bill_doc(b, today) for b in bills]}

    async def arrears(self, no: str) -> dict[str, Any]:
        check_account_number(no)
        async with self.sm() as s:
            await self._account(s, no)
            bills = (
                await s.scalars(
                    select(m.Bill).where(m.Bill.account_number == no, m.Bill.status.in_(("unpaid", "partial"))).order_by(m.Bill.month)
                )
            ).all()
            credit = await s.scalar(
                select(func.coalesce(func.sum(m.Payment.credit_amount), 0)).where(
                    m.Payment.account_number == no, m.Payment.status == "paid", m.Payment.credit_amount > 0
                )
            )
        today = today_cn()
        docs = [self._bill_doc(b, today) for b in bills]
        owed = cents(sum((b.amount - b.paid_amount for b in bills), Decimal(0)))
        overdue = cents(sum((b.amount - b.paid_amount for b in bills if b.due_date < today), Decimal(0)))
        return dump(
            sc.ArrearsOut,
            None,
            account_number=no,
            amount_owed=owed,
            overdue_amount=overdue,
            unpaid_bills=docs,
            oldest_due_date=min((b.due_date for b in bills), default=None),
            credit_balance=cents(Decimal(str(credit or 0))),
        )

    async def issue_bill(self, no: str, data: sc.BillIn) -> tuple[int, dict[str, Any]]:
        check_account_number(no)
        async with self.sm() as s:
            acc = await self._account(s, no)
            tariff = await s.get(m.Tariff, acc.category)
            if tariff is None:
                raise ProblemError(422, "no_tariff", f"no tariff for category {acc.category}")
            try:
                q = quote(tariff_dict(tariff), data.kwh, data.peak_kwh, data.valley_kwh)
            except QuoteError as exc:
                raise ProblemError(422, "invalid_usage", str(exc)) from None
            y, mo = map(int, data.month.split("-"))
            due = data.due_date or (date(y + (mo == 12), mo % 12 + 1, 20))
            bill = m.Bill(
                account_number=no,
                month=data.month,
                kwh=q["kwh"],
                peak_kwh=q["peak_kwh"],
                valley_kwh=q["valley_kwh"],
                amount=q["amount"],
                paid_amount=Decimal("0.00"),
                due_date=due,
                status="unpaid",
                issued_at=utcnow(),
            )
            s.add(bill)
            try:
                await s.flush()
            except IntegrityError:
                await s.rollback()
                existing = (await s.scalars(select(m.Bill).where(m.Bill.account_number == no, m.Bill.month == data.month))).one()
                if existing.kwh != q["kwh"]:
                    raise ProblemError(409, "bill_exists", f"a different bill for {data.month} was already issued") from None
                return 200, self._bill_doc(existing, today_cn())
            doc = self._bill_doc(bill, today_cn())
            await self._emit(
                s,
                "bill.issued",
                {"account_number": no, "bill_id": bill.id, "month": bill.month, "amount": doc["amount"], "due_date": doc["due_date"]},
            )
            await s.commit()
            return 201, doc

    # --- payments ------------------------------------------------------------------------
    async def _settle(self, s: AsyncSession, account_number: str, amount: Decimal, at: datetime) -> Decimal:
        """Apply ``amount`` to unpaid bills, oldest first; returns what could not be applied."""
        q = select(m.Bill).where(m.Bill.account_number == account_number, m.Bill.status.in_(("unpaid", "partial"))).order_by(m.Bill.month)
        if self.dialect == "postgresql":
            q = q.with_for_update()
        left = amount
        for bill in (await s.scalars(q)).all():
            if left <= 0:
                break
            part = min(left, bill.amount - bill.paid_amount)
            bill.paid_amount = cents(bill.paid_amount + part)
            bill.status = "paid" if bill.paid_amount >= bill.amount else "partial"
            if bill.status == "paid":
                bill.paid_at = at
            left -= part
        return cents(left)

    async def create_payment(self, data: sc.PaymentIn) -> tuple[int, dict[str, Any]]:
        async with self.sm() as s:
            await self._account(s, data.account_number, body=True)
            now = utcnow()
            pay = m.Payment(
                out_trade_no=data.out_trade_no,
                account_number=data.account_number,
                amount=cents(data.amount),
                channel=data.channel,
                status="pending",
                created_at=now,
            )
            s.add(pay)
            try:
                await s.flush()  # takes the write lock / the unique-key slot first
            except IntegrityError:
                await s.rollback()
                existing = (await s.scalars(select(m.Payment).where(m.Payment.out_trade_no == data.out_trade_no))).one()
                same = (
                    existing.account_number == data.account_number
                    and cents(existing.amount) == cents(data.amount)
                    and existing.channel == data.channel
                )
                if not same:
                    raise ProblemError(
                        409, "idempotency_conflict", f"out_trade_no {data.out_trade_no} was already used for another payment"
                    ) from None
                return 200, dump(sc.PaymentOut, existing)
            owed = await s.scalar(
                select(func.coalesce(func.sum(m.Bill.amount - m.Bill.paid_amount), 0)).where(
                    m.Bill.account_number == data.account_number, m.Bill.status.in_(("unpaid", "partial"))
                )
            )
            owed = cents(Decimal(str(owed or 0)))
            if owed <= 0:
                await s.rollback()
                raise ProblemError(422, "nothing_owed", f"account {mask_account(data.account_number)} owes nothing", amount_owed="0.00")
            if cents(data.amount) > owed:
                await s.rollback()
                raise ProblemError(
                    422, "amount_exceeds_owed", f"amount {cents(data.amount)} exceeds the {owed} owed", amount_owed=str(owed)
                )
            if data.status == "paid":
                pay.status = "paid"
                pay.paid_at = now
                pay.credit_amount = await self._settle(s, data.account_number, pay.amount, now)
                await self._emit(s, "payment.confirmed", self._payment_event(pay))
            await s.commit()
            log.info("payment %s created for %s", data.out_trade_no, mask_account(data.account_number))
            return 201, dump(sc.PaymentOut, pay)

    @staticmethod
    def _payment_event(p: m.Payment) -> dict[str, Any]:
        return {
            "out_trade_no": p.out_trade_no,
            "account_number": p.account_number,
            "amount": str(cents(p.amount)),
            "channel": p.channel,
            "trade_no": p.trade_no,
            "credit_amount": str(cents(Decimal(p.credit_amount or 0))),
        }

    async def confirm_payment(self, out_trade_no: str, data: sc.PaymentConfirmIn) -> dict[str, Any]:
        async with self.sm() as s:
            now = utcnow()
            pay = (await s.scalars(select(m.Payment).where(m.Payment.out_trade_no == out_trade_no))).one_or_none()
            if pay is None:
                raise not_found("payment", out_trade_no)
            if cents(data.total_amount) != cents(pay.amount):
                raise ProblemError(409, "amount_mismatch", f"total_amount {data.total_amount} differs from the payment's {pay.amount}")
            res = await s.execute(
                update(m.Payment)
                .where(m.Payment.out_trade_no == out_trade_no, m.Payment.status == "pending")
                .values(status="paid", trade_no=data.trade_no, paid_at=now)
            )
            if res.rowcount != 1:  # already confirmed (maybe concurrently): idempotent or conflict
                await s.rollback()
                s.expire_all()
                pay = (await s.scalars(select(m.Payment).where(m.Payment.out_trade_no == out_trade_no))).one()
                if pay.trade_no not in (None, data.trade_no):
                    raise ProblemError(409, "already_confirmed", f"payment {out_trade_no} was confirmed with another trade_no")
                return dump(sc.PaymentOut, pay)
            await s.refresh(pay)
            # What no unpaid bill takes (the bills were paid meanwhile, e.g. through another
            # order) stays on the payment as the account's credit, never silently dropped.
            pay.credit_amount = await self._settle(s, pay.account_number, pay.amount, now)
            if pay.credit_amount > 0:
                log.warning("payment %s for %s: %s not applied to any bill, kept as credit",
                            out_trade_no, mask_account(pay.account_number), pay.credit_amount)
            await self._emit(s, "payment.confirmed", self._payment_event(pay))
            await s.commit()
            return dump(sc.PaymentOut, pay)

    async def get_payment(self, out_trade_no: str) -> dict[str, Any]:
        async with self.sm() as s:
            pay = (await s.scalars(select(m.Payment).where(m.Payment.out_trade_no == out_trade_no))).one_or_none()
            if pay is None:
                raise not_found("payment", out_trade_no)
            return dump(sc.PaymentOut, pay)

    async def list_payments(self, no: str) -> dict[str, Any]:
        check_account_number(no)
        async with self.sm() as s:
            await self._account(s, no)
            rows = (
                await s.scalars(select(m.Payment).where(m.Payment.account_number == no).order_by(m.Payment.id.desc()).limit(200))
            ).all()
            return {"payments": [dump(sc.PaymentOut, p) for p in rows]}

    # --- outages -------------------------------------------------------------------------
    @staticmethod
    def outage_matches_address(o: m.Outage, address: str) -> bool:
        if o.district not in address and district_of(address) is not None:
            return False  # the address names another district
        if o.streets:
            return any(street in address for street in o.streets)
        return o.district in address or address in o.scope

    async def list_outages(self, q: dict[str, str]) -> dict[str, Any]:
        status = one_of("status", q.get("status"), ("scheduled", "active", "restored", "cancelled"))
        kind = one_of("kind", q.get("kind"), ("planned", "unplanned"))
        active_at = parse_dt("active_at", q.get("active_at"))
        after = parse_dt("starts_after", q.get("starts_after"))
        before = parse_dt("starts_before", q.get("starts_before"))
        limit = parse_int("limit", q.get("limit"), 200, 1, 1000)
        address = (q.get("address") or "").strip() or None
        stmt = select(m.Outage)
        if q.get("district"):
            stmt = stmt.where(m.Outage.district == q["district"])
        if status:
            stmt = stmt.where(m.Outage.status == status)
        if kind:
            stmt = stmt.where(m.Outage.kind == kind)
        if after:
            stmt = stmt.where(m.Outage.start_at >= after)
        if before:
            stmt = stmt.where(m.Outage.start_at < before)
        if active_at:
            stmt = stmt.where(
                m.Outage.status != "cancelled",
                m.Outage.start_at <= active_at,
                or_(
                    and_(m.Outage.actual_end_at.is_not(None), m.Outage.actual_end_at > active_at),
                    and_(
                        m.Outage.actual_end_at.is_(None),
                        or_(m.Outage.estimated_end_at.is_(None), m.Outage.estimated_end_at > active_at, m.Outage.status == "active"),
                    ),
                ),
            )
        async with self.sm() as s:
            rows = (await s.scalars(stmt.order_by(m.Outage.start_at, m.Outage.id).limit(5000))).all()
        if address:
            rows = [o for o in rows if self.outage_matches_address(o, address)]
        return {"outages": [dump(sc.OutageOut, o) for o in rows[:limit]]}

    async def get_outage(self, outage_id: int) -> dict[str, Any]:
        async with self.sm() as s:
            o = await s.get(m.Outage, outage_id)
            if o is None:
                raise not_found("outage", outage_id)
            return dump(sc.OutageOut, o)

    async def create_outage(self, data: sc.OutageIn, key: str | None) -> tuple[int, dict[str, Any]]:
        now = utcnow()
        status = data.status or ("scheduled" if data.kind == "planned" else "active")
        async with self.sm() as s:
            o = m.Outage(
                kind=data.kind,
                status=status,
                district=data.district,
                scope=data.scope,
                streets=list(data.streets),
                start_at=data.start_at,
                estimated_end_at=data.estimated_end_at,
                cause=data.cause,
                idempotency_key=key,
                created_at=now,
                updated_at=now,
            )
            s.add(o)
            try:
                await s.flush()
            except IntegrityError:
                await s.rollback()
                existing = (await s.scalars(select(m.Outage).where(m.Outage.idempotency_key == key))).one()
                return 200, dump(sc.OutageOut, existing)
            doc = dump(sc.OutageOut, o)
            await self._emit(s, "outage.created", doc)
            await s.commit()
            return 201, doc

    async def update_outage(self, outage_id: int, data: sc.OutagePatch) -> dict[str, Any]:
        changes = data.model_dump(exclude_unset=True)
        if not changes:
            raise ProblemError(422, "empty_patch", "nothing to change")
        async with self.sm() as s:
            # a no-op write first: PostgreSQL row lock / SQLite write lock, then read consistently
            await s.execute(
                update(m.Outage)
                .where(m.Outage.id == outage_id)
                .values(updated_at=m.Outage.updated_at)
                .execution_options(synchronize_session=False)
            )
            o = await s.get(m.Outage, outage_id)
            if o is None:
                raise not_found("outage", outage_id)
            new_status = changes.get("status")
            if new_status and new_status != o.status and new_status not in OUTAGE_TRANSITIONS[o.status]:
                raise ProblemError(409, "illegal_transition", f"outage {outage_id} cannot go from {o.status} to {new_status}")
            changed = {}
            for k, v in changes.items():
                if getattr(o, k) != v:
                    setattr(o, k, v)
                    changed[k] = v
            if new_status == "restored" and o.actual_end_at is None:
                o.actual_end_at = utcnow()
                changed["actual_end_at"] = o.actual_end_at
            if not changed:
                return dump(sc.OutageOut, o)
            o.updated_at = utcnow()
            doc = dump(sc.OutageOut, o)
            await self._emit(s, "outage.updated", {**doc, "changed": sorted(changed)})
            await s.commit()
            return doc

    # --- work orders ---------------------------------------------------------------------
    async def create_work_order(self, data: sc.WorkOrderIn, key: str | None) -> tuple[int, dict[str, Any]]:
        fields = data.model_dump(mode="json", exclude={"idempotency_key"})
        digest = body_hash(fields)
        for _attempt in range(5):
            async with self.sm() as s:
                district = None
                if data.account_number:
                    acc = await self._account(s, data.account_number, body=True)
                    district = acc.district
                if district is None and data.address:
                    district = district_of(data.address)
                now = utcnow()
                wo_id = "WO" + now.astimezone(CN_TZ).strftime("%y%m%d") + f"{secrets.randbelow(10**6):06d}"
                wo = m.WorkOrder(
                    id=wo_id,
                    type=data.type,
                    status="created",
                    priority=data.priority,
                    account_number=data.account_number,
                    description=data.description,
                    channel=data.channel,
                    contact_phone=data.contact_phone,
                    address=data.address,
                    details=data.details,
                    history=[{"status": "created", "at": now.isoformat(), "note": None}],
                    idempotency_key=key,
                    request_hash=digest,
                    sla_due_at=sla_due(data.type, data.priority, district, now),
                    created_at=now,
                    updated_at=now,
                )
                s.add(wo)
                try:
                    await s.flush()
                except IntegrityError:
                    await s.rollback()
                    if key is not None:
                        existing = (await s.scalars(select(m.WorkOrder).where(m.WorkOrder.idempotency_key == key))).one_or_none()
                        if existing is not None:
                            if existing.request_hash != digest:
                                raise ProblemError(
                                    409, "idempotency_conflict", "Idempotency-Key was already used with a different request"
                                ) from None
                            return 200, dump(sc.WorkOrderOut, existing)
                    continue  # id collision: draw another number
                doc = dump(sc.WorkOrderOut, wo)
                await self._emit(s, "work_order.status_changed", self._wo_event(wo, None, "created", None))
                await s.commit()
                log.info("work order %s (%s) created", wo_id, data.type)
                return 201, doc
        raise ProblemError(503, "id_exhausted", "could not allocate a work order id, retry")

    @staticmethod
    def _wo_event(wo: m.WorkOrder, old: str | None, new: str, note: str | None) -> dict[str, Any]:
        return {
            "id": wo.id,
            "type": wo.type,
            "account_number": wo.account_number,
            "channel": wo.channel,
            "contact_phone": wo.contact_phone,
            "from_status": old,
            "status": new,
            "note": note,
        }

    async def get_work_order(self, wo_id: str) -> dict[str, Any]:
        if not WO_PATTERN.match(wo_id):
            raise bad_param("id", "work order ids are WO followed by 12 digits")
        async with self.sm() as s:
            wo = await s.get(m.WorkOrder, wo_id)
            if wo is None:
                raise not_found("work_order", wo_id)
            return dump(sc.WorkOrderOut, wo)

    async def list_work_orders(self, q: dict[str, str]) -> dict[str, Any]:
        stmt = select(m.WorkOrder)
        if q.get("account_number"):
            stmt = stmt.where(m.WorkOrder.account_number == check_account_number(q["account_number"]))
        if q.get("contact_phone"):
            stmt = stmt.where(m.WorkOrder.contact_phone == q["contact_phone"])
        status = one_of("status", q.get("status"), tuple(NEXT_STATUS) + ("closed",))
        if status:
            stmt = stmt.where(m.WorkOrder.status == status)
        wo_type = one_of("type", q.get("type"), sc.WORK_ORDER_TYPES)
        if wo_type:
            stmt = stmt.where(m.WorkOrder.type == wo_type)
        limit = parse_int("limit", q.get("limit"), 50, 1, 200)
        async with self.sm() as s:
            rows = (await s.scalars(stmt.order_by(m.WorkOrder.created_at.desc(), m.WorkOrder.id.desc()).limit(limit))).all()
            return {"work_orders": [dump(sc.WorkOrderOut, w) for w in rows]}

    async def transition_work_order(self, wo_id: str, data: sc.TransitionIn) -> dict[str, Any]:
        if not WO_PATTERN.match(wo_id):
            raise bad_param("id", "work order ids are WO followed by 12 digits")
        for _attempt in range(3):
            async with self.sm() as s:
                wo = await s.get(m.WorkOrder, wo_id)
                if wo is None:
                    raise not_found("work_order", wo_id)
                old = wo.status
                if data.status == old:
                    return dump(sc.WorkOrderOut, wo)
                if NEXT_STATUS.get(old) != data.status:
                    raise ProblemError(
                        409,
                        "illegal_transition",
                        f"work order {wo_id} is {old}; next allowed status is {NEXT_STATUS.get(old) or 'none (closed)'}",
                    )
                now = utcnow()
                history = list(wo.history or []) + [{"status": data.status, "at": now.isoformat(), "note": data.note}]
                res = await s.execute(
                    update(m.WorkOrder)
                    .where(m.WorkOrder.id == wo_id, m.WorkOrder.status == old)
                    .values({"status": data.status, f"{data.status}_at": now, "updated_at": now, "history": history})
                    .execution_options(synchronize_session=False)
                )
                if res.rowcount != 1:
                    await s.rollback()
                    continue  # somebody moved it concurrently: re-evaluate
                await self._emit(s, "work_order.status_changed", self._wo_event(wo, old, data.status, data.note))
                await s.commit()
                s.expire_all()
                return dump(sc.WorkOrderOut, await s.get(m.WorkOrder, wo_id))
        raise ProblemError(409, "concurrent_update", f"work order {wo_id} changed concurrently, retry")

    # --- halls & appointments ------------------------------------------------------------
    async def list_halls(self, district: str | None) -> dict[str, Any]:
        stmt = select(m.Hall).order_by(m.Hall.id)
        if district:
            stmt = stmt.where(m.Hall.district == district)
        async with self.sm() as s:
            return {"halls": [dump(sc.HallOut, h) for h in (await s.scalars(stmt)).all()]}

    @staticmethod
    def _slot_doc(sl: m.Slot) -> dict[str, Any]:
        return dump(sc.SlotOut, sl, available=max(0, sl.capacity - sl.booked))

    async def list_slots(self, hall_id: int, day: date | None, only_available: bool) -> dict[str, Any]:
        async with self.sm() as s:
            if await s.get(m.Hall, hall_id) is None:
                raise not_found("hall", hall_id)
            stmt = select(m.Slot).where(m.Slot.hall_id == hall_id)
            if day:
                stmt = stmt.where(m.Slot.date == day)
            else:
                today = today_cn()
                stmt = stmt.where(m.Slot.date >= today, m.Slot.date < today + timedelta(days=15))
            if only_available:
                stmt = stmt.where(m.Slot.booked < m.Slot.capacity)
            rows = (await s.scalars(stmt.order_by(m.Slot.date, m.Slot.starts_at))).all()
            return {"slots": [self._slot_doc(x) for x in rows]}

    @staticmethod
    def _appt_doc(a: m.Appointment, sl: m.Slot) -> dict[str, Any]:
        return dump(sc.AppointmentOut, a, hall_id=sl.hall_id, date=sl.date, period=sl.period)

    async def book(self, data: sc.AppointmentIn, key: str | None) -> tuple[int, dict[str, Any]]:
        fields = data.model_dump(mode="json", exclude={"idempotency_key"})
        digest = body_hash(fields)
        async with self.sm() as s:
            sl = await s.get(m.Slot, data.slot_id)
            if sl is None:
                raise ProblemError(422, "unknown_slot", f"slot {data.slot_id} does not exist")
            if data.account_number:
                await self._account(s, data.account_number, body=True)
            appt = m.Appointment(
                slot_id=data.slot_id,
                account_number=data.account_number,
                contact_name=data.contact_name,
                contact_phone=data.contact_phone,
                purpose=data.purpose,
                status="booked",
                idempotency_key=key,
                request_hash=digest,
                created_at=utcnow(),
            )
            s.add(appt)
            try:
                await s.flush()
            except IntegrityError:
                await s.rollback()
                existing = (await s.scalars(select(m.Appointment).where(m.Appointment.idempotency_key == key))).one()
                if existing.request_hash != digest:
                    raise ProblemError(409, "idempotency_conflict", "Idempotency-Key was already used with a different request") from None
                await s.refresh(sl)
                return 200, self._appt_doc(existing, sl)
            slot_label = f"slot {sl.id} ({sl.date} {sl.period})"
            if sl.date < today_cn():
                await s.rollback()
                raise ProblemError(422, "slot_in_past", f"{slot_label} is in the past")
            res = await s.execute(
                update(m.Slot)
                .where(m.Slot.id == sl.id, m.Slot.booked < m.Slot.capacity)
                .values(booked=m.Slot.booked + 1)
                .execution_options(synchronize_session=False)
            )
            if res.rowcount != 1:
                await s.rollback()
                raise ProblemError(409, "slot_full", f"{slot_label} is fully booked")
            await s.commit()
            return 201, self._appt_doc(appt, sl)

    async def get_appointment(self, appt_id: int) -> dict[str, Any]:
        async with self.sm() as s:
            a = await s.get(m.Appointment, appt_id)
            if a is None:
                raise not_found("appointment", appt_id)
            return self._appt_doc(a, await s.get(m.Slot, a.slot_id))  # type: ignore[arg-type]

    async def list_appointments(self, q: dict[str, str]) -> dict[str, Any]:
        """An account's appointments (or a contact phone's), the soonest visit first."""
        if not q.get("account_number") and not q.get("contact_phone"):
            raise bad_param("account_number", "give account_number or contact_phone")
        stmt = select(m.Appointment, m.Slot).join(m.Slot, m.Slot.id == m.Appointment.slot_id)
        if q.get("account_number"):
            stmt = stmt.where(m.Appointment.account_number == check_account_number(q["account_number"]))
        if q.get("contact_phone"):
            stmt = stmt.where(m.Appointment.contact_phone == q["contact_phone"])
        status = one_of("status", q.get("status"), ("booked", "cancelled"))
        if status:
            stmt = stmt.where(m.Appointment.status == status)
        async with self.sm() as s:
            rows = (await s.execute(stmt.order_by(m.Slot.date, m.Slot.starts_at, m.Appointment.id))).all()
            return {"appointments": [self._appt_doc(a, sl) for a, sl in rows]}

    async def cancel(self, appt_id: int) -> dict[str, Any]:
        async with self.sm() as s:
            res = await s.execute(
                update(m.Appointment)
                .where(m.Appointment.id == appt_id, m.Appointment.status == "booked")
                .values(status="cancelled", cancelled_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if res.rowcount == 1:
                slot_id = await s.scalar(select(m.Appointment.slot_id).where(m.Appointment.id == appt_id))
                await s.execute(
                    update(m.Slot)
                    .where(m.Slot.id == slot_id, m.Slot.booked > 0)
                    .values(booked=m.Slot.booked - 1)
                    .execution_options(synchronize_session=False)
                )
                await s.commit()
            else:
                await s.rollback()
        return await self.get_appointment(appt_id)

    # --- tariffs -------------------------------------------------------------------------
    async def _tariff(self, category: str) -> dict[str, Any]:
        async with self.sm() as s:
            t = await s.get(m.Tariff, category)
            if t is None:
                raise not_found("tariff", category)
            return tariff_dict(t)

    async def list_tariffs(self) -> dict[str, Any]:
        async with self.sm() as s:
            rows = (await s.scalars(select(m.Tariff).order_by(m.Tariff.category))).all()
            return {"tariffs": [sc.TariffOut.model_validate(tariff_dict(t)).model_dump(mode="json") for t in rows]}

    async def get_tariff(self, category: str) -> dict[str, Any]:
        return sc.TariffOut.model_validate(await self._tariff(category)).model_dump(mode="json")

    async def quote(self, category: str, q: dict[str, str]) -> dict[str, Any]:
        kwh = parse_decimal("kwh", q.get("kwh"))
        peak = parse_decimal("peak_kwh", q.get("peak_kwh"))
        valley = parse_decimal("valley_kwh", q.get("valley_kwh"))
        tariff = await self._tariff(category)
        try:
            return sc.QuoteOut.model_validate(quote(tariff, kwh, peak, valley)).model_dump(mode="json")
        except QuoteError as exc:
            raise ProblemError(400, "invalid_parameter", str(exc)) from None

    # --- subscriptions -------------------------------------------------------------------
    def _sub_filter(self, stmt: Any, q: dict[str, str]) -> Any:
        # filters are lenient (an unknown channel simply matches nothing); creation is strict
        if q.get("account_number"):
            stmt = stmt.where(m.Subscription.account_number == check_account_number(q["account_number"]))
        for name in ("topic", "channel"):
            value = q.get(name)
            if value:
                if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", value):
                    raise bad_param(name, "must be a lowercase name")
                stmt = stmt.where(getattr(m.Subscription, name) == value)
        if q.get("identity"):
            stmt = stmt.where(m.Subscription.identity == q["identity"])
        return stmt

    async def list_subscriptions(self, q: dict[str, str]) -> dict[str, Any]:
        stmt = self._sub_filter(select(m.Subscription), q)
        if q.get("district"):
            stmt = stmt.join(m.Account, m.Account.account_number == m.Subscription.account_number).where(
                m.Account.district == q["district"]
            )
        if q.get("after_id"):  # keyset paging for large fan-outs (notifications)
            stmt = stmt.where(m.Subscription.id > parse_int("after_id", q["after_id"], 0, 0, 2**62))
        limit = parse_int("limit", q.get("limit"), 1000, 1, 10000)
        async with self.sm() as s:
            rows = (await s.scalars(stmt.order_by(m.Subscription.id).limit(limit))).all()
            return {"subscriptions": [dump(sc.SubscriptionOut, x) for x in rows]}

    async def subscribe(self, data: sc.SubscriptionIn) -> tuple[int, dict[str, Any]]:
        async with self.sm() as s:
            await self._account(s, data.account_number, body=True)
            sub = m.Subscription(**data.model_dump(), created_at=utcnow())
            s.add(sub)
            try:
                await s.commit()
                return 201, dump(sc.SubscriptionOut, sub)
            except IntegrityError:
                await s.rollback()
                existing = (
                    await s.scalars(
                        select(m.Subscription).where(
                            m.Subscription.account_number == data.account_number,
                            m.Subscription.topic == data.topic,
                            m.Subscription.channel == data.channel,
                            m.Subscription.identity == data.identity,
                        )
                    )
                ).one()
                return 200, dump(sc.SubscriptionOut, existing)

    async def unsubscribe(self, q: dict[str, str]) -> dict[str, Any]:
        if not q.get("account_number"):
            raise bad_param("account_number", "required")
        async with self.sm() as s:
            ids = (await s.scalars(self._sub_filter(select(m.Subscription.id), q))).all()
            if ids:
                await s.execute(delete(m.Subscription).where(m.Subscription.id.in_(ids)))
                await s.commit()
            return {"deleted": len(ids)}

    # --- events --------------------------------------------------------------------------
    async def read_events(self, q: dict[str, str]) -> dict[str, Any]:
        limit = parse_int("limit", q.get("limit"), 100, 1, 1000)
        after_raw = q.get("after") or None
        types = [t for t in (q.get("type") or "").split(",") if t]
        async with self.sm() as s:
            if after_raw == "latest":
                last = await s.scalar(select(func.max(m.Event.id)))
                return {"events": [], "next_cursor": str(last or 0)}
            after = 0
            if after_raw is not None:
                if not after_raw.isdigit():
                    raise bad_param("after", "must be a cursor returned as next_cursor, or 'latest'")
                after = int(after_raw)
            stmt = select(m.Event).where(m.Event.id > after)
            if types:
                stmt = stmt.where(m.Event.type.in_(types))
            rows = (await s.scalars(stmt.order_by(m.Event.id).limit(limit))).all()
        return {
            "events": [dump(sc.EventOut, e) for e in rows],
            "next_cursor": str(rows[-1].id if rows else after),
        }


def tariff_dict(t: m.Tariff) -> dict[str, Any]:
    return {
        "category": t.category,
        "name": t.name,
        "tiers": t.tiers or [],
        "flat_price": t.flat_price,
        "peak_price": t.peak_price,
        "valley_price": t.valley_price,
        "peak_hours": t.peak_hours,
        "valley_hours": t.valley_hours,
    }
