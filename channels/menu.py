"""Menu keys shared by the WeChat and Alipay menus, mapped to what a customer would type.

Both platforms send only the key of a clicked menu item; turning it into text the NLU
understands keeps the dialogue engine free of platform knowledge.
"""

from __future__ import annotations

CLICK_TEXT: dict[str, str] = {
    "BILL": "查电费",
    "PAY": "我要交电费",
    "USAGE": "查用电量",
    "OUTAGE": "我家停电了",
    "OUTAGE_PLAN": "最近有停电计划吗",
    "REPAIR": "我要报修",
    "PROGRESS": "查询工单进度",
    "HUMAN": "转人工",
    "BIND": "绑定户号",
    "COMPLAINT": "我要投诉",
    "TARIFF": "电价是多少",
}
