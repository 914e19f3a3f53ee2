"""Billing flows: a bill, usage, paying a bill, a payment that did not arrive, an e-invoice.

All of them are about one account's money, so each starts with ``require_account`` (shown only
to a bound or verified identity). Paying goes through the payment service handed to the engine
(``payments``, e.g. Alipay); without one the customer is told how to pay.

Expects of the class it is mixed into: ``core``, ``payments``; ``require_account``
(``IdentityMixin``); ``confirm``, ``finish``, ``contact_phone``, ``_order_done``
(``FormsMixin``); ``say``, ``phrase``, ``label`` (``Responses``).
"""

from __future__ import annotations

from typing import Any

from bot.dialogue.responses import BILL_STATUSES, CHINA_TZ, PAYMENT_STATUSES, kwh_fmt
from bot.dialogue.flows import remember_order
from bot.dialogue.turn import Turn
from bot.logs import mask_account
from common.money import money_text
from intents.signals import invoice_details, pays_all


class BillingFlows:
    async def _bill_asked(self, turn: Turn, flow: str) -> tuple[Any, Any] | None:
        """The account and the bill of the month asked for (the latest without one); None after
        telling the customer there is no such bill."""
        acc = await self.require_account(turn, flow)
        month = turn.slots.get("month")
        bills = await self.core.list_bills(acc.account_number, month=month)
        if not bills and month:
            # a month newer than the latest bill is not billed yet: say so and show the latest
            latest = await self.core.list_bills(acc.account_number)
            if latest and latest[0].month < month:
                self.say(turn, "utter_bill_not_issued", month=month, latest=latest[0].month)
                bills = latest
        if not bills:
            self.say(turn, "utter_no_bill", month=month or "")
            return None
        turn.set_slot("month", bills[0].month)
        return acc, bills[0]

    async def flow_bill_query(self, turn: Turn) -> None:
        asked = await self._bill_asked(turn, "bill_query")
        if asked is None:
            return
        acc, b = asked
        arrears = await self.core.get_arrears(acc.account_number)
        figures = {"account": mask_account(acc.account_number), "month": b.month, "amount": money_text(b.amount),
                   "kwh": kwh_fmt(b.kwh), "paid": money_text(b.paid_amount), "balance": money_text(b.balance),
                   "due": b.due_date.isoformat(),
                   "status": self.label(turn, "utter_fragment_bill_status", b.status, BILL_STATUSES),
                   "owed": money_text(arrears.amount_owed)}
        # the same figures for channels that lay a bill out (the web chat's card), with the
        # arrears month by month
        card = {**figures, "arrears": [{"month": u.month, "balance": money_text(u.balance)}
                                       for u in arrears.unpaid_bills]}
        self.say(turn, "utter_bill", metadata={"bill": card}, **figures)
        overdue = [u for u in arrears.unpaid_bills if u.overdue and u.month != b.month]
        if overdue:  # an older month past its due date: said by name, not only inside the total
            self.say(turn, "utter_bill_overdue_months", lines=self.phrase(turn, "utter_fragment_list_separator").join(
                self.phrase(turn, "utter_fragment_overdue_line", month=u.month, balance=money_text(u.balance),
                            due=u.due_date.isoformat()) for u in overdue))
        if arrears.amount_owed > 0:
            turn.state["offer"] = "pay"

    def _paid_lines(self, turn: Turn, bills: list[Any], *, with_kwh: bool = False) -> str:
        """Bills one per line: the month, the charge, what was paid (and the kWh)."""
        return "\n".join(
            self.phrase(turn, "utter_fragment_bill_paid_line", month=b.month, amount=money_text(b.amount),
                        paid=money_text(b.paid_amount),
                        status=self.label(turn, "utter_fragment_bill_status", b.status, BILL_STATUSES))
            + (self.phrase(turn, "utter_fragment_bill_kwh", kwh=kwh_fmt(b.kwh)) if with_kwh else "")
            for b in bills)

    async def explain_bill(self, turn: Turn) -> None:
        """Why a bill is what it is: the latest bills side by side (usage, tiers and the season),
        and what is owed in all (two unpaid months add up)."""
        number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
        number = number or (next(iter(turn.authorized)) if len(turn.authorized) == 1 else None)
        if not number:
            await self.run_flow(turn, "bill_query")
            return
        bills = (await self.core.list_bills(number))[:3]
        lines = self._paid_lines(turn, bills, with_kwh=True)
        arrears = await self.core.get_arrears(number)
        self.say(turn, "utter_bill_explained", lines=lines, owed=money_text(arrears.amount_owed),
                 months=len(arrears.unpaid_bills))
        acc = await self.account(turn, number)
        if acc.category != "residential":
            # "比我家里贵多了": a business pays the commercial price, not the homes' tiers
            tariff = await self.reference("tariff", acc.category, self.core.get_tariff)
            if tariff.flat_price is not None:
                self.say(turn, "utter_bill_commercial_price", price=str(tariff.flat_price))

    async def flow_usage_query(self, turn: Turn) -> None:
        asked = await self._bill_asked(turn, "usage_query")
        if asked is None:
            return
        acc, b = asked
        extra = ""
        if b.peak_kwh is not None and b.valley_kwh is not None:
            extra = self.phrase(turn, "utter_fragment_usage_split", peak=kwh_fmt(b.peak_kwh), valley=kwh_fmt(b.valley_kwh))
        self.say(turn, "utter_usage", account=mask_account(acc.account_number), month=b.month, kwh=kwh_fmt(b.kwh),
                 split=extra, amount=money_text(b.amount))

    async def flow_pay_bill(self, turn: Turn) -> None:
        acc = await self.require_account(turn, "pay_bill")
        arrears = await self.core.get_arrears(acc.account_number)
        if arrears.amount_owed <= 0:
            self.finish(turn)
            self.say(turn, "utter_no_arrears", account=mask_account(acc.account_number))
            return
        if turn.slots.get("_pay_month") and pays_all(turn.message.text or ""):
            turn.slots.pop("_pay_month", None)  # "还是一起交了吧": all that is owed again, shown for a yes
            turn.slots.pop("_confirmed", None)
        month = turn.entities.get("month")
        if month and month != turn.slots.get("_pay_month") and any(u.month == month for u in arrears.unpaid_bills):
            turn.slots["_pay_month"] = month  # "先只交1月份的吧": that month's bill only, shown for a yes
            turn.slots.pop("_confirmed", None)
        chosen = next((u for u in arrears.unpaid_bills if u.month == turn.slots.get("_pay_month")), None)
        amount = money_text(chosen.balance if chosen else arrears.amount_owed)
        if self.payments is None:
            self.say(turn, "utter_how_to_pay", account=mask_account(acc.account_number), amount=amount)
            turn.state["offer"] = "pay_info"  # "好的，全部交掉" next: the ways to pay again, not "OK"
            return
        self.confirm(turn, "pay_bill", "utter_confirm_payment", account=mask_account(acc.account_number), amount=amount)
        link = await self.payments.create_payment_link(
            account_number=acc.account_number, amount=amount, channel=turn.message.channel,
            recipient_id=turn.message.sender_id,
            subject=self.phrase(turn, "utter_payment_subject", account=mask_account(acc.account_number)),
        )
        turn.slots.pop("_pay_month", None)
        turn.actions.append(("action_payment_link", {"out_trade_no": link.out_trade_no, "amount": link.amount}))
        self.say(turn, "utter_payment_link", kind="payment_link",
                 metadata={"pay_url": link.pay_url, "out_trade_no": link.out_trade_no, "amount": link.amount,
                           **({"qr_code": link.qr_code} if link.qr_code else {})},
                 amount=link.amount, pay_url=link.pay_url)

    async def flow_payment_issue(self, turn: Turn) -> None:
        if turn.slots.get("_payment_info") != turn.slots.get("_text") and not turn.authorized:
            turn.slots["_payment_info"] = turn.slots.get("_text")  # the general answer once, before the account
            self.say(turn, "utter_payment_issue_info")
        acc = await self.require_account(turn, "payment_issue")
        if turn.slots.get("_confirmed") != "payment_issue" and turn.slots.get("_payments_shown") != turn.slots.get("_text"):
            turn.slots["_payments_shown"] = turn.slots.get("_text")  # once per request
            # a payment link never paid is no payment: it is not "waiting to be credited"
            payments = [p for p in await self.core.list_payments(acc.account_number) if p.status == "paid"]
            arrears = await self.core.get_arrears(acc.account_number)
            turn.slots["_settled"] = arrears.amount_owed <= 0  # nothing owed: no "not credited" to check
            if payments:
                lines = [self.phrase(turn, "utter_fragment_payment_line",
                                     date=p.created_at.astimezone(CHINA_TZ).strftime('%m-%d') if p.created_at else '-',
                                     amount=money_text(p.amount),
                                     status=self.label(turn, "utter_fragment_payment_status", p.status, PAYMENT_STATUSES))
                         for p in payments[:5]]
                self.say(turn, "utter_payments_found", payments="\n".join(lines), owed=money_text(arrears.amount_owed))
            else:
                # paid at a counter or by bank debit: no online payment, but the bills say what was paid
                bills = (await self.core.list_bills(acc.account_number))[:2]
                lines = self._paid_lines(turn, bills)
                self.say(turn, "utter_no_payments", owed=money_text(arrears.amount_owed), bills=lines)
        self.confirm(turn, "payment_issue", "utter_confirm_payment_order_settled" if turn.slots.get("_settled")
                     else "utter_confirm_payment_order")
        turn.slots["_confirmed"] = "payment_issue"  # the yes holds while the callback number is asked
        phone = await self.contact_phone(turn, "payment_issue")
        wo = await self.core.create_work_order(
            "complaint", self.phrase(turn, "utter_fragment_payment_check") + str(turn.slots.get("_text") or "")[:300],
            account_number=acc.account_number, priority="normal", channel=turn.message.channel,
            contact_phone=phone, details={"category": "payment_issue"}, idempotency_key=f"{turn.key}:wo")
        turn.slots.pop("_payments_shown", None)
        turn.slots.pop("_settled", None)
        remember_order(turn, wo.id)
        self._order_done(turn, wo, "utter_payment_order_created")

    async def flow_invoice_request(self, turn: Turn) -> None:
        """An e-invoice for a paid month: the month asked for ("上个月"), else the latest paid
        bill. A bill paid at the counter or by bank debit has no online payment in the core; it
        is paid all the same, so the invoice is for the bill."""
        acc = await self.require_account(turn, "invoice_request")
        month = turn.slots.get("month")
        bills = await self.core.list_bills(acc.account_number, month=month)
        paid = [b for b in bills if b.status == "paid"]
        if not paid:
            self.finish(turn)
            if month and bills:
                self.say(turn, "utter_invoice_month_unpaid", month=month, balance=money_text(bills[0].balance))
            else:
                self.say(turn, "utter_no_paid_payments")
            return
        b = paid[0]
        told = {**(turn.slots.get("_invoice") or {}), **invoice_details(turn.message.text or "")}
        if told != (turn.slots.get("_invoice") or {}):
            turn.slots["_invoice"] = told  # the title, tax number or e-mail: shown again for the yes
            if turn.slots.get("_confirmed") == "invoice_request" and turn.message.text != turn.slots.get("_text"):
                turn.slots.pop("_confirmed", None)
        particulars = "".join(self.phrase(turn, f"utter_fragment_invoice_{k}", value=v) for k, v in told.items())
        self.confirm(turn, "invoice_request", "utter_confirm_invoice_bill", month=b.month, amount=money_text(b.amount),
                     account=mask_account(acc.account_number), particulars=particulars)
        turn.slots["_confirmed"] = "invoice_request"  # the yes holds while the callback number is asked
        phone = await self.contact_phone(turn, "invoice_request")
        wo = await self.core.create_work_order(
            "invoice", " ".join([f"e-invoice {b.month} {b.amount}", *told.values()]), account_number=acc.account_number,
            priority="low", channel=turn.message.channel, contact_phone=phone,
            details={"month": b.month, "bill_id": b.id, "amount": str(b.amount), **told}, idempotency_key=f"{turn.key}:wo")
        turn.slots.pop("_invoice", None)
        remember_order(turn, wo.id)
        self._order_done(turn, wo, "utter_invoice_created")
