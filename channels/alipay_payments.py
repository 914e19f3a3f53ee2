"""Alipay online payment: payment links for ``pay_bill`` and the payment notify.

``AlipayPayments`` is the ``PaymentLinkProvider`` the dialogue engine finds in
``ctx.extras["payments"]``. A link creates the payment order in the core (pending), an Alipay
trade (``alipay.trade.precreate`` QR code through the gateway, and a signed wap-pay link), and
a row in ``alipay_orders`` remembering which channel and customer asked, so the confirmation
goes back to the channel the customer paid from.

``POST /payments/alipay/notify`` (Alipay's asynchronous trade notify):

- RSA2 verified with the SDK (``pop sign; verify(data_copy, sign)``); ``app_id`` ours;
  ``out_trade_no`` known; ``total_amount`` equal to the order; ``trade_status`` TRADE_SUCCESS
  or TRADE_FINISHED (other statuses: ``success``, nothing done).
- The order row is claimed with a conditional UPDATE (pending → confirming), so however many
  retries arrive, concurrently or not, ``core.confirm_payment`` is called by one of them; the
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
import logging
import secrets
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import DateTime, Index, Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, mapped_column

from bot import outbox
from bot.db import sql_const
from bot.logs import mask_account
from bot.models import Base, partial
from channels import alipay_sdk
from channels.base import ChannelContext, DeliveryError, PaymentLink, Reply

if TYPE_CHECKING:  # pragma: no cover
    from alipay import AliPay

log = logging.getLogger("powerbot.channels.alipay.payments")

PAID_STATUSES = {"TRADE_SUCCESS", "TRADE_FINISHED"}
CLAIM_LEASE = timedelta(seconds=60)  # a 'confirming' claim older than this was orphaned
CONCURRENT_WAIT = 8.0
RECONCILE_AFTER = timedelta(minutes=5)  # a notify normally arrives within seconds
RECONCILE_WINDOW = timedelta(days=1)
RECONCILE_INTERVAL = 120.0
CENT = Decimal("0.01")
MAX_NOTIFY_FIELDS = 100


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|confirming|paid|conflict
    trade_no: Mapped[str | None] = mapped_column(String(64), nullable=True)
    qr_code: Mapped[str | None] = mapped_column(Text, nullable=True)
    notify_count: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def new_out_trade_no() -> str:
    return "PB" + utcnow().strftime("%Y%m%d%H%M%S") + secrets.token_hex(6)


def money(value: Any) -> Decimal:
    try:
        amount = Decimal(str(value)).quantize(CENT)
    except (InvalidOperation, ValueError):
        raise ValueError("amount is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError("amount must be positive")
    return amount


def confirmation_text(order: AlipayOrder, trade_no: str) -> str:
    return (
        f"缴费成功！户号 {mask_account(order.account_number)} 通过支付宝缴纳的电费 {order.amount} 元已到账，"
        f"支付宝交易号 {trade_no}。感谢您的支持，如有疑问请回复或拨打95598。"
    )


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
        total = money(amount)
        out_trade_no = new_out_trade_no()
        subject = (subject or "电费缴纳")[:128]
        async with self.ctx.sessionmaker() as session, session.begin():
            session.add(AlipayOrder(
                out_trade_no=out_trade_no, account_number=account_number, amount=str(total),
                channel=channel, recipient_id=recipient_id, subject=subject, status="pending",
                notify_count=0, created_at=utcnow(),
            ))
        try:
            await self.ctx.core.create_payment(out_trade_no, account_number, total, "alipay", status="pending")
        except BaseException:
            async with self.ctx.sessionmaker() as session, session.begin():
                await session.execute(delete(AlipayOrder).where(AlipayOrder.out_trade_no == out_trade_no))
            raise
        qr_code: str | None = None
        try:
            result = await alipay_sdk.call(
                self.client, "api_alipay_trade_precreate", subject=subject, out_trade_no=out_trade_no,
                total_amount=str(total), notify_url=self.notify_url, timeout_express="30m",
            )
            qr_code = result.get("qr_code") or None
        except DeliveryError as exc:
            # The signed wap link below works without the gateway; the QR code is a bonus.
            log.warning("alipay precreate failed out_trade_no=%s: %s", out_trade_no, exc)
        query = self.client.api_alipay_trade_wap_pay(
            subject=subject, out_trade_no=out_trade_no, total_amount=str(total),
            return_url=self.return_url, notify_url=self.notify_url, timeout_express="30m",
        )
        pay_url = f"{alipay_sdk.gateway_of(self.client)}?{query}"
        if qr_code:
            async with self.ctx.sessionmaker() as session, session.begin():
                await session.execute(
                    update(AlipayOrder).where(AlipayOrder.out_trade_no == out_trade_no).values(qr_code=qr_code)
                )
        log.info("alipay payment link out_trade_no=%s account=%s amount=%s channel=%s",
                 out_trade_no, mask_account(account_number), total, channel)
        return PaymentLink(out_trade_no=out_trade_no, amount=str(total), pay_url=pay_url, qr_code=qr_code)

    def page_pay_url(self, order: AlipayOrder) -> str:
        """Desktop (page pay) link for the same order, for channels shown on a PC (email)."""
        query = self.client.api_alipay_trade_page_pay(
            subject=order.subject, out_trade_no=order.out_trade_no, total_amount=order.amount,
            return_url=self.return_url, notify_url=self.notify_url,
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
            total = money(data.get("total_amount", ""))
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
                       (AlipayOrder.status == "pending")
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
                if status == "pending" and await self._claim(out_trade_no):
                    break  # the holder gave up (core down); our turn
                if asyncio.get_running_loop().time() > deadline:
                    return "unavailable"
                await asyncio.sleep(0.05)
        try:
            await self.ctx.core.confirm_payment(out_trade_no, trade_no, total)
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
        reply = Reply(channel=order.channel, recipient_id=order.recipient_id,
                      text=confirmation_text(order, trade_no), kind="text",
                      metadata={"event": "payment.confirmed", "out_trade_no": out_trade_no})
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
        log.info("alipay payment recorded out_trade_no=%s account=%s amount=%s",
                 out_trade_no, mask_account(order.account_number), order.amount)
        return "paid"

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
            total = money(result.get("total_amount", ""))
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
