"""Reference data and pure computations: the tariff table, quotes, work-order SLAs.

Residential (simplified Shanghai-style): monthly tiers 0–230 kWh @0.5283, 231–400 @0.5783,
>400 @0.8283 CNY/kWh; with a time-of-use meter, peak (08:00–22:00) 0.617 and valley
(22:00–08:00) 0.307 CNY/kWh plus the tier surcharges (+0.05 in tier 2, +0.30 in tier 3).
Commercial: one flat price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from common.money import cents

from .work_calendar import WorkCalendar, default_calendar

CN_TZ = ZoneInfo("Asia/Shanghai")
CENT = Decimal("0.01")

DEFAULT_TARIFFS: list[dict[str, Any]] = [
    {
        "category": "residential",
        "name": "居民生活用电（一户一表，阶梯+峰谷）",
        "tiers": [
            {"tier": 1, "from_kwh": "0", "to_kwh": "230", "price": "0.5283"},
            {"tier": 2, "from_kwh": "230", "to_kwh": "400", "price": "0.5783"},
            {"tier": 3, "from_kwh": "400", "to_kwh": None, "price": "0.8283"},
        ],
        "flat_price": None,
        "peak_price": "0.6170",
        "valley_price": "0.3070",
        "peak_hours": "08:00-22:00",
        "valley_hours": "22:00-08:00",
    },
    {
        "category": "commercial",
        "name": "一般工商业用电（单一制，不满1千伏）",
        "tiers": [],
        "flat_price": "0.7921",
        "peak_price": None,
        "valley_price": None,
        "peak_hours": None,
        "valley_hours": None,
    },
]


@dataclass(frozen=True)
class QuoteLine:
    label: str
    kwh: Decimal
    price: Decimal
    amount: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "kwh": self.kwh, "price": self.price, "amount": self.amount}


class QuoteError(ValueError):
    pass


def _tier_split(tiers: list[dict[str, Any]], kwh: Decimal) -> list[tuple[dict[str, Any], Decimal]]:
    out = []
    for t in sorted(tiers, key=lambda t: t["tier"]):
        lo = Decimal(str(t["from_kwh"]))
        hi = Decimal(str(t["to_kwh"])) if t.get("to_kwh") is not None else None
        if kwh <= lo:
            break
        part = (min(kwh, hi) if hi is not None else kwh) - lo
        if part > 0:
            out.append((t, part.quantize(CENT)))
    return out


def quote(
    tariff: dict[str, Any], kwh: Decimal | None, peak_kwh: Decimal | None = None, valley_kwh: Decimal | None = None
) -> dict[str, Any]:
    """Cost of one month's usage under ``tariff`` (a dict shaped like ``DEFAULT_TARIFFS`` rows)."""
    for name, v in (("kwh", kwh), ("peak_kwh", peak_kwh), ("valley_kwh", valley_kwh)):
        if v is not None and v < 0:
            raise QuoteError(f"{name} must not be negative")
    tou = peak_kwh is not None or valley_kwh is not None
    if tou:
        peak_kwh = peak_kwh or Decimal(0)
        valley_kwh = valley_kwh or Decimal(0)
        total = peak_kwh + valley_kwh
        if kwh is not None and kwh != total:
            raise QuoteError("kwh must equal peak_kwh + valley_kwh")
        kwh = total
    if kwh is None:
        raise QuoteError("give kwh, or peak_kwh and valley_kwh")
    kwh = kwh.quantize(CENT)
    if tou:
        peak_kwh, valley_kwh = peak_kwh.quantize(CENT), valley_kwh.quantize(CENT)  # type: ignore[union-attr]
    lines: list[QuoteLine] = []
    flat = tariff.get("flat_price")
    tiers = tariff.get("tiers") or []
    if flat is not None and not tiers:
        price = Decimal(str(flat))
        lines.append(QuoteLine("电量电费（单一制）", kwh, price, cents(kwh * price)))
    elif tou and tariff.get("peak_price") is not None:
        pp, vp = Decimal(str(tariff["peak_price"])), Decimal(str(tariff["valley_price"]))
        lines.append(QuoteLine("峰时电费 08:00-22:00", peak_kwh, pp, cents(peak_kwh * pp)))  # type: ignore[operator]
        lines.append(QuoteLine("谷时电费 22:00-08:00", valley_kwh, vp, cents(valley_kwh * vp)))  # type: ignore[operator]
        base = Decimal(str(tiers[0]["price"])) if tiers else Decimal(0)
        for t, part in _tier_split(tiers, kwh):
            extra = Decimal(str(t["price"])) - base
            if extra > 0:
                lines.append(QuoteLine(f"第{t['tier']}档加价", part, extra, cents(part * extra)))
    else:
        for t, part in _tier_split(tiers, kwh):
            price = Decimal(str(t["price"]))
            lines.append(QuoteLine(f"第{t['tier']}档电费", part, price, cents(part * price)))
    return {
        "category": tariff["category"],
        "kwh": kwh,
        "peak_kwh": peak_kwh if tou else None,
        "valley_kwh": valley_kwh if tou else None,
        "amount": cents(sum((line.amount for line in lines), Decimal(0))),
        "lines": [line.as_dict() for line in lines],
    }


# --- work-order service commitments (国家电网 95598 供电服务承诺, simplified) -----------------

RURAL_DISTRICTS = {"崇明区", "金山区", "奉贤区", "青浦区"}

# minutes on site for faults (city 45 min, suburbs/rural 90 min)
_FAULT_MINUTES = {"city": 45, "rural": 90}
# working days to contact / answer, per type
_WORKING_DAYS = {
    "complaint": 1,  # contact the customer within 1 working day
    "invoice": 1,
    "appointment": 1,
    "feedback": 5,
    "violation": 5,
    "account_change": 5,
    "new_connection": 5,  # residential low-voltage connection
    "ev_charging": 5,
    "solar": 10,
}
FAULT_TYPES = {"repair", "outage"}


_calendar: WorkCalendar | None = None


def use_calendar(calendar: WorkCalendar) -> None:
    """Set the working-day calendar of this process (the core app does, from its settings)."""
    global _calendar
    _calendar = calendar


def calendar() -> WorkCalendar:
    global _calendar
    if _calendar is None:
        _calendar = default_calendar()
    return _calendar


def add_working_days(start: datetime, days: int) -> datetime:
    """Same local time ``days`` working days after ``start``: weekends, public holidays and
    adjusted working days from the work calendar."""
    return calendar().add_working_days(start, days, CN_TZ)


def sla_due(wo_type: str, priority: str, district: str | None, created_at: datetime) -> datetime:
    if wo_type in FAULT_TYPES:
        area = "rural" if district in RURAL_DISTRICTS else "city"
        return created_at + timedelta(minutes=_FAULT_MINUTES[area])
    days = _WORKING_DAYS.get(wo_type, 5)
    if priority in {"high", "emergency"} and days > 1:
        days = max(1, days // 2)
    return add_working_days(created_at, days)
