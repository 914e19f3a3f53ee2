"""Customer-facing notices (responses of training_data/domain.yml) and the topic vocabulary."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.logs import mask_account
from bot.texts import TextService

# Topics customers know → topics the core stores subscriptions under.
TOPIC_ALIASES: dict[str, str] = {
    "planned_outage": "outage",
    "power_restored": "outage",
    "outage": "outage",
    "bill_issued": "bill",
    "bill_due": "bill",
    "bill": "bill",
    "work_order_update": "work_order",
    "work_order": "work_order",
    "payment": "payment",
}
CORE_TOPICS = ("outage", "bill", "work_order", "payment")
CHANNELS = ("wechat", "alipay", "sms", "email")

WORK_ORDER_STATUSES = ("created", "dispatched", "in_progress", "resolved", "closed")
WORK_ORDER_TYPES = ("repair", "complaint", "consult", "feedback", "violation", "new_connection")


def _parse(ts: Any) -> datetime | None:
    if isinstance(ts, datetime):
        return ts
    if not ts:
        return None
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return None


def _month_day(date: str) -> tuple[int, int] | None:
    """(month, day) of an ISO date ``YYYY-MM-DD...``, None when it is not one."""
    if len(date) >= 10 and date[5:7].isdigit() and date[8:10].isdigit():
        return int(date[5:7]), int(date[8:10])
    return None


class Notices:
    """The notices' subjects and texts: responses ``utter_notice_*`` of training_data/domain.yml
    (kept short: one SMS segment of 70 characters for a typical outage), in Chinese."""

    def __init__(self, texts: TextService) -> None:
        self.texts = texts
        t = texts.text
        self.signature = t("utter_notice_signature")
        self.remark = t("utter_notice_remark")
        self.to_be_announced = t("utter_notice_time_tbd")
        self.default_cause = t("utter_notice_default_cause")
        self.your_area = t("utter_notice_your_area")
        self.soon = t("utter_notice_soon")
        self.separator = t("utter_notice_list_separator")
        self.status_updated = t("utter_notice_work_order_status_updated")
        self.work_order_status = {s: t(f"utter_notice_work_order_status_{s}") for s in WORK_ORDER_STATUSES}
        self.work_order_type = {k: t(f"utter_notice_work_order_type_{k}") for k in WORK_ORDER_TYPES}
        self.subjects = {k: t(f"utter_notice_{k}_subject") for k in
                         ("planned_outage", "power_restored", "outage_cancelled", "work_order_update", "bill_issued",
                          "bill_due", "payment_confirmed")}

    def _say(self, name: str, **values: Any) -> str:
        return self.texts.text(name, signature=self.signature, **values)

    def fmt_time(self, ts: Any, tz: ZoneInfo, *, with_date: bool = True) -> str:
        dt = _parse(ts)
        if dt is None:
            return self.to_be_announced
        local = dt.astimezone(tz)
        if not with_date:
            return f"{local:%H:%M}"
        return self.texts.text("utter_notice_datetime", month=local.month, day=local.day, time=f"{local:%H:%M}")

    def _span(self, start: Any, end: Any, tz: ZoneInfo) -> str:
        s, e = _parse(start), _parse(end)
        if s is None:
            return self.to_be_announced
        if e is None:
            return self.texts.text("utter_notice_from", start=self.fmt_time(s, tz))
        same_day = s.astimezone(tz).date() == e.astimezone(tz).date()
        return self.texts.text("utter_notice_span", start=self.fmt_time(s, tz),
                               end=self.fmt_time(e, tz, with_date=not same_day))

    def _month_label(self, month: str) -> str:
        if len(month) == 7 and month[5:7].isdigit():
            return self.texts.text("utter_notice_month", month=int(month[5:7]))
        return month

    def planned_outage(self, o: dict[str, Any], tz: ZoneInfo) -> tuple[str, str]:
        cause = (o.get("cause") or self.default_cause).strip()
        area = o.get("scope") or o.get("district") or ""
        where = area if o.get("district", "") in area else f"{o.get('district', '')}{area}"
        streets = self.separator.join(o.get("streets") or [])
        if streets:
            where += self.texts.text("utter_notice_streets", streets=streets)
        text = self._say("utter_notice_planned_outage", cause=cause, where=where,
                         span=self._span(o.get("start_at"), o.get("estimated_end_at"), tz))
        return self.subjects["planned_outage"], text

    def power_restored(self, o: dict[str, Any], tz: ZoneInfo) -> tuple[str, str]:
        area = o.get("scope") or o.get("district") or self.your_area
        when = self.fmt_time(o.get("actual_end_at") or o.get("updated_at"), tz)
        return self.subjects["power_restored"], self._say("utter_notice_power_restored", area=area, when=when)

    def outage_cancelled(self, o: dict[str, Any], tz: ZoneInfo) -> tuple[str, str]:
        area = o.get("scope") or o.get("district") or self.your_area
        text = self._say("utter_notice_outage_cancelled", start=self.fmt_time(o.get("start_at"), tz), area=area)
        return self.subjects["outage_cancelled"], text

    def work_order_update(self, p: dict[str, Any]) -> tuple[str, str]:
        status = self.work_order_status.get(p.get("status") or "", p.get("status") or self.status_updated)
        kind = self.work_order_type.get(p.get("type") or "", "")
        note = (p.get("note") or "").strip()
        note_text = self.texts.text("utter_notice_work_order_note", note=note[:200]) if note else ""
        text = self._say("utter_notice_work_order_update", kind=kind, id=p.get("id", ""), status=status, note=note_text)
        return self.subjects["work_order_update"], text

    def bill_issued(self, p: dict[str, Any]) -> tuple[str, str]:
        acc = mask_account(str(p.get("account_number") or ""))
        label = self._month_label(str(p.get("month") or ""))
        md = _month_day(str(p.get("due_date") or ""))
        due = self.texts.text("utter_notice_pay_by", month=md[0], day=md[1]) if md else ""
        text = self._say("utter_notice_bill_issued", account=acc, month=label, amount=p.get("amount", ""), due=due)
        return self.subjects["bill_issued"], text

    def bill_due(self, b: dict[str, Any]) -> tuple[str, str]:
        acc = mask_account(str(b.get("account_number") or ""))
        label = self._month_label(str(b.get("month") or ""))
        md = _month_day(str(b.get("due_date") or ""))
        when = self.texts.text("utter_notice_date", month=md[0], day=md[1]) if md else self.soon
        text = self._say("utter_notice_bill_due", account=acc, month=label, balance=b.get("balance", ""), when=when)
        return self.subjects["bill_due"], text

    def payment_confirmed(self, p: dict[str, Any]) -> tuple[str, str]:
        acc = mask_account(str(p.get("account_number") or ""))
        text = self._say("utter_notice_payment_confirmed", account=acc, amount=p.get("amount", ""))
        return self.subjects["payment_confirmed"], text
