"""Working days for service commitments: weekends, public holidays and adjusted working days.

95598 commitments count working days ("contact within 1 working day"), and China moves
weekends around its public holidays, so Monday–Friday alone promises a complaint callback
in the middle of the Spring Festival. The calendar is data (``work_calendar.yml`` beside this
module, plus an operator's file); a year it does not know falls back to Monday–Friday with a
warning, once.

The shipped file only knows the years the State Council had published when it was written
(2026), so the fallback is the normal case for later years until someone adds them: nothing
refuses or breaks in a year the file does not know, and commitments still count working days
(without that year's holidays and adjusted weekends, which cannot be derived: most follow the
lunar calendar and the State Council's choices).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

DEFAULT_FILE = Path(__file__).with_name("work_calendar.yml")


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


def default_calendar(extra: str | Path | None = None) -> WorkCalendar:
    cal = load_calendar(DEFAULT_FILE)
    return cal.merge(load_calendar(extra)) if extra else cal
