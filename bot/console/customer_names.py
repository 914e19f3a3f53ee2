"""Customers' masked names for the console's queue and its search by name, from the core.

Names live only in the core. The queue shows, for each conversation whose customer the bot has
linked to an account (``dlg_customer_accounts``: bound, registered phone or verified), the
masked name and account; the names of a whole queue come from one batched core call
(``GET /customers?account_numbers=``) and are kept here for ``ttl`` seconds.

The queue never waits on the core for long: a lookup gets ``budget`` seconds, then the queue is
answered with what is known (the masked account alone) while the call finishes in the
background and fills the cache for the next refresh. With the core down the breaker fails the
call at once and the queue shows accounts only.

Several gateway processes each hold their own cache. It is keyed by account number and only
holds what the core said of that account (at most ``ttl`` seconds old), and which account a
conversation belongs to is read from the shared database on every queue load: processes may
differ in whether a name is shown yet, never in whose name is shown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from backend_client import CoreClient, CoreError, ValidationFailed
from bot.console.masking import mask_name
from bot.logs import mask_account

log = logging.getLogger("powerbot.console.names")

TTL_SECONDS = 60.0  # a name change (transfer of ownership) shows within a minute
QUEUE_BUDGET_SECONDS = 1.0  # the longest a queue load waits for names
SEARCH_BUDGET_SECONDS = 2.0  # a search by name waits longer: the agent asked for it
CALL_TIMEOUT_SECONDS = 3.0  # each core call (the client retries a failed GET)
MAX_ENTRIES = 5000
SEARCH_NAME_MIN = 2  # the core's bounds for a name query
SEARCH_NAME_MAX = 64
SEARCH_LIMIT = 50


def label(account_number: str, masked_name: str | None) -> str:
    """What the queue shows: ``张* · 31******01``, or the masked account alone."""
    account = mask_account(account_number)
    return f"{mask_name(masked_name)} · {account}" if masked_name else account


def looks_like_name(q: str) -> bool:
    """Whether a search text may be (part of) a name worth asking the core about."""
    return SEARCH_NAME_MIN <= len(q) <= SEARCH_NAME_MAX and any(ch.isalpha() for ch in q)


class CustomerNames:
    """Masked holder names by account number: a per-process cache in front of the core."""

    def __init__(self, core: CoreClient, *, ttl: float = TTL_SECONDS, budget: float = QUEUE_BUDGET_SECONDS,
                 search_budget: float = SEARCH_BUDGET_SECONDS, call_timeout: float = CALL_TIMEOUT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.core = core
        self.ttl = ttl
        self.budget = budget
        self.search_budget = search_budget
        self.call_timeout = call_timeout
        self.clock = clock
        self.calls = 0  # batched core calls made (the tests count them)
        # account -> (fetched at, masked name or None when the core has no such account)
        self._entries: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._pending: dict[str, asyncio.Task[None]] = {}  # account -> the call that will answer it
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ cache
    def known(self, account_number: str) -> tuple[bool, str | None]:
        """(fresh entry?, masked name) for one account."""
        entry = self._entries.get(account_number)
        if entry is None or self.clock() - entry[0] >= self.ttl:
            return False, None
        return True, entry[1]

    def remember(self, account_number: str, masked_name: str | None) -> None:
        """Store what the core said (the conversation view passes what it just read, too)."""
        self._entries[account_number] = (self.clock(), mask_name(masked_name) if masked_name else None)
        self._entries.move_to_end(account_number)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)

    # ------------------------------------------------------------------ queue
    async def masked_names(self, account_numbers: Iterable[str]) -> dict[str, str]:
        """Masked names of these accounts, as far as known within the budget: fresh cache
        entries, plus one batched core call for the rest (shared with a concurrent load)."""
        numbers = list(dict.fromkeys(account_numbers))
        missing = [n for n in numbers if not self.known(n)[0]]
        if missing:
            waits = {self._pending[n] for n in missing if n in self._pending}
            ask = [n for n in missing if n not in self._pending]
            if ask:
                waits.add(self._start(ask))
            done, _ = await asyncio.wait(waits, timeout=self.budget)
            if len(done) < len(waits):
                log.info("console: customer names not back within %.1fs; the queue shows accounts", self.budget)
        out: dict[str, str] = {}
        for n in numbers:
            fresh, name = self.known(n)
            if fresh and name:
                out[n] = name
        return out

    def _start(self, numbers: list[str]) -> asyncio.Task[None]:
        task = asyncio.create_task(self._fetch(numbers), name="console-customer-names")
        for n in numbers:
            self._pending[n] = task
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            for n in numbers:
                if self._pending.get(n) is t:
                    del self._pending[n]

        task.add_done_callback(done)
        return task

    async def _fetch(self, numbers: list[str]) -> None:
        self.calls += 1
        try:
            found = await self.core.customers_by_account(numbers, timeout=self.call_timeout)
        except CoreError as exc:
            log.warning("console: customer names unavailable (%s); the queue shows accounts", type(exc).__name__)
            return
        except Exception:  # noqa: BLE001 - a background call: log it, the queue goes on without names
            log.exception("console: customer names lookup failed")
            return
        names = {c.account_number: c.masked_name for c in found}
        for n in numbers:
            self.remember(n, names.get(n))

    # ------------------------------------------------------------------ search
    async def search(self, q: str) -> list[str] | None:
        """Account numbers of the customers whose name contains ``q`` (their masked names are
        remembered for the queue); [] when ``q`` cannot be a name; None when the core did not
        answer within the search budget."""
        if not looks_like_name(q):
            return []
        try:
            found = await asyncio.wait_for(
                self.core.find_customers_by_name(q, limit=SEARCH_LIMIT, timeout=self.call_timeout), self.search_budget)
        except ValidationFailed:
            return []  # not a name the core searches (e.g. only a control character apart)
        except (CoreError, asyncio.TimeoutError) as exc:
            log.warning("console: search by customer name unavailable (%s)", type(exc).__name__)
            return None
        for c in found:
            self.remember(c.account_number, c.masked_name)
        return [c.account_number for c in found]

    async def close(self) -> None:
        """Cancel calls still running (the app is shutting down)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
