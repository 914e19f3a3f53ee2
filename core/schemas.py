"""Request and response documents of the core API (pydantic; also feed the OpenAPI document).

Money and kWh travel as decimal strings ("123.45"), times as ISO 8601 with offset (UTC),
dates as YYYY-MM-DD. Field names are snake_case.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

ACCOUNT_RE = r"^\d{10,13}$"
MOBILE_RE = r"^1[3-9]\d{9}$"
CONTACT_PHONE_RE = r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8}|95598)$"
MONTH_RE = r"^\d{4}-(0[1-9]|1[0-2])$"
TRADE_NO_RE = r"^[A-Za-z0-9_\-]{6,64}$"

WORK_ORDER_TYPES = (
    "repair",
    "outage",
    "complaint",
    "feedback",
    "violation",
    "new_connection",
    "solar",
    "ev_charging",
    "account_change",
    "invoice",
    "appointment",
)
WorkOrderType = Literal[
    "repair",
    "outage",
    "complaint",
    "feedback",
    "violation",
    "new_connection",
    "solar",
    "ev_charging",
    "account_change",
    "invoice",
    "appointment",
]
WorkOrderStatus = Literal["created", "dispatched", "in_progress", "resolved", "closed"]
Priority = Literal["low", "normal", "high", "emergency"]
OutageKind = Literal["planned", "unplanned"]
OutageStatus = Literal["scheduled", "active", "restored", "cancelled"]
Topic = Literal["outage", "bill", "work_order", "payment"]
NotifyChannel = Literal["wechat", "alipay", "sms", "email"]
Channel = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,15}$", description="wechat, alipay, sms, email, web, counter...")]
AccountNumber = Annotated[str, Field(pattern=ACCOUNT_RE, description="户号, 10–13 digits")]


def _cents(v: Decimal) -> Decimal:
    if v.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError("at most 2 decimal places")
    return v


Amount = Annotated[Decimal, Field(gt=0, le=Decimal("10000000"), description="CNY, decimal string"), AfterValidator(_cents)]
Kwh = Annotated[Decimal, Field(ge=0, le=Decimal("10000000"), description="kWh, decimal string"), AfterValidator(_cents)]


def _aware(v: datetime | None) -> datetime | None:
    if v is not None and v.tzinfo is None:
        raise ValueError("datetime needs a UTC offset, e.g. 2025-01-01T08:00:00+08:00")
    return v


AwareDT = Annotated[datetime, AfterValidator(_aware)]


class In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- accounts -------------------------------------------------------------------------------
class BindingIn(In):
    channel: Channel
    identity: str = Field(min_length=1, max_length=200)


class BindingOut(Out):
    channel: str
    identity: str
    created_at: datetime | None = None


class AccountOut(Out):
    account_number: str
    holder_name: str
    phone: str
    address: str
    district: str
    category: str
    status: str
    bindings: list[BindingOut] = []
    created_at: datetime | None = None


class AccountList(Out):
    accounts: list[AccountOut]


class CustomerOut(Out):
    """A customer as a list may show them: the account and the holder's name masked."""

    account_number: str
    masked_name: str = Field(description="first character, then one * per further character")


class CustomerList(Out):
    customers: list[CustomerOut]


# --- bills ------------------------------------------------------------------------------------
class BillIn(In):
    month: str = Field(pattern=MONTH_RE)
    kwh: Kwh | None = None
    peak_kwh: Kwh | None = None
    valley_kwh: Kwh | None = None
    due_date: date | None = None

    @model_validator(mode="after")
    def _some_usage(self) -> BillIn:
        if self.kwh is None and self.peak_kwh is None and self.valley_kwh is None:
            raise ValueError("give kwh, or peak_kwh and valley_kwh")
        return self


class BillOut(Out):
    id: int
    account_number: str
    month: str
    kwh: Decimal
    peak_kwh: Decimal | None = None
    valley_kwh: Decimal | None = None
    amount: Decimal
    paid_amount: Decimal
    balance: Decimal
    due_date: date
    status: Literal["unpaid", "partial", "paid"]
    overdue: bool
    issued_at: datetime | None = None
    paid_at: datetime | None = None


class BillList(Out):
    bills: list[BillOut]


class ArrearsOut(Out):
    account_number: str
    amount_owed: Decimal
    overdue_amount: Decimal
    unpaid_bills: list[BillOut]
    oldest_due_date: date | None = None
    credit_balance: Decimal = Field(Decimal("0.00"), description="paid money no bill took (e.g. a bill paid twice): "
                                                                 "held for the customer, to refund or set against later bills")


# --- payments -------------------------------------------------------------------------------
class PaymentIn(In):
    out_trade_no: str = Field(pattern=TRADE_NO_RE)
    account_number: AccountNumber
    amount: Amount
    channel: Channel
    status: Literal["pending", "paid"] = "pending"


class PaymentConfirmIn(In):
    trade_no: str = Field(min_length=1, max_length=64)
    total_amount: Amount


class PaymentOut(Out):
    out_trade_no: str
    account_number: str
    amount: Decimal
    channel: str
    status: Literal["pending", "paid"]
    trade_no: str | None = None
    credit_amount: Decimal = Field(Decimal("0.00"), description="part of this paid payment no unpaid bill took")
    created_at: datetime | None = None
    paid_at: datetime | None = None


class PaymentList(Out):
    payments: list[PaymentOut]


# --- outages --------------------------------------------------------------------------------
class OutageIn(In):
    kind: OutageKind
    district: str = Field(min_length=2, max_length=32)
    scope: str = Field(min_length=1, max_length=500)
    streets: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=50)
    start_at: AwareDT
    estimated_end_at: AwareDT | None = None
    cause: str = Field("", max_length=500)
    status: OutageStatus | None = None

    @model_validator(mode="after")
    def _times(self) -> OutageIn:
        if self.estimated_end_at is not None and self.estimated_end_at <= self.start_at:
            raise ValueError("estimated_end_at must be after start_at")
        return self


class OutagePatch(In):
    status: OutageStatus | None = None
    scope: str | None = Field(None, min_length=1, max_length=500)
    streets: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(None, max_length=50)
    estimated_end_at: AwareDT | None = None
    actual_end_at: AwareDT | None = None
    cause: str | None = Field(None, max_length=500)


class OutageOut(Out):
    id: int
    kind: str
    status: str
    district: str
    scope: str
    streets: list[str]
    start_at: datetime
    estimated_end_at: datetime | None = None
    actual_end_at: datetime | None = None
    cause: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


class OutageList(Out):
    outages: list[OutageOut]


# --- work orders ----------------------------------------------------------------------------
class WorkOrderIn(In):
    type: WorkOrderType
    description: str = Field(min_length=1, max_length=2000)
    account_number: AccountNumber | None = None
    priority: Priority = "normal"
    channel: Channel | None = None
    contact_phone: str | None = Field(None, pattern=CONTACT_PHONE_RE)
    address: str | None = Field(None, max_length=200)
    details: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, min_length=1, max_length=128)


class TransitionIn(In):
    status: WorkOrderStatus
    note: str | None = Field(None, max_length=1000)


class WorkOrderOut(Out):
    id: str
    type: str
    status: str
    priority: str
    account_number: str | None = None
    description: str
    channel: str | None = None
    contact_phone: str | None = None
    address: str | None = None
    details: dict[str, Any]
    sla_due_at: datetime | None = None
    created_at: datetime
    dispatched_at: datetime | None = None
    in_progress_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    updated_at: datetime | None = None
    history: list[dict[str, Any]]


class WorkOrderList(Out):
    work_orders: list[WorkOrderOut]


# --- halls ----------------------------------------------------------------------------------
class HallOut(Out):
    id: int
    name: str
    district: str
    address: str
    phone: str
    opening_hours: str


class HallList(Out):
    halls: list[HallOut]


class SlotOut(Out):
    id: int
    hall_id: int
    date: date
    period: str
    starts_at: str
    ends_at: str
    capacity: int
    booked: int
    available: int


class SlotList(Out):
    slots: list[SlotOut]


class AppointmentIn(In):
    slot_id: int = Field(gt=0)
    account_number: AccountNumber | None = None
    contact_name: str = Field(min_length=1, max_length=64)
    contact_phone: str = Field(pattern=CONTACT_PHONE_RE)
    purpose: str = Field(min_length=1, max_length=200)
    idempotency_key: str | None = Field(None, min_length=1, max_length=128)


class AppointmentOut(Out):
    id: int
    slot_id: int
    hall_id: int
    date: date
    period: str
    account_number: str | None = None
    contact_name: str
    contact_phone: str
    purpose: str
    status: str
    created_at: datetime | None = None
    cancelled_at: datetime | None = None


class AppointmentList(Out):
    appointments: list[AppointmentOut]


# --- tariffs --------------------------------------------------------------------------------
class TariffTierOut(Out):
    tier: int
    from_kwh: Decimal
    to_kwh: Decimal | None = None
    price: Decimal


class TariffOut(Out):
    category: str
    name: str
    unit: str = "CNY/kWh"
    tiers: list[TariffTierOut]
    flat_price: Decimal | None = None
    peak_price: Decimal | None = None
    valley_price: Decimal | None = None
    peak_hours: str | None = None
    valley_hours: str | None = None


class TariffList(Out):
    tariffs: list[TariffOut]


class QuoteLineOut(Out):
    label: str
    kwh: Decimal
    price: Decimal
    amount: Decimal


class QuoteOut(Out):
    category: str
    kwh: Decimal
    peak_kwh: Decimal | None = None
    valley_kwh: Decimal | None = None
    amount: Decimal
    lines: list[QuoteLineOut]


# --- subscriptions --------------------------------------------------------------------------
class SubscriptionIn(In):
    account_number: AccountNumber
    topic: Topic
    channel: NotifyChannel
    identity: str = Field(min_length=1, max_length=200)


class SubscriptionOut(Out):
    id: int
    account_number: str
    topic: str
    channel: str
    identity: str
    created_at: datetime | None = None


class SubscriptionList(Out):
    subscriptions: list[SubscriptionOut]


class DeletedOut(Out):
    deleted: int


# --- events ---------------------------------------------------------------------------------
class EventOut(Out):
    id: int
    type: str
    created_at: datetime
    payload: dict[str, Any]


class EventPageOut(Out):
    events: list[EventOut]
    next_cursor: str | None = None


class HealthOut(Out):
    status: str
    database: str


class Problem(Out):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str | None = None
    errors: list[dict[str, Any]] | None = None

    @field_validator("status")
    @classmethod
    def _http(cls, v: int) -> int:
        return v
