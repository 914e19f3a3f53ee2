"""Tables of the core store (its own ``Base``; Alembic env in ``core/migrations``).

Money is ``Numeric(12, 2)``; times are timezone-aware (``UTCDateTime`` also makes SQLite's naive
values aware again). Idempotency is enforced by unique constraints so that concurrent duplicate
requests race on the database, not in Python.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.clock import utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")
Money = Numeric(12, 2)
Kwh = Numeric(12, 2)
Price = Numeric(8, 4)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always hands back aware UTC datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a timezone-aware column")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime(), date: Date, Decimal: Money}


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (Index("ix_accounts_phone", "phone"), Index("ix_accounts_district", "district"))

    account_number: Mapped[str] = mapped_column(String(13), primary_key=True)
    holder_name: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(200))
    district: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(20), default="residential")
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AccountBinding(Base):
    __tablename__ = "account_bindings"
    __table_args__ = (
        UniqueConstraint("account_number", "channel", "identity", name="uq_binding"),
        Index("ix_binding_identity", "channel", "identity"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_number: Mapped[str] = mapped_column(ForeignKey("accounts.account_number", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    identity: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Bill(Base):
    __tablename__ = "bills"
    __table_args__ = (
        UniqueConstraint("account_number", "month", name="uq_bill_month"),
        Index("ix_bills_account_status", "account_number", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_number: Mapped[str] = mapped_column(ForeignKey("accounts.account_number", ondelete="CASCADE"))
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    kwh: Mapped[Decimal] = mapped_column(Kwh)
    peak_kwh: Mapped[Decimal | None] = mapped_column(Kwh, nullable=True)
    valley_kwh: Mapped[Decimal | None] = mapped_column(Kwh, nullable=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    paid_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    due_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10), default="unpaid")  # unpaid|partial|paid
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_account", "account_number", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    out_trade_no: Mapped[str] = mapped_column(String(64), unique=True)
    account_number: Mapped[str] = mapped_column(ForeignKey("accounts.account_number"))
    amount: Mapped[Decimal] = mapped_column(Money)
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending|paid
    trade_no: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # the part of a paid payment no unpaid bill was left to take (the bills were already paid,
    # say by another order): money the account holds as a credit until it is refunded or used
    credit_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"), server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Outage(Base):
    __tablename__ = "outages"
    __table_args__ = (
        Index("ix_outages_district_start", "district", "start_at"),
        Index("ix_outages_status", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(10))  # planned|unplanned
    status: Mapped[str] = mapped_column(String(12))  # scheduled|active|restored|cancelled
    district: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(500))
    streets: Mapped[list[str]] = mapped_column(JSON, default=list)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    estimated_end_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    actual_end_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cause: Mapped[str] = mapped_column(String(500), default="")
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WorkOrder(Base):
    __tablename__ = "work_orders"
    __table_args__ = (
        Index("ix_wo_account", "account_number", "created_at"),
        Index("ix_wo_status", "status"),
        Index("ix_wo_phone", "contact_phone"),
    )

    id: Mapped[str] = mapped_column(String(14), primary_key=True)  # WO + 12 digits
    type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12), default="created")
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    account_number: Mapped[str | None] = mapped_column(ForeignKey("accounts.account_number"), nullable=True)
    description: Mapped[str] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(16), nullable=True)
    contact_phone: Mapped[str | None] = mapped_column(String(20), nullable=True)
    address: Mapped[str | None] = mapped_column(String(200), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sla_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    in_progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Hall(Base):
    __tablename__ = "halls"
    __table_args__ = (Index("ix_halls_district", "district"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    district: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(32), default="")
    opening_hours: Mapped[str] = mapped_column(String(100), default="")


class Slot(Base):
    __tablename__ = "slots"
    __table_args__ = (UniqueConstraint("hall_id", "date", "period", name="uq_slot"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    hall_id: Mapped[int] = mapped_column(ForeignKey("halls.id", ondelete="CASCADE"))
    date: Mapped[date] = mapped_column(Date)
    period: Mapped[str] = mapped_column(String(10))  # morning|afternoon
    starts_at: Mapped[str] = mapped_column(String(5))
    ends_at: Mapped[str] = mapped_column(String(5))
    capacity: Mapped[int] = mapped_column(Integer)
    booked: Mapped[int] = mapped_column(Integer, default=0)


class Appointment(Base):
    __tablename__ = "appointments"
    __table_args__ = (Index("ix_appt_slot", "slot_id"), Index("ix_appt_account", "account_number"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("slots.id"))
    account_number: Mapped[str | None] = mapped_column(ForeignKey("accounts.account_number"), nullable=True)
    contact_name: Mapped[str] = mapped_column(String(64))
    contact_phone: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="booked")  # booked|cancelled
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Tariff(Base):
    __tablename__ = "tariffs"

    category: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    tiers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{tier, from_kwh, to_kwh, price}]
    flat_price: Mapped[Decimal | None] = mapped_column(Price, nullable=True)
    peak_price: Mapped[Decimal | None] = mapped_column(Price, nullable=True)
    valley_price: Mapped[Decimal | None] = mapped_column(Price, nullable=True)
    peak_hours: Mapped[str | None] = mapped_column(String(20), nullable=True)
    valley_hours: Mapped[str | None] = mapped_column(String(20), nullable=True)


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("account_number", "topic", "channel", "identity", name="uq_subscription"),
        Index("ix_sub_topic", "topic", "account_number"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_number: Mapped[str] = mapped_column(ForeignKey("accounts.account_number", ondelete="CASCADE"))
    topic: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(16))
    identity: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_type", "type", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
