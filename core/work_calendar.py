"""Working days for service commitments: weekends, public holidays and adjusted working days.

95598 commitments count working days ("contact within 1 working day"), and China moves
weekends around its public holidays, so Monday–Friday alone promises a complaint callback
in the middle of the Spring Festival. The published years come from the ``chinese-calendar``
package (the State Council's notices since 2004; a new release follows each November's notice,
so a year is added by upgrading the package); an operator's file
(``POWERBOT_WORK_CALENDAR_FILE``: ``{year: {holidays: [...], workdays: [...]}}``, dates local,
``a/b`` an inclusive range) adds years the installed package does not know yet.

A year neither knows falls back to Monday–Friday with a warning, once: nothing refuses or breaks
past the last published year, and commitments still count working days (without that year's
holidays and adjusted weekends, which cannot be derived: most follow the lunar calendar and the
State Council's choices).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from chinese_calendar import constants as _published

log = logging.getLogger(__name__)


@dataclass
class WorkCalendar:
    holidays: set[dt.date] = field(default_factory=set)
    workdays: set[dt.date] = field(default_factory=set)  # weekend days that are working days
    years: set[int] = field(default_factory=set)
    _warned: set[int] = field(default_factory=set, repr=False)

    def is_working_day(self, day: dt.date) -> bool:
        """Holiday rules for a year the calendar knows; Monday–Friday for any other year (with
        a warning, once per year), so a date past the last published year still gets an answer."""
        if day.year not in self.years and day.year not in self._warned:
            self._warned.add(day.year)
            log.warning("no holiday calendar for %d: counting Monday-Friday (add the year to the work calendar)", day.year)
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def add_working_days(self, start: dt.datetime, days: int, tz: dt.tzinfo) -> dt.datetime:
        """Same local time ``days`` working days after ``start`` (an aware datetime)."""
        local = start.astimezone(tz)
        added = 0
        while added < days:
            local += dt.timedelta(days=1)
            if self.is_working_day(local.date()):
                added += 1
        return local.astimezone(dt.timezone.utc)

    def merge(self, other: WorkCalendar) -> WorkCalendar:
        return WorkCalendar(self.holidays | other.holidays, self.workdays | other.workdays, self.years | other.years)


def _dates(items: Iterable[object], where: str) -> set[dt.date]:
    out: set[dt.date] = set()
    for item in items or ():
        text = str(item).strip()
        first, _, last = text.partition("/")
        try:
            a = dt.date.fromisoformat(first.strip())
            b = dt.date.fromisoformat(last.strip()) if last else a
        except ValueError as exc:
            raise ValueError(f"{where}: {text!r} is not a date or a 'YYYY-MM-DD/YYYY-MM-DD' range") from exc
        if b < a or (b - a).days > 31:
            raise ValueError(f"{where}: {text!r} is not a plausible holiday range")
        out.update(a + dt.timedelta(days=i) for i in range((b - a).days + 1))
    return out


def load_calendar(path: str | Path) -> WorkCalendar:
    """Read a calendar file: ``{year: {holidays: [...], workdays: [...]}}``."""
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping of years")
    cal = WorkCalendar()
    for year, spec in doc.items():
        where = f"{path}: {year}"
        if not isinstance(year, int) or not isinstance(spec, dict):
            raise ValueError(f"{where}: expected 'YEAR: {{holidays: [...], workdays: [...]}}'")
        holidays, workdays = _dates(spec.get("holidays"), where), _dates(spec.get("workdays"), where)
        stray = {d for d in holidays | workdays if d.year != year}
        if stray:
            raise ValueError(f"{where}: dates of another year: {sorted(stray)[0]}")
        cal.holidays |= holidays
        cal.workdays |= workdays
        cal.years.add(year)
    return cal


def published_calendar() -> WorkCalendar:
    """Every year the installed ``chinese-calendar`` knows (its holidays and adjusted working
    days, as published by the State Council)."""
    holidays, workdays = set(_published.holidays), set(_published.workdays)
    years = {d.year for d in holidays}
    return WorkCalendar(holidays, workdays, set(range(min(years), max(years) + 1)))


def default_calendar(extra: str | Path | None = None) -> WorkCalendar:
    cal = published_calendar()
    return cal.merge(load_calendar(extra)) if extra else cal
