"""What a message asks for, where the classifier is weak at its phrasing.

The NLU reads a message as a whole; some requests are told by a few words it has few examples
of ("上门修要收费吗" is not a repair, "查停电" is a lookup, "我早上报的冒烟那个单子到哪一步了" asks
about an order). These rules re-read the NLU's intent before the policy acts on it, in one
place, each with the phrasing it is for. A rule that names a request the NLU was unsure of also
raises its confidence to the policy's threshold, so the request is acted on.
"""

from __future__ import annotations

from intents.signals import (
    about_street_light, asks_account_details, asks_charging_price, asks_complaint_process, asks_price, asks_theft_law, fears_disconnection,
    increases_capacity,
    is_cancel, looks_up_outages, mentions_report, other_utility, subscribes_only_some,
)
from intents.slots import has_account_digits, kwh

# the check of an account given with no request the NLU knew ("3100000002", "…nobody came. account …"):
# its check comes next, then what it is for (``IdentityMixin.flow_account_check``)
ACCOUNT_CHECK = "account_check"

# the confidence from which the policy acts on a request (below it: the fallback)
FALLBACK_CONFIDENCE = 0.5
_ONE_FAULT = frozenset({"report_outage", "repair_request"})
_UNSURE = frozenset({"nlu_fallback", "out_of_scope", "inform"})


def reread(intent: str, confidence: float, text: str, *, in_form: bool) -> tuple[str, float]:
    """(intent, confidence) of ``text`` after the rules; ``in_form``: a form is asking something."""
    if intent in ("bill_query", "usage_query", "nlu_fallback") and kwh(text) and asks_price(text) \
            and not has_account_digits(text):
        intent = "tariff_consult"  # "300度电多少钱"
    if intent == "ev_charging" and asks_charging_price(text):
        intent = "tariff_consult"  # charging at home is priced as the home's power
    if about_street_light(text) and intent in _UNSURE | {"report_outage"}:
        intent, confidence = "repair_request", max(confidence, FALLBACK_CONFIDENCE)  # its flow says street lights are the city's
    if increases_capacity(text) and intent in _ONE_FAULT:
        intent = "new_connection"  # "the breaker keeps tripping … can we increase capacity?"
    if mentions_report(text) and intent in _ONE_FAULT:
        intent, confidence = "work_order_status", max(confidence, FALLBACK_CONFIDENCE)  # "我早上报的冒烟那个单子到哪一步了"
    if fears_disconnection(text) and intent in ("outage_schedule", "report_outage", "nlu_fallback"):
        intent, confidence = "bill_query", max(confidence, FALLBACK_CONFIDENCE)  # "…cut if I don't pay. is that real??"
    if looks_up_outages(text):
        intent = "outage_schedule"  # "查停电": a lookup, not a report
    elif asks_complaint_process(text):
        intent = "complaint"  # its flow says how complaints are handled
    if intent == "unsubscribe_notifications" and subscribes_only_some(text):
        intent = "subscribe_notifications"
    if other_utility(text) and not in_form:
        intent = "out_of_scope"  # "帮我交一下燃气费": another company's bill
    if asks_theft_law(text):
        intent = "report_violation"  # its flow answers what the law says
    if asks_account_details(text) and has_account_digits(text):
        intent, confidence = ACCOUNT_CHECK, max(confidence, FALLBACK_CONFIDENCE)  # the account, checked, then its record
    if is_cancel(text):
        intent = "cancel"
    return intent, confidence
