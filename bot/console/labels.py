"""Readable names, for agents, of the NLU's intents, slots and entities (zh and en).

These are agent-facing labels (the console's own words), not customer texts. An unknown name is
shown as itself; the console script picks the agent's language (``/console/api/labels``).
"""

from __future__ import annotations

from typing import Any

INTENTS: dict[str, tuple[str, str]] = {
    "account_change": ("过户更名", "Account change"),
    "affirm": ("肯定", "Affirm"),
    "bill_query": ("电费查询", "Bill query"),
    "bind_account": ("绑定户号", "Bind account"),
    "book_appointment": ("预约营业厅", "Book appointment"),
    "complaint": ("投诉", "Complaint"),
    "deny": ("否定", "Deny"),
    "ev_charging": ("充电桩", "EV charging"),
    "feedback": ("意见建议", "Feedback"),
    "goodbye": ("再见", "Goodbye"),
    "greet": ("问候", "Greeting"),
    "inform": ("提供信息", "Inform"),
    "invoice_request": ("开具发票", "Invoice request"),
    "new_connection": ("新装增容", "New connection"),
    "nlu_fallback": ("未识别", "Not understood"),
    "out_of_scope": ("业务范围外", "Out of scope"),
    "outage_schedule": ("停电计划", "Outage schedule"),
    "pay_bill": ("缴费", "Pay bill"),
    "payment_issue": ("缴费问题", "Payment issue"),
    "repair_request": ("故障报修", "Repair request"),
    "report_outage": ("停电报告", "Report outage"),
    "report_violation": ("违章举报", "Report violation"),
    "request_human": ("转人工", "Ask for a human"),
    "solar_connection": ("光伏并网", "Solar connection"),
    "subscribe_notifications": ("订阅通知", "Subscribe to notices"),
    "tariff_consult": ("电价咨询", "Tariff question"),
    "thank": ("感谢", "Thanks"),
    "unsubscribe_notifications": ("退订通知", "Unsubscribe"),
    "usage_query": ("用电量查询", "Usage query"),
    "work_order_status": ("工单进度", "Work order status"),
}

SLOTS: dict[str, tuple[str, str]] = {
    "language": ("语言", "Language"),
    "account_number": ("户号", "Account number"),
    "contact_phone": ("联系电话", "Contact phone"),
    "phone": ("电话", "Phone"),
    "mobile": ("手机号", "Mobile"),
    "last4": ("手机后四位", "Last 4 digits"),
    "work_order_id": ("工单号", "Work order"),
    "month": ("月份", "Month"),
    "date": ("日期", "Date"),
    "address": ("地址", "Address"),
    "district": ("区", "District"),
    "amount": ("金额", "Amount"),
    "description": ("描述", "Description"),
    "topic": ("主题", "Topic"),
    "kwh": ("电量 (kWh)", "Energy (kWh)"),
    "hall_id": ("营业厅", "Service hall"),
    "slot_id": ("预约时段", "Time slot"),
    "contact_name": ("联系人", "Contact name"),
    "location": ("地点", "Location"),
    "confirm": ("确认", "Confirmation"),
    "choice": ("选择", "Choice"),
    "name": ("姓名", "Name"),
    "email": ("邮箱", "E-mail"),
}

LANGS = ("zh", "en")


def label(table: dict[str, tuple[str, str]], name: str, lang: str) -> str:
    pair = table.get(name)
    if pair is None:
        return name
    return pair[1] if lang == "en" else pair[0]


def all_labels() -> dict[str, Any]:
    """{"intents": {name: {"zh": …, "en": …}}, "slots": {…}}: what the console's script reads."""
    return {
        "intents": {k: {"zh": zh, "en": en} for k, (zh, en) in INTENTS.items()},
        "slots": {k: {"zh": zh, "en": en} for k, (zh, en) in SLOTS.items()},
    }
