"""The policy's re-reading of phrasings the classifier is weak at (bot.dialogue.rereading)."""

from __future__ import annotations

import pytest

from bot.dialogue.rereading import FALLBACK_CONFIDENCE, reread


@pytest.mark.parametrize("intent,conf,text,in_form,want", [
    ("bill_query", 0.9, "300度电多少钱", False, "tariff_consult"),
    ("repair_request", 0.9, "我早上报的那个电表箱冒烟的单子 现在到哪一步了", False, "work_order_status"),
    ("nlu_fallback", 0.3, "我们路口的路灯好几天不亮了 你们管不管", False, "repair_request"),
    ("repair_request", 0.9, "the breaker keeps tripping when the ovens run, can we increase capacity?", False, "new_connection"),
    ("pay_bill", 0.9, "帮我交一下燃气费", False, "out_of_scope"),
    ("pay_bill", 0.9, "帮我交一下燃气费", True, "pay_bill"),  # inside a form the form decides
    ("deny", 0.9, "算了", False, "cancel"),
    ("bill_query", 0.9, "查下电费", False, "bill_query"),  # nothing to re-read
])
def test_reread(intent: str, conf: float, text: str, in_form: bool, want: str) -> None:
    got, confidence = reread(intent, conf, text, in_form=in_form)
    assert got == want
    if want != intent:
        assert confidence >= min(conf, FALLBACK_CONFIDENCE)
