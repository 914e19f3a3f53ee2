"""Identity: whose accounts a sender may see, and the check that proves an account is theirs.

An account's data (bills, payments, work orders) is shown only to an identity the core already
links to it (a binding of this channel identity, or the registered phone of a sender whose
channel proves the number, ``Channel.proves``) or one that passed the check in this
conversation: the last 4 digits (or the whole number) of the account's registered phone.
Wrong answers are counted per identity and per account by the tracker store
(``TrackerStore.lock_state``); past the limits of ``bot.dialogue.verification`` the check locks.
What a turn learns (accounts found, verified, a failed answer) is written by the tracker store
from the turn's result (``Turn.new_accounts``, ``Turn.verify_result``), not here.

Expects of the class it is mixed into: ``core`` (a ``CoreClient``), ``store`` (the
``TrackerStore``), ``sender_proofs``; ``ask``, ``finish`` and ``_clear_form`` (``FormsMixin``: the
check is a form slot, ``last4``); ``run_flow`` (``PolicyMixin``); ``say`` (``Responses``).
"""

from __future__ import annotations

from backend_client import NotFound
from backend_client.models import Account
from bot.dialogue.forms import Stop
from bot.dialogue.turn import Turn
from bot.dialogue.verification import LOCK_MINUTES, MAX_VERIFY_FAILURES
from bot.logs import mask_account
from channels.base import Message, proven_phone
from intents.payload import chosen_option
from bot.dialogue.flows.places import address_for, street_of
from intents.places import street_written
from intents.signals import account_ending, asks_account_details, asks_if_overdue, given_last4, mentions_report, names_category, topic
from bot.dialogue.rereading import ACCOUNT_CHECK
from intents.slots import account_number, bare_last4, choice, mobile


class IdentityMixin:
    """Known accounts, account lookup and the identity check (mixed into ``DialogueEngine``)."""

    async def gives_registered_phone(self, turn: Turn, number: str) -> bool:
        """Whether the message gives account ``number``'s registered phone in full ("I'm Li Na,
        account …, my phone is 139…"): the check's answer, kept for it; a different number is no
        failed try, just a number to call."""
        phone = mobile(str(turn.entities.get("phone_number") or ""))
        try:
            same = bool(phone) and mobile((await self.account(turn, number)).phone) == phone
        except NotFound:
            return False
        if same:
            turn.slots["_last4"] = phone
        return same

    async def flow_account_check(self, turn: Turn) -> None:
        """The check of an account given alone; then the orders if the first words were about one
        ("since I reported…", "工单"), else the question what to do with it."""
        acc = await self.require_account(turn, ACCOUNT_CHECK)
        first = str(turn.slots.get("_text") or "")
        if topic(first) == "work_order" or asks_if_overdue(first) or mentions_report(first):
            await self.run_flow(turn, "work_order_status")
            return
        if asks_account_details(first):  # "what address is registered on my account?": once checked
            self.finish(turn)
            self.say(turn, "utter_account_record", account=mask_account(acc.account_number), holder=acc.holder_name,
                     address=address_for(acc.address, turn.lang))
            return
        self.finish(turn)
        self.say(turn, "utter_account_verified_purpose")

    async def _known_accounts(self, message: Message) -> tuple[list[Account], str]:
        """Accounts the core already links to this identity: a binding, or the registered phone
        of a sender whose channel proves the number (``Channel.proves``)."""
        found: dict[str, Account] = {}
        how = "bound"
        for acc in await self.core.find_accounts_by_binding(message.channel, message.sender_id):
            found[acc.account_number] = acc
        phone = proven_phone(message, self.sender_proofs)
        if phone:
            for acc in await self.core.find_accounts_by_phone(phone):
                found.setdefault(acc.account_number, acc)
            how = "phone"
        return list(found.values()), how

    async def account(self, turn: Turn, number: str) -> Account:
        """The core's account ``number`` (looked up once per turn); ``NotFound`` propagates."""
        if number not in turn.accounts_cache:
            turn.accounts_cache[number] = await self.core.get_account(number)
        return turn.accounts_cache[number]

    async def require_account(self, turn: Turn, flow: str, *, verify: bool = True) -> Account:
        """The account this request is about, shown only to a bound or verified identity."""
        number = turn.slots.get("account_number")
        if not number:
            if len(turn.authorized) == 1:
                number = next(iter(turn.authorized))
                turn.set_slot("account_number", number)
            elif turn.authorized and (named := await self._account_named(
                    turn, str(turn.slots.get("_text") or ""), sorted(turn.authorized))):
                number = named  # "帮我把店里那个户号订阅一下停电通知": the one the request names
                turn.set_slot("account_number", number)
            elif turn.authorized:
                # the buttons name the accounts masked and answer with their position: a full
                # account number never leaves in a button (the list stays in the tracker)
                opts = sorted(turn.authorized)
                buttons = [(mask_account(n), f'/choose{{"account_choice": {k}}}') for k, n in enumerate(opts, 1)]
                turn.state["form"] = {"name": flow, "slot": "account_number", "options": opts}
                # the list in words as well (SMS and mail have no buttons): the customer's own
                # accounts, by kind and street, so "家里那个" or "the shop" can choose
                lines = []
                for k, n in enumerate(opts, 1):
                    acc = await self.account(turn, n)
                    lines.append(self.phrase(turn, "utter_fragment_account_choice_line", k=k, account=mask_account(n),
                                             category=self.phrase(turn, f"utter_fragment_category_{acc.category}"),
                                             street=street_of(acc.address, turn.lang)))
                self.say(turn, "utter_ask_account_choice", extra_buttons=buttons, accounts="\n".join(lines))
                raise Stop
            else:
                self.ask(turn, flow, "account_number", "utter_ask_account_number")
        try:
            acc = await self.account(turn, number)
        except NotFound:
            turn.slots.pop("account_number", None)
            self.say(turn, "utter_account_not_found", account=mask_account(number))
            self.ask(turn, flow, "account_number", "utter_ask_account_number")
            raise
        if not verify or number in turn.authorized:
            return acc
        await self.verify(turn, flow, acc)
        return acc

    @staticmethod
    def note_early_last4(turn: Turn, text: str) -> None:
        """"电费查下 我手机尾号9000" before any account: the digits are kept for the check to come."""
        digits = given_last4(text)
        if digits and not turn.slots.get("account_number") and not account_number(text):
            turn.slots["_early_last4"] = digits

    async def tell_own_accounts(self, turn: Turn) -> None:
        """"我家户号是多少来着 忘了": the accounts of a customer whose identity is proven (a bound
        channel, a checked account, a registered phone on SMS), in full; to anyone else, where
        the number is printed (nothing of an account is shown to an unverified identity)."""
        if not turn.authorized:
            self.say(turn, "utter_where_account")
            return
        lines = []
        for number in sorted(turn.authorized):
            acc = await self.account(turn, number)
            lines.append(self.phrase(turn, "utter_fragment_own_account", account=acc.account_number,
                                     street=street_of(acc.address, turn.lang) or "-"))
        self.say(turn, "utter_your_accounts", accounts="\n".join(lines))

    async def account_by_check(self, turn: Turn, flow: str) -> Account | None:
        """The account named earlier in the request, checked when the customer answers a question
        about a place with its last 4 digits ("尾号9000", "ends with 9000", "9000"): its registered
        address is the place. None when no such account or no such answer."""
        number = turn.slots.get("account_number")
        text = turn.message.text or ""
        if not number or number in turn.authorized or text == turn.slots.get("_text"):
            return None
        digits = given_last4(text) or bare_last4(text)
        if digits is None:
            return None
        turn.slots["_last4"] = digits
        acc = await self.account(turn, str(number))
        await self.verify(turn, flow, acc)
        return acc

    async def verify(self, turn: Turn, flow: str, acc: Account) -> None:
        """Ask for (or check) the last 4 digits of the account's phone; return once verified."""
        identity = turn.conversation_id  # the channel identity ("channel:sender") asking
        failed_before, locked_until = await self.store.lock_state(acc.account_number, identity)
        if locked_until is not None:
            turn.state["locked"] = acc.account_number  # a last-4 answer typed afterwards is told so
            self._clear_form(turn)
            turn.slots.pop("account_number", None)
            self.say(turn, "utter_verify_locked", minutes=LOCK_MINUTES)
            raise Stop
        # "户号…，尾号8000": the digits given with the account (in the whole message, when a
        # message with two requests is handled clause by clause)
        given = turn.slots.pop("_last4", None) or given_last4(turn.whole_text or turn.message.text or "") \
            or turn.slots.pop("_early_last4", None)
        if given is None:
            self.ask(turn, flow, "last4", "utter_ask_last4", account=mask_account(acc.account_number))
        if given is not None and (given == acc.phone[-4:] if len(given) == 4 else given == acc.phone):
            turn.verify_result = (acc.account_number, True)
            turn.authorized.add(acc.account_number)
            turn.new_accounts.append((acc.account_number, "verified"))
            self.say(turn, "utter_verified")
            return
        failures = failed_before + 1
        turn.verify_result = (acc.account_number, False)
        if failures >= MAX_VERIFY_FAILURES:
            turn.state["locked"] = acc.account_number
            self._clear_form(turn)
            turn.slots.pop("account_number", None)
            self.say(turn, "utter_verify_locked", minutes=LOCK_MINUTES)
            raise Stop
        self.ask(turn, flow, "last4", "utter_verify_failed", left=MAX_VERIFY_FAILURES - failures)

    async def _chosen_account(self, turn: Turn, text: str, options: list[str]) -> str | None:
        """The account a customer picked from an offered list: by the button's position
        (``/choose{"account_choice": 2}`` or "2"), by its masked form, by its last 4 digits, or
        by the kind or the street the list named ("家里那个 不是店里的", "the shop on Shiji Avenue")."""
        k = chosen_option(text, "account_choice", max_digits=2)
        if k is None:
            k = choice(text)
        if k is not None and 1 <= k <= len(options):
            return options[k - 1]
        hits = [n for n in options if text in (mask_account(n), n[-4:])]
        ending = account_ending(text)
        if not hits and ending:  # "居民那个，尾号0001的", "the restaurant one, account ending 0003"
            hits = [n for n in options if n.endswith(ending)]
        if hits:
            return hits[0] if len(hits) == 1 else None
        return await self._account_named(turn, text, options)

    async def _account_named(self, turn: Turn, text: str, options: list[str]) -> str | None:
        """The one of the customer's accounts a message names by its kind ("家里那个 不是店里的":
        the home, not the shop), its street ("the shop on Shiji Avenue") or its company's name
        ("先看浦江餐饮那个")."""
        known = [await self.account(turn, n) for n in options]
        kind = names_category(text)
        hits = [a.account_number for a in known if kind and a.category == kind]
        if not hits:
            streets = {a.account_number: street_of(a.address, "zh") for a in known}
            hits = [n for n, street in streets.items() if street and (street in text or street_written(text, street))]
        if not hits:
            hits = [a.account_number for a in known if len(a.holder_name) > 4
                    and any(text[i:i + 4] in a.holder_name for i in range(len(text) - 3))]
        return hits[0] if len(hits) == 1 else None
