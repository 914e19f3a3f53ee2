"""Notification subscriptions and binding an account to the sender's channel identity.

A subscription is made for the topic the customer names (all four only when none is named) and
for the channel they write on when the core can notify it, else by SMS to the account's phone;
the yes is asked first, showing topic and channel. Unsubscribing removes both, and says so when
there was nothing to remove. Binding an account needs the identity check unless this
identity is already bound to it; afterwards the account is known without asking.

Expects of the class it is mixed into: ``core``; ``account``, ``require_account``, ``verify``
(``IdentityMixin``); ``ask``, ``confirm``, ``finish`` (``FormsMixin``); ``say``, ``phrase``
(``Responses``).
"""

from __future__ import annotations

from typing import Any

from backend_client import ValidationFailed
from bot.dialogue.responses import TOPICS, mask_name
from bot.dialogue.turn import Turn
from bot.logs import mask_account, mask_phone
from intents.signals import topic as topic_in, topics_named
from intents.slots import mobile


# channels the core can send notices on; a notice for any other channel goes by SMS
NOTIFY_CHANNELS = ("wechat", "alipay", "sms", "email")


class SubscriptionFlows:
    def _notice_target(self, turn: Turn, acc: Any) -> tuple[str, str, str]:
        """(channel, identity, how it reads) of the notices for this customer: the channel they
        write on if the core can notify it, else SMS to the account's phone."""
        if turn.message.channel in NOTIFY_CHANNELS:
            return turn.message.channel, turn.message.sender_id, self.phrase(turn, f"utter_fragment_notices_via_{turn.message.channel}")
        phone = mobile(acc.phone) or acc.phone
        return "sms", "+86" + phone, self.phrase(turn, "utter_fragment_notices_via_sms_phone", phone=mask_phone(phone))

    async def flow_subscribe_notifications(self, turn: Turn) -> None:
        acc = await self.require_account(turn, "subscribe_notifications")
        # the topics named ("停电通知和账单提醒都要": both); "notify me when it is back" right after a
        # known outage is about outages; none named: all of them
        named = str(turn.slots["topic"]).split(",") if turn.slots.get("topic") else topics_named(str(turn.slots.get("_text") or ""))
        topics = [t for t in named if t in TOPICS] or (["outage"] if turn.slots.get("_known_outage") else list(TOPICS))
        turn.slots["topic"] = ",".join(topics)  # what the confirmation shows ("just the bill ones" then changes nothing)
        channel, identity, via = self._notice_target(turn, acc)
        topic_names = self.topics_phrase(turn, topics)
        self.confirm(turn, "subscribe_notifications", "utter_confirm_subscribe", account=mask_account(acc.account_number),
                     topics=topic_names, via=via)
        try:
            for tp in topics:
                await self.core.create_subscription(acc.account_number, tp, channel, identity)
        except ValidationFailed:  # the core cannot notify this channel after all: SMS to the account's phone
            phone = mobile(acc.phone) or acc.phone
            channel, identity = "sms", "+86" + phone
            via = self.phrase(turn, "utter_fragment_notices_via_sms_phone", phone=mask_phone(phone))
            for tp in topics:
                await self.core.create_subscription(acc.account_number, tp, channel, identity)
        turn.slots.pop("_known_outage", None)
        turn.actions.append(("action_subscribe", {"topics": topics, "channel": channel}))
        self.finish(turn)
        self.say(turn, "utter_subscribed_via", topics=topic_names, via=via)

    async def flow_unsubscribe_notifications(self, turn: Turn) -> None:
        acc = await self.require_account(turn, "unsubscribe_notifications")
        topic = turn.slots.get("topic") or topic_in(str(turn.slots.get("_text") or ""))
        topic = topic if topic in TOPICS else None
        names = self.phrase(turn, f"utter_fragment_topic_{topic or 'all'}")
        sms = "+86" + (mobile(acc.phone) or acc.phone)
        held = [s for s in await self.core.list_subscriptions(acc.account_number, topic)
                if (s.channel, s.identity) in ((turn.message.channel, turn.message.sender_id), ("sms", sms))]
        if not held:
            # nothing to stop: said so, with no question to answer and nothing written
            self.finish(turn)
            self.say(turn, "utter_not_subscribed", topics=self.phrase(turn, f"utter_fragment_topic_{topic or 'any'}"))
            return
        self.confirm(turn, "unsubscribe_notifications", "utter_confirm_unsubscribe", topics=names)
        removed = await self.core.delete_subscription(acc.account_number, topic, turn.message.channel, turn.message.sender_id)
        removed += await self.core.delete_subscription(acc.account_number, topic, "sms", sms)
        turn.actions.append(("action_unsubscribe", {"topic": topic, "removed": removed}))
        self.finish(turn)
        if removed:
            self.say(turn, "utter_unsubscribed", count=removed)
        else:
            self.say(turn, "utter_not_subscribed", topics=names)

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
        self.say(turn, "utter_bound", account=mask_account(number), name=mask_name(acc.holder_name, turn.lang))
