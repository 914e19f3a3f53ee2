"""Typed, immutable views of the core's JSON documents (client side of the contract).

Money is ``Decimal`` (the API sends decimal strings), times are timezone-aware UTC
``datetime``s, dates are ``date``s. Unknown fields are ignored so the core can grow.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _M(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Binding(_M):
    channel: str
    identity: str
    created_at: datetime | None = None


class Account(_M):
    account_number: str
    holder_name: str
    phone: str
    address: str
    district: str
    category: str  # residential | commercial
    status: str = "active"
    bindings: tuple[Binding, ...] = ()
    created_at: datetime | None = None


class Customer(_M):
    """A customer as the core lists them: the account and the holder's name masked (``张*``)."""

    account_number: str
    masked_name: str


class Bill(_M):
    id: int
    account_number: str
    month: str  # YYYY-MM
    kwh: Decimal
    peak_kwh: Decimal | None = None
    valley_kwh: Decimal | None = None
    amount: Decimal
    paid_amount: Decimal
    balance: Decimal
    due_date: date
    status: str  # unpaid | partial | paid
    overdue: bool = False
    issued_at: datetime | None = None
    paid_at: datetime | None = None


class Arrears(_M):
    account_number: str
    amount_owed: Decimal  # sum of unpaid balances (what a payment may cover at most)
    overdue_amount: Decimal  # part of it past its due date
    unpaid_bills: tuple[Bill, ...] = ()
    oldest_due_date: date | None = None
    credit_balance: Decimal = Decimal(0)  # paid money no bill took (a bill paid twice): to refund or use

    @property
    def has_arrears(self) -> bool:
        return self.amount_owed > 0


class Payment(_M):
    out_trade_no: str
    account_number: str
    amount: Decimal
    channel: str
    status: str  # pending | paid
    trade_no: str | None = None
    credit_amount: Decimal = Decimal(0)  # part of this paid payment no unpaid bill took
    created_at: datetime | None = None
    paid_at: datetime | None = None


class Outage(_M):
    id: int
    kind: str  # planned | unplanned
    status: str  # scheduled | active | restored | cancelled
    district: str
    scope: str  # human-readable area description
    streets: tuple[str, ...] = ()
    start_at: datetime
    estimated_end_at: datetime | None = None
    actual_end_at: datetime | None = None
    cause: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


class WorkOrder(_M):
    id: str  # WO + 12 digits
    type: str
    status: str  # created | dispatched | in_progress | resolved | closed
    priority: str  # low | normal | high | emergency
    account_number: str | None = None
    description: str
    channel: str | None = None
    contact_phone: str | None = None
    address: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    sla_due_at: datetime | None = None
    created_at: datetime
    dispatched_at: datetime | None = None
    in_progress_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    updated_at: datetime | None = None
    history: tuple[dict[str, Any], ...] = ()


class Hall(_M):
    id: int
    name: str
    district: str
    address: str
    phone: str = ""
    opening_hours: str = ""


class Slot(_M):
    id: int
    hall_id: int
    date: date
    period: str  # morning | afternoon
    starts_at: str  # HH:MM local time
    ends_at: str
    capacity: int
    booked: int
    available: int


class Appointment(_M):
    id: int
    slot_id: int
    hall_id: int
    date: date
    period: str
    account_number: str | None = None
    contact_name: str
    contact_phone: str
    purpose: str
    status: str  # booked | cancelled
    created_at: datetime | None = None
    cancelled_at: datetime | None = None


class TariffTier(_M):
    tier: int
    from_kwh: Decimal
    to_kwh: Decimal | None = None  # None: no upper bound
    price: Decimal


class Tariff(_M):
    category: str
    name: str
    unit: str = "CNY/kWh"
    tiers: tuple[TariffTier, ...] = ()
    flat_price: Decimal | None = None
    peak_price: Decimal | None = None
    valley_price: Decimal | None = None
    peak_hours: str | None = None  # e.g. "08:00-22:00"
    valley_hours: str | None = None  # e.g. "22:00-08:00"


class QuoteLine(_M):
    label: str
    kwh: Decimal
    price: Decimal
    amount: Decimal


class Quote(_M):
    category: str
    kwh: Decimal
    peak_kwh: Decimal | None = None
    valley_kwh: Decimal | None = None
    amount: Decimal
    lines: tuple[QuoteLine, ...] = ()


class Subscription(_M):
    id: int
    account_number: str
    topic: str  # outage | bill | work_order | payment
    channel: str  # wechat | alipay | sms | email
    identity: str  # where to deliver on that channel (openid, user id, phone, email)
    created_at: datetime | None = None


class Event(_M):
    id: int
    type: str  # outage.created | outage.updated | work_order.status_changed | bill.issued | payment.confirmed
    created_at: datetime
    payload: dict[str, Any] = Field(default_factory=dict)


class EventPage(_M):
    events: tuple[Event, ...] = ()
    next_cursor: str | None = None


class Health(_M):
    status: str
    database: str | None = None
