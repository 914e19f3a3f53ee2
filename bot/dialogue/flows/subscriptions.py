"""Notification subscriptions and binding an account to the sender's channel identity.

A subscription is made for the channel the customer writes on; a channel the core cannot
notify (it refuses with ``ValidationFailed``) gets the notices by SMS to the account's phone
instead. Unsubscribing removes both. Binding an account needs the identity check unless this
identity is already bound to it; afterwards the account is known without asking.

Expects of the class it is mixed into: ``core``; ``account``, ``require_account``, ``verify``
(``IdentityMixin``); ``ask``, ``confirm``, ``finish`` (``FormsMixin``); ``say``, ``phrase``
(``Responses``).
"""

from __future__ import annotations

from backend_client import ValidationFailed
from bot.dialogue.responses import TOPICS, mask_name
from bot.dialogue.turn import Turn
from bot.logs import mask_account, mask_phone
from intents.signals import topic as topic_in
from intents.slots import mobile


class SubscriptionFlows:
    async def flow_subscribe_notifications(self, turn: Turn) -> None:
        acc = await self.require_account(turn, "subscribe_notifications")
        topic = turn.slots.get("topic") or topic_in(str(turn.slots.get("_text") or "")) or "all"
        topics = ["outage", "bill", "work_order", "payment"] if topic == "all" else [topic]
        channel, identity = turn.message.channel, turn.message.sender_id
        try:
            for tp in topics:
                await self.core.create_subscription(acc.account_number, tp, channel, identity)
            via = ""
        except ValidationFailed:
            channel, identity = "sms", "+86" + (mobile(acc.phone) or acc.phone)
            for tp in topics:
                await self.core.create_subscription(acc.account_number, tp, channel, identity)
            via = self.phrase(turn, "utter_fragment_notices_by_sms", phone=mask_phone(mobile(acc.phone) or acc.phone))
        turn.actions.append(("action_subscribe", {"topics": topics, "channel": channel}))
        self.finish(turn)
        topic_names = self.phrase(turn, "utter_fragment_list_separator").join(
            self.phrase(turn, f"utter_fragment_topic_{t}") for t in topics)
        self.say(turn, "utter_subscribed", topics=topic_names, via=via)

    async def flow_unsubscribe_notifications(self, turn: Turn) -> None:
        acc = await self.require_account(turn, "unsubscribe_notifications")
        topic = turn.slots.get("topic") or topic_in(str(turn.slots.get("_text") or ""))
        self.confirm(turn, "unsubscribe_notifications", "utter_confirm_unsubscribe",
                     topics=self.phrase(turn, f"utter_fragment_topic_{topic if topic in TOPICS else 'all'}"))
        removed = await self.core.delete_subscription(acc.account_number, topic, turn.message.channel, turn.message.sender_id)
        removed += await self.core.delete_subscription(acc.account_number, topic, "sms", "+86" + (mobile(acc.phone) or acc.phone))
        turn.actions.append(("action_unsubscribe", {"topic": topic, "removed": removed}))
        self.finish(turn)
        self.say(turn, "utter_unsubscribed", count=removed)

    async def flow_bind_account(self, turn: Turn) -> None:
        number = turn.slots.get("account_number")
        if not number:
            self.ask(turn, "bind_account", "account_number", "utter_ask_account_number")
        acc = await self.account(turn, number)
        if number not in turn.authorized or not any(
            b.channel == turn.message.channel and b.identity == turn.message.sender_id for b in acc.bindings
        ):
            if number not in turn.authorized:
                await self.verify(turn, "bind_account", acc)
        await self.core.bind_account(number, turn.message.channel, turn.message.sender_id)
        turn.new_accounts.append((number, "bound"))
        turn.authorized.add(number)
        turn.actions.append(("action_bind_account", {"account": mask_account(number)}))
        self.finish(turn)
        self.say(turn, "utter_bound", account=mask_account(number), name=mask_name(acc.holder_name))
