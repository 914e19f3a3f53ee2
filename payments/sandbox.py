"""Payments against the embedded default's demo core: the whole path, and no money moves.

The reference core with demo data has no payment system behind it, yet a customer trying the
embedded default asks to pay like anyone else and expects what a real provider gives: confirm
the amount, get a link, pay, see the bill settled. ``SandboxPayments`` opens the core's
payment (``create_payment``, pending) as the Alipay service does, and links to a page on the
gateway (``/pay/sandbox/{out_trade_no}``) whose button confirms it (``confirm_payment``: the
core settles the bills exactly once; a second press changes nothing). The page says it is a
demonstration. On only with ``POWERBOT_PAYMENT_SANDBOX`` (``powerbot run`` turns it on for its
demo data unless set); a gateway with Alipay configured uses Alipay.
"""

from __future__ import annotations

import html
import secrets
from decimal import Decimal
from typing import Any

from aiohttp import web

from backend_client import CoreUnavailable, NotFound
from bot.langs import request_language
from channels.base import ChannelContext, PaymentLink
from common.clock import utcnow
from common.pii import mask_account

PAGE = "/pay/sandbox/{out_trade_no}"


def _out_trade_no() -> str:
    return "SBX" + utcnow().strftime("%Y%m%d%H%M%S") + secrets.token_hex(6)


class SandboxPayments:
    """``PaymentLinkProvider`` of the demo core, and the page its links open."""

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx  # the core client is filled in at startup

    async def create_payment_link(
        self, *, account_number: str, amount: str, channel: str, recipient_id: str, subject: str
    ) -> PaymentLink:
        out_trade_no = _out_trade_no()
        payment = await self.ctx.core.create_payment(out_trade_no, account_number, Decimal(amount), "sandbox")
        base = (self.ctx.settings.public_url or f"http://{self.ctx.settings.host}:{self.ctx.settings.port}").rstrip("/")
        return PaymentLink(out_trade_no=payment.out_trade_no, amount=f"{payment.amount:.2f}",
                           pay_url=base + PAGE.format(out_trade_no=payment.out_trade_no))

    def routes(self) -> list[web.RouteDef]:
        return [web.get(PAGE, self.page), web.post(PAGE, self.pay)]

    async def page(self, request: web.Request) -> web.Response:
        payment = await self._payment(request)
        return self._render(request, payment)

    async def pay(self, request: web.Request) -> web.Response:
        payment = await self._payment(request)
        if payment.status != "paid":
            try:
                payment = await self.ctx.core.confirm_payment(
                    payment.out_trade_no, "SANDBOX" + secrets.token_hex(8), payment.amount)
            except CoreUnavailable:
                raise web.HTTPServiceUnavailable(text=self._text(request, "utter_busy"))
        return self._render(request, payment)

    async def _payment(self, request: web.Request) -> Any:
        try:
            return await self.ctx.core.get_payment(request.match_info["out_trade_no"])
        except CoreUnavailable:
            raise web.HTTPServiceUnavailable(text=self._text(request, "utter_busy"))
        except NotFound:
            raise web.HTTPNotFound(text=self._text(request, "utter_sandbox_payment_unknown"))

    def _text(self, request: web.Request, name: str, **values: Any) -> str:
        return self.ctx.texts.text(name, lang=request_language(request.headers), **values)

    def _render(self, request: web.Request, payment: Any) -> web.Response:
        values = {"account": mask_account(payment.account_number), "amount": f"{payment.amount:.2f}"}
        paid = payment.status == "paid"
        body = self._text(request, "utter_sandbox_payment_paid" if paid else "utter_sandbox_payment_due", **values)
        form = "" if paid else (
            f'<form method="post"><button type="submit">'
            f'{html.escape(self._text(request, "utter_sandbox_payment_button"))}</button></form>')
        title = html.escape(self._text(request, "utter_sandbox_payment_title"))
        page = (f'<!doctype html><html lang="{request_language(request.headers)}"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
                '<style>body{font-family:sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}'
                'button{font-size:1.1rem;padding:.6rem 1.4rem}</style></head>'
                f'<body><h1>{title}</h1><p>{html.escape(body)}</p>{form}</body></html>')
        return web.Response(text=page, content_type="text/html")
