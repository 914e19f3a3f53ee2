"""Online payment: the orders, links, notifies and reconciliation behind ``pay_bill``.

Not a channel: a platform that takes payments (Alipay) is handed a payment service by the
app wiring (``channels.base.ChannelContext.payment_service``) and serves its notify.
"""
