"""The identity check's limits, shared by the policy (what to tell the customer) and the tracker
store (the counters it keeps).

Five wrong answers from one identity lock the check for that identity; fifteen from all
identities together lock it for every unbound identity (guessing spread over many senders);
a lock lasts ``LOCK_MINUTES`` and counters forget failures older than that.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

MAX_VERIFY_FAILURES = 5  # wrong answers from one identity
MAX_ACCOUNT_FAILURES = 15  # wrong answers from all identities together
ACCOUNT_WIDE = "*"  # the identity of the per-account counter
LOCK_MINUTES = 30


def aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def recent_failures(failures: int | None, updated_at: datetime | None, now: datetime) -> int:
    """A counter's failures, forgetting those older than a lock period."""
    if updated_at is not None and now - aware(updated_at) > timedelta(minutes=LOCK_MINUTES):
        return 0
    return failures or 0
