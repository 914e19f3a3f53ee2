"""Alipay online payment: payment links for ``pay_bill`` and the payment notify.

``AlipayPayments`` is the ``channels.base.PaymentService`` the Alipay channel builds on its
signed client (the wiring hands it over as ``ChannelContext.payment_service``) and the
``PaymentLinkProvider`` the dialogue engine finds in ``ctx.extras["payments"]``. A link
creates the payment order in the core (pending), an Alipay trade (``alipay.trade.precreate``
QR code through the gateway, and a signed wap-pay link), and a row in ``alipay_orders``
remembering which channel and customer asked, so the confirmation goes back to the channel
the customer paid from.

One open order per account and amount: while an order for the same account and amount is
unpaid and has more than ``REUSE_MARGIN`` of its ``ORDER_TTL`` left (Alipay closes the trade at
its ``time_expire``), asking again gives that order's link, not a new order. An order is
``creating`` until the core holds its payment and Alipay its trade; a creation that failed
(core down, an answer from the gateway that cannot be read or refuses the trade) raises
``PaymentUnavailable`` — a ``CoreUnavailable``, so the pipeline tells the customer the system
is busy and runs the turn again later — and the next attempt finishes the same order instead
of starting another. (Gateway unreachable is not a failure: the signed wap link works without
it, the QR code is a bonus.)

A payment confirmed after the bills were paid by another order (the customer paid two links):
the core keeps what no bill took as the account's credit (``credit_amount``); the customer is
told, and a high-priority work order (``details.category = "duplicate_payment"``) asks the back
office to refund it or set it against later bills — agents see it in the conversation summary.

``POST /payments/alipay/notify`` (Alipay's asynchronous trade notify):

- RSA2 verified with the SDK (``pop sign; verify(data_copy, sign)``); ``app_id`` ours;
  ``out_trade_no`` known; ``total_amount`` equal to the order; ``trade_status`` TRADE_SUCCESS
  or TRADE_FINISHED (other statuses: ``success``, nothing done).
- The order row is claimed with a conditional UPDATE (pending, or creating, → confirming), so
  however many retries arrive, concurrently or not, ``core.confirm_payment`` is called by one of them; the
  paid state and the confirmation message are committed together (outbox dedupe key per
  ``out_trade_no``). A concurrent duplicate waits for the claim holder's outcome.
- Answers: ``success`` (200) when recorded or already recorded; ``fail`` with 503 when the core
  is down so Alipay retries. Hostile or wrong notifies (bad form 400, forged signature or
  foreign ``app_id`` 403, unknown ``out_trade_no`` 404, amount mismatch 409) are refused with
  a 4xx *and* the body ``fail`` — Alipay only treats the literal ``success`` as done, so a
  genuine but inconsistent notify keeps being retried while someone looks at the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import DateTime, Index, Integer, String, Text, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from backend_client import Conflict, CoreError, CoreUnavailable, ValidationFailed
from bot import outbox
from bot.db import sql_const
from bot.dialogue import handoff
from bot.langs import detect_language
from bot.logs import mask_account
from bot.models import Base, partial
from channels import alipay_sdk
from channels.base import ChannelContext, DeliveryError, PaymentLink, Reply, Texts
from common.clock import utcnow
from common.money import cents

if TYPE_CHECKING:  # pragma: no cover
    from alipay import AliPay

log = logging.getLogger("powerbot.channels.alipay.payments")

PAID_STATUSES = {"TRADE_SUCCESS", "TRADE_FINISHED"}
CLAIM_LEASE = timedelta(seconds=60)  # a 'confirming' claim older than this was orphaned
CONCURRENT_WAIT = 8.0
RECONCILE_AFTER = timedelta(minutes=5)  # a notify normally arrives within seconds
RECONCILE_WINDOW = timedelta(days=1)
RECONCILE_INTERVAL = 120.0
MAX_NOTIFY_FIELDS = 100
ORDER_TTL = timedelta(minutes=30)  # Alipay closes an unpaid trade at created_at + this (time_expire)
REUSE_MARGIN = timedelta(minutes=5)  # an open order with less time left than this is not offered again
CREATE_LEASE = timedelta(seconds=30)  # a creation claimed longer ago than this was abandoned
CHINA_TZ = timezone(timedelta(hours=8))  # Alipay's times are Beijing time


class AlipayOrder(Base):
    """One Alipay trade created for a bill payment; the notify is checked against it."""

    __tablename__ = "alipay_orders"
    __table_args__ = (
        Index("ix_alipay_orders_recipient", "channel", "recipient_id"),
        # the reconciler's sweep (bot_0012): only the few orders waiting for a notify
        Index("ix_alipay_orders_pending", "created_at", **partial("status = 'pending'")),
    )

    out_trade_no: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_number: Mapped[str] = mapped_column(String(20))
    amount: Mapped[str] = mapped_column(String(16))  # yuan, two decimals
    channel: Mapped[str] = mapped_column(String(32))  # where the customer asked (confirmation goes there)
    recipient_id: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(256))
    # creating|pending|confirming|paid|conflict (creating: the core payment or the Alipay trade
    # is not made yet, the link not given out)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    trade_no: Mapped[str | None] = mapped_column(String(64), nullable=True)
    qr_code: Mapped[str | None] = mapped_column(Text, nullable=True)
    notify_count: Mapped[int] = mapped_column(Integer, default=0)
    # creating: when a request took on making the order (None: the last one gave up);
    # confirming: when a notify took on recording the payment
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def new_out_trade_no() -> str:
    return "PB" + utcnow().strftime("%Y%m%d%H%M%S") + secrets.token_hex(6)


def positive_amount(value: Any) -> Decimal:
    """``value`` (a request's or Alipay's amount) as a positive amount in cents; ValueError otherwise."""
    try:
        amount = cents(value)
    except (InvalidOperation, ValueError):
        raise ValueError("amount is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError("amount must be positive")
    return amount


class PaymentUnavailable(CoreUnavailable):
    """A payment link could not be made now (the gateway's answer could not be read or refused
    the trade, another request is still making the same order). A ``CoreUnavailable``: the
    pipeline answers "system busy" and runs the turn again later, which finishes the same order."""


def confirmation_text(texts: Texts, order: AlipayOrder, trade_no: str) -> str:
    """To the customer whose payment arrived (in Chinese, as it has always been)."""
    return texts.text("utter_payment_confirmed", lang="zh", channel=order.channel,
                      account=mask_account(order.account_number), amount=order.amount, trade_no=trade_no)


def duplicate_payment_text(texts: Texts, order: AlipayOrder, trade_no: str, credit: Decimal) -> str:
    """To the customer whose payment found the bills already paid (in English when the order
    was asked for in English: its subject is in the customer's language)."""
    return texts.text("utter_payment_duplicate", lang=detect_language(order.subject), channel=order.channel,
                      account=mask_account(order.account_number), amount=order.amount, trade_no=trade_no,
                      credit=credit)


def _expire_text(order: AlipayOrder) -> str:
    """``time_expire`` of the order's trade (Beijing time): the same on every link signed for it."""
    created = order.created_at if order.created_at.tzinfo else order.created_at.replace(tzinfo=timezone.utc)
    return (created + ORDER_TTL).astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


async def _lock_account(session: AsyncSession, account_number: str) -> None:
    """Serialise the open-order check of one account across processes (PostgreSQL: a
    transaction advisory lock; SQLite transactions are serial already, BEGIN IMMEDIATE)."""
    if session.bind.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"alipay-order:{account_number}".encode()).digest()[:8], "big", signed=True)
        await session.execute(select(func.pg_advisory_xact_lock(key)))


def _fail(status: int) -> web.Response:
    return web.Response(text="fail", status=status, content_type="text/plain")


class AlipayPayments:
    """PaymentLinkProvider backed by Alipay trades, plus the payment notify handler."""

    def __init__(self, ctx: ChannelContext, client: AliPay, *, appid: str, notify_url: str,
                 return_url: str | None = None) -> None:
        self.ctx = ctx
        self.client = client
        self.appid = appid
        self.notify_url = notify_url
        self.return_url = return_url

    # ------------------------------------------------------------------ links
    async def create_payment_link(
        self, *, account_number: str, amount: str, channel: str, recipient_id: str, subject: str
    ) -> PaymentLink:
        """The link of the account's open order for this amount, or of a new order.

        Raises ``PaymentUnavailable`` when the order cannot be made now; the order made so far
        is kept and finished by the next call (no second order for the same request)."""
        total = positive_amount(amount)
        subject = (subject or self.ctx.texts.text("utter_payment_subject", account=mask_account(account_number)))[:128]
        order, mine = await self._open_order(account_number, total, channel, recipient_id, subject)
        if mine:
            await self._make(order)
        else:
            log.info("alipay payment link reused out_trade_no=%s account=%s", order.out_trade_no,
                     mask_account(account_number))
        return PaymentLink(out_trade_no=order.out_trade_no, amount=order.amount, pay_url=self.wap_pay_url(order),
                           qr_code=order.qr_code)

    async def _open_order(self, account_number: str, total: Decimal, channel: str, recipient_id: str,
                          subject: str) -> tuple[AlipayOrder, bool]:
        """The order to answer with, and whether this call must (finish) make it.

        Under a per-account lock: an open (``pending``) order for the account and amount is
        reused; an unfinished one (``creating``) this customer asked for before is taken on
        (unless another request is making it right now: wait for that one); else a new order
        is claimed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONCURRENT_WAIT
        while True:
            now = utcnow()
            async with self.ctx.sessionmaker() as session, session.begin():
                await _lock_account(session, account_number)
                fresh = (AlipayOrder.account_number == account_number, AlipayOrder.amount == str(total),
                         AlipayOrder.created_at > now - (ORDER_TTL - REUSE_MARGIN))
                order = (await session.execute(
                    select(AlipayOrder).where(AlipayOrder.status == sql_const("pending"), *fresh)  # ix_alipay_orders_pending
                    .order_by(AlipayOrder.created_at.desc()).limit(1))).scalar_one_or_none()
                if order is not None:
                    return order, False
                order = (await session.execute(
                    select(AlipayOrder).where(AlipayOrder.channel == channel, AlipayOrder.recipient_id == recipient_id,
                                              AlipayOrder.status == "creating", *fresh)  # ix_alipay_orders_recipient
                    .order_by(AlipayOrder.created_at.desc()).limit(1))).scalar_one_or_none()
                if order is None:
                    order = AlipayOrder(
                        out_trade_no=new_out_trade_no(), account_number=account_number, amount=str(total),
                        channel=channel, recipient_id=recipient_id, subject=subject, status="creating",
                        notify_count=0, claimed_at=now, created_at=now,
                    )
                    session.add(order)
                    return order, True
                claimed = order.claimed_at
                if claimed is None or outbox.as_aware(claimed) < now - CREATE_LEASE:
                    order.claimed_at = now  # the last attempt gave up (or died): finish its order
                    return order, True
            if loop.time() > deadline:
                raise PaymentUnavailable("another request is still making this payment order")
            await asyncio.sleep(0.05)

    async def _make(self, order: AlipayOrder) -> None:
        """Make a claimed order payable: the core's pending payment, then the Alipay trade
        (both idempotent by ``out_trade_no``, so finishing an earlier attempt's order is safe).
        On failure the claim is given up and the order kept for the next attempt; an order the
        core refuses (nothing owed any more...) is dropped, it never existed."""
        out_trade_no = order.out_trade_no
        try:
            await self.ctx.core.create_payment(out_trade_no, order.account_number, Decimal(order.amount), "alipay",
                                               status="pending")
        except (ValidationFailed, Conflict):
            async with self.ctx.sessionmaker() as session, session.begin():
                await session.execute(delete(AlipayOrder).where(AlipayOrder.out_trade_no == out_trade_no,
                                                                AlipayOrder.status == "creating"))
            raise
        except BaseException:
            await self._give_up(out_trade_no)
            raise
        try:
            qr_code = await self._precreate(order)
        except BaseException:
            await self._give_up(out_trade_no)
            raise
        async with self.ctx.sessionmaker() as session, session.begin():
            await session.execute(
                update(AlipayOrder).where(AlipayOrder.out_trade_no == out_trade_no, AlipayOrder.status == "creating")
                .values(status="pending", claimed_at=None, qr_code=qr_code)
            )
        order.status, order.claimed_at, order.qr_code = "pending", None, qr_code
        log.info("alipay payment link out_trade_no=%s account=%s amount=%s channel=%s",
                 out_trade_no, mask_account(order.account_number), order.amount, order.channel)

    async def _precreate(self, order: AlipayOrder) -> str | None:
        """The trade at Alipay (``alipay.trade.precreate``); its QR code, or None when the gateway
        is unreachable (the signed wap link works without it). An answer that cannot be read, is
        not this order's or refuses the trade raises ``PaymentUnavailable``."""
        try:
            result = await alipay_sdk.call(
                self.client, "api_alipay_trade_precreate", subject=order.subject, out_trade_no=order.out_trade_no,
                total_amount=order.amount, notify_url=self.notify_url, time_expire=_expire_text(order),
            )
        except DeliveryError as exc:
            if exc.code == alipay_sdk.UNREACHABLE:
                log.warning("alipay precreate failed out_trade_no=%s: %s", order.out_trade_no, exc)
                return None
            log.error("alipay precreate refused or unreadable out_trade_no=%s: %s", order.out_trade_no, exc)
            raise PaymentUnavailable(f"alipay precreate failed ({exc.code})") from None
        qr_code = result.get("qr_code")
        if result.get("out_trade_no") != order.out_trade_no or not isinstance(qr_code, str) \
                or not qr_code.startswith("https://") or len(qr_code) > 2000:
            log.error("alipay precreate answer without this order's QR code out_trade_no=%s", order.out_trade_no)
            raise PaymentUnavailable("alipay precreate answer is not this order's")
        return qr_code

    async def _give_up(self, out_trade_no: str) -> None:
        async with self.ctx.sessionmaker() as session, session.begin():
            await session.execute(
                update(AlipayOrder).where(AlipayOrder.out_trade_no == out_trade_no, AlipayOrder.status == "creating")
                .values(claimed_at=None)
            )

    def wap_pay_url(self, order: AlipayOrder) -> str:
        """Mobile (wap pay) link of the order; every link signed for one order pays the same trade."""
        query = self.client.api_alipay_trade_wap_pay(
            subject=order.subject, out_trade_no=order.out_trade_no, total_amount=order.amount,
            return_url=self.return_url, notify_url=self.notify_url, time_expire=_expire_text(order),
        )
        return f"{alipay_sdk.gateway_of(self.client)}?{query}"

    def page_pay_url(self, order: AlipayOrder) -> str:
        """Desktop (page pay) link for the same order, for channels shown on a PC (email)."""
        query = self.client.api_alipay_trade_page_pay(
            subject=order.subject, out_trade_no=order.out_trade_no, total_amount=order.amount,
            return_url=self.return_url, notify_url=self.notify_url, time_expire=_expire_text(order),
        )
        return f"{alipay_sdk.gateway_of(self.client)}?{query}"

    # ------------------------------------------------------------------ notify
    async def notify(self, request: web.Request) -> web.Response:
        try:
            form = await request.post()
        except web.HTTPException:
            raise  # 413 for a body over the size limit
        except Exception:  # noqa: BLE001 - undecodable body
            return _fail(400)
        data: dict[str, str] = {}
        for key, value in form.items():
            if not isinstance(value, str) or key in data or len(data) >= MAX_NOTIFY_FIELDS:
                return _fail(400)
            data[key] = value
        sign = data.pop("sign", "")
        out_trade_no = data.get("out_trade_no", "")
        if not sign or not out_trade_no:
            return _fail(400)
        checked = dict(data)  # verify() mutates its argument (drops sign_type)
        try:
            ok = self.client.verify(checked, sign)
        except Exception:  # noqa: BLE001 - wrong sign_type, garbage base64...
            ok = False
        if not ok:
            log.warning("alipay notify: signature check failed from=%s", request.remote)
            return _fail(403)
        if data.get("app_id") != self.appid:
            log.warning("alipay notify: foreign app_id out_trade_no=%s", out_trade_no[:64])
            return _fail(403)
        async with self.ctx.sessionmaker() as session:
            order = await session.get(AlipayOrder, out_trade_no)
        if order is None:
            log.warning("alipay notify: unknown out_trade_no=%s", out_trade_no[:64])
            return _fail(404)
        try:
            total = positive_amount(data.get("total_amount", ""))
        except ValueError:
            return _fail(400)
        if total != Decimal(order.amount):
            log.error("alipay notify: amount mismatch out_trade_no=%s notified=%s order=%s",
                      out_trade_no, total, order.amount)
            return _fail(409)
        trade_status = data.get("trade_status", "")
        trade_no = data.get("trade_no", "")
        if trade_status not in PAID_STATUSES:
            log.info("alipay notify out_trade_no=%s status=%s: nothing to record", out_trade_no, trade_status[:32])
            return web.Response(text="success", content_type="text/plain")
        if not trade_no or len(trade_no) > 64:
            return _fail(400)
        return await self._record(order, trade_no, total)

    async def _claim(self, out_trade_no: str) -> bool:
        now = utcnow()
        async with self.ctx.sessionmaker() as session, session.begin():
            res = await session.execute(
                update(AlipayOrder)
                .where(AlipayOrder.out_trade_no == out_trade_no,
                       AlipayOrder.status.in_(("pending", "creating"))
                       | ((AlipayOrder.status == "confirming") & (AlipayOrder.claimed_at < now - CLAIM_LEASE)))
                .values(status="confirming", claimed_at=now, notify_count=AlipayOrder.notify_count + 1)
            )
            return res.rowcount == 1

    async def _status(self, out_trade_no: str) -> str:
        async with self.ctx.sessionmaker() as session:
            return (await session.execute(
                select(AlipayOrder.status).where(AlipayOrder.out_trade_no == out_trade_no)
            )).scalar_one()

    async def _record(self, order: AlipayOrder, trade_no: str, total: Decimal) -> web.Response:
        outcome = await self.settle(order, trade_no, total)
        if outcome == "paid":
            return web.Response(text="success", content_type="text/plain")
        return _fail(409 if outcome == "conflict" else 503)

    async def settle(self, order: AlipayOrder, trade_no: str, total: Decimal) -> str:
        """Record a verified payment in the core once; queue the confirmation with it.

        Returns ``paid`` (now or before), ``conflict`` (the core holds another trade for it) or
        ``unavailable`` (core down, or another request still holds the claim): try again later.
        """
        from backend_client import Conflict, CoreError, CoreUnavailable

        out_trade_no = order.out_trade_no
        if not await self._claim(out_trade_no):
            # Already paid, or another request holds the claim: wait for its outcome.
            deadline = asyncio.get_running_loop().time() + CONCURRENT_WAIT
            while True:
                status = await self._status(out_trade_no)
                if status in ("paid", "conflict"):
                    return status
                if status in ("pending", "creating") and await self._claim(out_trade_no):
                    break  # the holder gave up (core down); our turn
                if asyncio.get_running_loop().time() > deadline:
                    return "unavailable"
                await asyncio.sleep(0.05)
        try:
            payment = await self.ctx.core.confirm_payment(out_trade_no, trade_no, total)
            if payment.credit_amount > 0:  # the bills were paid already: a duplicate payment
                await self._report_duplicate(order, trade_no, payment.credit_amount)
        except Conflict:
            log.error("alipay payment: core refused confirmation (conflict) out_trade_no=%s", out_trade_no)
            await self._release(out_trade_no, "conflict")
            return "conflict"
        except CoreUnavailable:
            log.warning("alipay payment: core unavailable, will retry out_trade_no=%s", out_trade_no)
            await self._release(out_trade_no, "pending")
            return "unavailable"
        except CoreError as exc:
            log.error("alipay payment: core error %s out_trade_no=%s", type(exc).__name__, out_trade_no)
            await self._release(out_trade_no, "pending")
            return "unavailable"
        except BaseException:
            await self._release(out_trade_no, "pending")
            raise
        credit = payment.credit_amount
        texts = self.ctx.texts
        text = (duplicate_payment_text(texts, order, trade_no, credit) if credit > 0
                else confirmation_text(texts, order, trade_no))
        reply = Reply(channel=order.channel, recipient_id=order.recipient_id, text=text, kind="text",
                      metadata={"event": "payment.confirmed", "out_trade_no": out_trade_no,
                                **({"credit_amount": str(credit)} if credit > 0 else {})})
        async with self.ctx.sessionmaker() as session, session.begin():
            await session.execute(
                update(AlipayOrder).where(AlipayOrder.out_trade_no == out_trade_no)
                .values(status="paid", trade_no=trade_no, paid_at=utcnow())
            )
            # the answer to the customer's own payment, not a broadcast: a reply (never held by
            # quiet hours, claimed before notice fan-outs)
            await outbox.enqueue(session, reply, kind="reply",
                                 conversation_id=f"{order.channel}:{order.recipient_id}",
                                 dedupe_key=f"alipay-paid:{out_trade_no}")
            if credit > 0:  # an agent takes it up with the customer in their conversation
                await handoff.request_handoff(
                    session, f"{order.channel}:{order.recipient_id}", "duplicate_payment", "high",
                    summary=f"重复缴费 {credit} 元已记为账户余额（订单 {out_trade_no}），请联系客户办理退款或抵扣")
        log.info("alipay payment recorded out_trade_no=%s account=%s amount=%s",
                 out_trade_no, mask_account(order.account_number), order.amount)
        return "paid"

    async def _report_duplicate(self, order: AlipayOrder, trade_no: str, credit: Decimal) -> None:
        """Raise a payment no bill took to the back office: a high-priority work order on the
        account (once per order: keyed by ``out_trade_no``), which agents also see in the
        conversation's summary. Core down: raised, and the notify is retried; a work order the
        core refuses is logged (the payment and its credit are recorded all the same)."""
        out_trade_no = order.out_trade_no
        log.warning("alipay duplicate payment out_trade_no=%s account=%s: %s kept as credit",
                    out_trade_no, mask_account(order.account_number), credit)
        try:
            await self._duplicate_work_order(order, trade_no, credit)
        except CoreUnavailable:
            raise
        except CoreError as exc:
            log.error("alipay duplicate payment out_trade_no=%s: work order refused by the core (%s)",
                      out_trade_no, type(exc).__name__)

    async def _duplicate_work_order(self, order: AlipayOrder, trade_no: str, credit: Decimal) -> None:
        out_trade_no = order.out_trade_no
        await self.ctx.core.create_work_order(
            "complaint",
            f"重复缴费待退款：支付宝订单 {out_trade_no}（交易号 {trade_no}）缴纳 {order.amount} 元时账单已由其他订单缴清，"
            f"{credit} 元未抵扣任何账单，已记为账户余额。请核实后联系客户办理退款或抵扣下期电费。",
            account_number=order.account_number, priority="high", channel=order.channel,
            details={"category": "duplicate_payment", "out_trade_no": out_trade_no, "trade_no": trade_no,
                     "amount": order.amount, "credit_amount": str(credit),
                     "conversation_id": f"{order.channel}:{order.recipient_id}"},
            idempotency_key=f"alipay-duplicate-{out_trade_no}",
        )

    # ------------------------------------------------------------------ reconciliation
    async def reconcile(self, out_trade_no: str) -> str:
        """Ask Alipay (``alipay.trade.query``) about one order; record it if paid.

        For a notify that never arrived. Returns the order's outcome: ``paid``, ``pending``
        (not paid yet), ``conflict``, ``unavailable`` or ``unknown`` (no such order here).
        """
        async with self.ctx.sessionmaker() as session:
            order = await session.get(AlipayOrder, out_trade_no)
        if order is None:
            return "unknown"
        if order.status in ("paid", "conflict"):
            return order.status
        try:
            result = await alipay_sdk.call(self.client, "api_alipay_trade_query", out_trade_no=out_trade_no)
        except DeliveryError as exc:
            if exc.code and "TRADE_NOT_EXIST" in exc.code:
                return "pending"  # the customer never opened the link
            log.warning("alipay trade.query failed out_trade_no=%s: %s", out_trade_no, exc)
            return "unavailable"
        if result.get("trade_status") not in PAID_STATUSES:
            return "pending"
        try:
            total = positive_amount(result.get("total_amount", ""))
        except ValueError:
            return "unavailable"
        trade_no = str(result.get("trade_no") or "")
        if total != Decimal(order.amount) or not trade_no or str(result.get("out_trade_no")) != out_trade_no:
            log.error("alipay trade.query disagrees with the order out_trade_no=%s", out_trade_no)
            return "conflict"
        return await self.settle(order, trade_no, total)

    async def reconcile_pending(self, *, older_than: timedelta = RECONCILE_AFTER, limit: int = 50) -> dict[str, str]:
        """Reconcile pending orders created between ``older_than`` and a day ago."""
        now = utcnow()
        async with self.ctx.sessionmaker() as session:
            numbers = list((await session.execute(
                select(AlipayOrder.out_trade_no)
                .where(AlipayOrder.status == sql_const("pending"), AlipayOrder.created_at <= now - older_than,
                       AlipayOrder.created_at >= now - RECONCILE_WINDOW)
                .order_by(AlipayOrder.created_at).limit(limit)
            )).scalars())
        return {n: await self.reconcile(n) for n in numbers}

    async def run_reconciler(self, interval: float = RECONCILE_INTERVAL) -> None:
        """Background loop (started by the channel): catch payments whose notify got lost."""
        while True:
            await asyncio.sleep(interval)
            try:
                done = await self.reconcile_pending()
                if any(v == "paid" for v in done.values()):
                    log.info("alipay reconciler recorded %d missed payment(s)",
                             sum(v == "paid" for v in done.values()))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a database blip must not end the loop
                log.exception("alipay reconciliation pass failed")

    async def _release(self, out_trade_no: str, status: str) -> None:
        async with self.ctx.sessionmaker() as session, session.begin():
            await session.execute(
                update(AlipayOrder).where(AlipayOrder.out_trade_no == out_trade_no, AlipayOrder.status == "confirming")
                .values(status=status, claimed_at=None)
            )
