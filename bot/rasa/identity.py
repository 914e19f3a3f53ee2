"""The identity check for a Rasa conversation, with powerbot's lockout rule.

Personal data (bills, arrears, work orders of an account) is shown only once this conversation
proved the account is theirs: the last 4 digits (or the whole number) of the account's
registered phone, as ``bot.dialogue.identity`` checks it. The lock is
``bot.dialogue.verification``'s, with its constants and its forgetting rule
(``recent_failures``): ``MAX_VERIFY_FAILURES`` wrong answers in one conversation lock the check
for ``LOCK_MINUTES``; ``MAX_ACCOUNT_FAILURES`` from all conversations together lock the account
for everyone (guessing spread over many senders).

Where the counts live: a Rasa assistant keeps a conversation's state in its tracker, so the
per-conversation count is two slots (``verify_failures``, ``verify_failed_at``) that Rasa's
tracker store persists and any action-server replica reads. No single tracker sees the other
senders' guesses, so the per-account count is kept by the action server process
(``ACCOUNT_GUESSES``).
"""

from __future__ import annotations

import threading
from datetime import datetime

from backend_client import NotFound
from backend_client.models import Account
from bot.dialogue.verification import LOCK_MINUTES, MAX_ACCOUNT_FAILURES, MAX_VERIFY_FAILURES, aware, recent_failures
from bot.rasa.base import PENDING_ACTION, VERIFIED_ACCOUNT, Context
from common.clock import utcnow
from common.pii import mask_account
from intents.slots import account_number as account_in
from intents.slots import last4 as last4_in
from intents.slots import mobile

FORM = "identity_form"
FAILURES = "verify_failures"
FAILED_AT = "verify_failed_at"


class AccountGuesses:
    """Wrong answers per account from every conversation this action server saw."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, datetime]] = {}
        self._lock = threading.Lock()

    def count(self, account: str, now: datetime) -> int:
        with self._lock:
            n, at = self._seen.get(account, (0, None))  # type: ignore[arg-type]
            return recent_failures(n, at, now)

    def add(self, account: str, now: datetime) -> None:
        with self._lock:
            n, at = self._seen.get(account, (0, None))  # type: ignore[arg-type]
            self._seen[account] = (recent_failures(n, at, now) + 1, now)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


ACCOUNT_GUESSES = AccountGuesses()


def _failed_at(ctx: Context) -> datetime | None:
    raw = ctx.slot(FAILED_AT)
    try:
        return aware(datetime.fromisoformat(str(raw))) if raw else None
    except ValueError:
        return None


def conversation_failures(ctx: Context, now: datetime) -> int:
    return recent_failures(int(ctx.slot(FAILURES) or 0), _failed_at(ctx), now)


def locked(ctx: Context, account: str, now: datetime) -> bool:
    return (conversation_failures(ctx, now) >= MAX_VERIFY_FAILURES
            or ACCOUNT_GUESSES.count(account, now) >= MAX_ACCOUNT_FAILURES)


def given_digits(value: object) -> str | None:
    """The digits a customer gave for the check: a whole mobile number, or 4 digits."""
    text = str(value or "").strip()
    return mobile(text) or last4_in(text)


def matches(acc: Account, given: str) -> bool:
    return given == acc.phone[-4:] if len(given) == 4 else given == acc.phone


async def _account_or_ask(ctx: Context, number: str | None) -> Account:
    """The core's account ``number``; none given or none such: the number is asked for (again)
    through the identity form, which ends the action."""
    if not number:
        ctx.ask("utter_ask_account_number", form=FORM, slot="account_number")
    try:
        return await ctx.core.get_account(str(number))
    except NotFound:
        ctx.set("account_number", None)
        ctx.say("utter_account_not_found", account=mask_account(str(number)))
        ctx.ask("utter_ask_account_number", form=FORM, slot="account_number")
        raise AssertionError("unreachable")  # pragma: no cover - ask() raises


async def verified_account(ctx: Context, asking_for: str, *, number: str | None = None) -> Account:
    """The account this request is about (``number``, else the slot ``account_number``), once
    this conversation proved it is theirs; else ask for it (or for the check) through the
    identity form and end the action, remembering the request to resume afterwards."""
    number = number or ctx.slot("account_number") or account_in(ctx.text)
    if not number:
        ctx.set(PENDING_ACTION, asking_for)
    acc = await _account_or_ask(ctx, number)
    if ctx.slot(VERIFIED_ACCOUNT) == acc.account_number:
        return acc
    ctx.set("account_number", acc.account_number)
    ctx.set(PENDING_ACTION, asking_for)
    if locked(ctx, acc.account_number, utcnow()):
        ctx.ask("utter_verify_locked", minutes=LOCK_MINUTES)
    ctx.set("account", mask_account(acc.account_number))  # the form's own re-ask names it too
    ctx.ask("utter_ask_last4", form=FORM, slot="last4", account=mask_account(acc.account_number))
    raise AssertionError("unreachable")  # pragma: no cover


async def check(ctx: Context) -> None:
    """The identity check on the slots ``account_number`` and ``last4``: verified (and the
    pending request resumed), failed (asked again, with the tries left) or locked."""
    from rasa_sdk.events import FollowupAction

    acc = await _account_or_ask(ctx, ctx.slot("account_number"))
    now = utcnow()
    ctx.set("last4", None)  # the answer is checked once, never kept
    if locked(ctx, acc.account_number, now):
        ctx.set("account_number", None)
        ctx.set(PENDING_ACTION, None)
        ctx.ask("utter_verify_locked", minutes=LOCK_MINUTES)
    given = given_digits(ctx.slot("last4"))
    if given is None:
        ctx.set("account", mask_account(acc.account_number))
        ctx.ask("utter_ask_last4", form=FORM, slot="last4", account=mask_account(acc.account_number))
    if matches(acc, given):
        ctx.set(VERIFIED_ACCOUNT, acc.account_number)
        ctx.set(FAILURES, 0)
        ctx.set(FAILED_AT, None)
        ctx.say("utter_verified")
        pending = ctx.slot(PENDING_ACTION)
        if pending:
            ctx.set(PENDING_ACTION, None)
            ctx.events.append(FollowupAction(pending))
        return
    failures = conversation_failures(ctx, now) + 1
    ACCOUNT_GUESSES.add(acc.account_number, now)
    ctx.set(FAILURES, failures)
    ctx.set(FAILED_AT, now.isoformat())
    if failures >= MAX_VERIFY_FAILURES or ACCOUNT_GUESSES.count(acc.account_number, now) >= MAX_ACCOUNT_FAILURES:
        ctx.set("account_number", None)
        ctx.set(PENDING_ACTION, None)
        ctx.ask("utter_verify_locked", minutes=LOCK_MINUTES)
    ctx.ask("utter_verify_failed", form=FORM, slot="last4", left=MAX_VERIFY_FAILURES - failures)

