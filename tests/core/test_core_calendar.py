"""Working days of service commitments follow China's holiday calendar (调休 included)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core import pricing
from core.work_calendar import WorkCalendar, default_calendar, load_calendar

TZ = ZoneInfo("Asia/Shanghai")


def at(day: str, hour: int = 10) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=TZ)


@pytest.fixture
def cal() -> WorkCalendar:
    return default_calendar()


@pytest.mark.parametrize("start,days,due", [
    ("2026-02-13", 1, "2026-02-14"),  # Friday before the Spring Festival: Saturday 2-14 is a working day
    ("2026-02-14", 1, "2026-02-24"),  # then nine days off
    ("2026-09-30", 1, "2026-10-08"),  # National Day week
    ("2026-10-08", 2, "2026-10-10"),  # Saturday 10-10 is worked
    ("2026-04-03", 1, "2026-04-07"),  # Qingming
    ("2026-11-27", 1, "2026-11-30"),  # an ordinary weekend
])
def test_working_days_skip_holidays_and_count_adjusted_weekends(cal: WorkCalendar, start: str, days: int, due: str) -> None:
    got = cal.add_working_days(at(start), days, TZ).astimezone(TZ)
    assert got.date().isoformat() == due
    assert got.hour == 10  # same local time


def test_complaint_sla_during_the_spring_festival() -> None:
    created = at("2026-02-15").astimezone(dt.timezone.utc)  # first day of the holiday
    due = pricing.sla_due("complaint", "normal", "浦东新区", created).astimezone(TZ)
    assert due.date() == dt.date(2026, 2, 24)
    # faults are minutes on site, holiday or not
    assert pricing.sla_due("repair", "normal", "浦东新区", created) == created + dt.timedelta(minutes=45)


def test_unknown_year_counts_monday_to_friday_and_says_so(cal: WorkCalendar, caplog: pytest.LogCaptureFixture) -> None:
    """The first year after the shipped calendar's last one (whichever that is when the test
    runs): working days are Monday–Friday, National Day included, with one warning."""
    year = max(cal.years) + 1
    caplog.set_level(logging.WARNING)
    friday = next(d for d in (dt.date(year, 9, 24) + dt.timedelta(days=i) for i in range(7)) if d.weekday() == 4)
    start = dt.datetime.combine(friday, dt.time(10), TZ)
    after = [cal.add_working_days(start, n, TZ).astimezone(TZ) for n in (1, 5, 6)]
    assert [d.date() - friday for d in after] == [dt.timedelta(days=3), dt.timedelta(days=7), dt.timedelta(days=10)]
    assert after[0].hour == 10
    oct1 = dt.date(year, 10, 1)
    assert cal.is_working_day(oct1) == (oct1.weekday() < 5)  # no holiday known for that year
    assert caplog.text.count(f"no holiday calendar for {year}") == 1
    # the same dates in a year the calendar knows do follow the holidays
    assert not cal.is_working_day(dt.date(max(cal.years), 10, 1))


def test_operator_file_adds_a_year_and_bad_files_are_refused(tmp_path: Path) -> None:
    extra = tmp_path / "cal.yml"
    extra.write_text("2027:\n  holidays: [2027-01-01/2027-01-03]\n  workdays: [2027-01-09]\n", encoding="utf-8")
    cal = default_calendar(extra)
    assert 2026 in cal.years and 2027 in cal.years
    assert not cal.is_working_day(dt.date(2027, 1, 1)) and cal.is_working_day(dt.date(2027, 1, 9))
    for bad in ("2027:\n  holidays: [2027-13-01]\n", "2027:\n  holidays: [2026-12-31]\n",
                "2027:\n  holidays: [2027-01-01/2027-06-01]\n", "- 2027-01-01\n"):
        extra.write_text(bad, encoding="utf-8")
        with pytest.raises(ValueError):
            load_calendar(extra)


async def test_core_app_uses_the_configured_calendar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    from bot.settings import get_settings
    from tests.stack import run_core

    extra = tmp_path / "cal.yml"
    extra.write_text("2029:\n  holidays: [2029-01-01]\n", encoding="utf-8")
    monkeypatch.setenv("POWERBOT_WORK_CALENDAR_FILE", str(extra))
    get_settings.cache_clear()
    saved = pricing.calendar()
    try:
        async with run_core(sqlite_url, seed=False):
            assert 2029 in pricing.calendar().years and not pricing.calendar().is_working_day(dt.date(2029, 1, 1))
    finally:
        pricing.use_calendar(saved)
        get_settings.cache_clear()  # the next test reads its own environment


@pytest.mark.parametrize("start,days,due", [
    ("2025-01-27", 1, "2025-02-05"),  # 2025's Spring Festival (1-28..2-04), from chinese-calendar
    ("2025-09-30", 1, "2025-10-09"),  # National Day and Mid-Autumn 2025 (10-01..10-08)
    ("2025-09-26", 1, "2025-09-28"),  # Sunday 9-28 is an adjusted working day
    ("2024-02-09", 1, "2024-02-18"),  # 2024: Sunday 2-18 is worked after the Spring Festival
])
def test_published_years_come_from_the_chinese_calendar_package(cal: WorkCalendar, start: str, days: int, due: str) -> None:
    """Years nobody typed in: every year the State Council published is known."""
    assert {2004, 2024, 2025, 2026} <= cal.years
    got = cal.add_working_days(at(start), days, TZ).astimezone(TZ)
    assert got.date().isoformat() == due
