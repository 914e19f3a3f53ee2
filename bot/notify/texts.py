"""Customer-facing notice texts (Simplified Chinese) and the topic vocabulary."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.logs import mask_account

# Topics customers know (issue 6) → topics the core stores subscriptions under.
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

SIGNATURE = "【国网电力】"

WORK_ORDER_STATUS = {
    "created": "已受理",
    "dispatched": "已派单",
    "in_progress": "正在处理中",
    "resolved": "已处理完成",
    "closed": "已办结，感谢您的支持",
}
WORK_ORDER_TYPE = {
    "repair": "故障报修",
    "complaint": "投诉",
    "consult": "咨询",
    "feedback": "意见建议",
    "violation": "举报",
    "new_connection": "新装增容",
}


def _parse(ts: Any) -> datetime | None:
    if isinstance(ts, datetime):
        return ts
    if not ts:
        return None
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return None


def fmt_time(ts: Any, tz: ZoneInfo, *, with_date: bool = True) -> str:
    dt = _parse(ts)
    if dt is None:
        return "另行通知"
    local = dt.astimezone(tz)
    return f"{local.month}月{local.day}日 {local:%H:%M}" if with_date else f"{local:%H:%M}"


def _span(start: Any, end: Any, tz: ZoneInfo) -> str:
    s, e = _parse(start), _parse(end)
    if s is None:
        return "另行通知"
    if e is None:
        return f"{fmt_time(s, tz)}起"
    same_day = s.astimezone(tz).date() == e.astimezone(tz).date()
    return f"{fmt_time(s, tz)}至{fmt_time(e, tz, with_date=not same_day)}"


def planned_outage(o: dict[str, Any], tz: ZoneInfo) -> tuple[str, str]:
    # Kept short: one SMS segment (70 characters) for a typical outage.
    cause = (o.get("cause") or "电力设施检修").strip()
    area = o.get("scope") or o.get("district") or ""
    where = area if o.get("district", "") in area else f"{o.get('district', '')}{area}"
    streets = "、".join(o.get("streets") or [])
    if streets:
        where += f"（{streets}）"
    text = (
        f"{SIGNATURE}计划停电：因{cause}，{where}将于"
        f"{_span(o.get('start_at'), o.get('estimated_end_at'), tz)}停电，请提前做好准备。详询95598"
    )
    return "计划停电通知", text


def power_restored(o: dict[str, Any], tz: ZoneInfo) -> tuple[str, str]:
    area = o.get("scope") or o.get("district") or "您所在区域"
    when = fmt_time(o.get("actual_end_at") or o.get("updated_at"), tz)
    text = f"{SIGNATURE}恢复送电：{area}已于{when}恢复供电，感谢您的理解。如仍无电请回复“报修”或拨打95598"
    return "恢复送电通知", text


def outage_cancelled(o: dict[str, Any], tz: ZoneInfo) -> tuple[str, str]:
    area = o.get("scope") or o.get("district") or "您所在区域"
    text = f"{SIGNATURE}停电取消：原定{fmt_time(o.get('start_at'), tz)}{area}的计划停电已取消，届时正常供电。"
    return "停电取消通知", text


def work_order_update(p: dict[str, Any]) -> tuple[str, str]:
    status = WORK_ORDER_STATUS.get(p.get("status") or "", p.get("status") or "已更新")
    kind = WORK_ORDER_TYPE.get(p.get("type") or "", "")
    note = (p.get("note") or "").strip()
    text = f"{SIGNATURE}您的{kind}工单{p.get('id', '')}{status}。"
    if note:
        text += f"说明：{note[:200]}。"
    text += "回复“查工单”看详情"
    return "工单进度通知", text


def bill_issued(p: dict[str, Any]) -> tuple[str, str]:
    acc = mask_account(str(p.get("account_number") or ""))
    month = str(p.get("month") or "")
    label = f"{int(month[5:7])}月" if len(month) == 7 and month[5:7].isdigit() else month
    due = str(p.get("due_date") or "")
    due_txt = f"，请于{int(due[5:7])}月{int(due[8:10])}日前缴纳" if len(due) >= 10 and due[5:7].isdigit() and due[8:10].isdigit() else ""
    text = f"{SIGNATURE}电费账单：户号{acc}的{label}电费{p.get('amount', '')}元已出账{due_txt}。回复“缴费”可在线缴纳"
    return "电费账单通知", text


def bill_due(b: dict[str, Any]) -> tuple[str, str]:
    acc = mask_account(str(b.get("account_number") or ""))
    month = str(b.get("month") or "")
    label = f"{int(month[5:7])}月" if len(month) == 7 and month[5:7].isdigit() else month
    due = str(b.get("due_date") or "")
    when = f"{int(due[5:7])}月{int(due[8:10])}日" if len(due) >= 10 and due[5:7].isdigit() and due[8:10].isdigit() else "近日"
    text = f"{SIGNATURE}缴费提醒：户号{acc}的{label}电费尚欠{b.get('balance', '')}元，将于{when}到期。回复“缴费”可在线缴纳"
    return "电费缴费提醒", text


def payment_confirmed(p: dict[str, Any]) -> tuple[str, str]:
    acc = mask_account(str(p.get("account_number") or ""))
    text = f"{SIGNATURE}缴费成功：户号{acc}已到账{p.get('amount', '')}元，感谢您及时缴费。"
    return "缴费到账通知", text
