"""Verification counters per (account, identity) and per account, on both backends: one
identity's guessing locks that identity; guessing spread over identities locks the account;
old failures are forgotten; and the migration keeps an existing lock as an account-wide one."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from bot.dialogue.tracker_store import TrackerStore, _record_verification
from bot.dialogue.verification import ACCOUNT_WIDE, LOCK_MINUTES, MAX_ACCOUNT_FAILURES, MAX_VERIFY_FAILURES
from common.clock import utcnow
from bot.dialogue.store import VerificationLock

NUMBER = "3100000001"


async def _fail(sessionmaker, identity: str, times: int = 1, ok: bool = False) -> None:  # type: ignore[no-untyped-def]
    for _ in range(times):
        async with sessionmaker() as s, s.begin():
            await _record_verification(s, NUMBER, identity, ok)


async def _state(sessionmaker, identity: str):  # type: ignore[no-untyped-def]
    return await TrackerStore(sessionmaker).lock_state(NUMBER, identity)


async def test_one_identity_locks_itself_not_the_owner(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    await _fail(sessionmaker, "wechat:attacker", MAX_VERIFY_FAILURES - 1)
    assert await _state(sessionmaker, "wechat:attacker") == (MAX_VERIFY_FAILURES - 1, None)
    await _fail(sessionmaker, "wechat:attacker")
    failures, until = await _state(sessionmaker, "wechat:attacker")
    assert until is not None and until > utcnow() + timedelta(minutes=LOCK_MINUTES - 1)
    assert await _state(sessionmaker, "wechat:owner") == (0, None)


async def test_a_right_answer_clears_only_that_identity(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    await _fail(sessionmaker, "sms:+8613900000000", 3)
    await _fail(sessionmaker, "sms:+8613900000000", ok=True)
    assert await _state(sessionmaker, "sms:+8613900000000") == (0, None)
    async with sessionmaker() as s:
        wide = await s.get(VerificationLock, (NUMBER, ACCOUNT_WIDE))
    assert wide is not None and wide.failures == 3  # the account still remembers the guesses


async def test_guessing_over_many_identities_locks_every_identity(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    per = MAX_VERIFY_FAILURES - 1  # each guesser stays under its own limit
    n = -(-MAX_ACCOUNT_FAILURES // per)
    for i in range(n):
        await _fail(sessionmaker, f"rest:guesser-{i}", per)
    _, until = await _state(sessionmaker, "rest:newcomer")
    assert until is not None and until > utcnow()


async def test_failures_older_than_a_lock_period_are_forgotten(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    await _fail(sessionmaker, "wechat:forgetful", MAX_VERIFY_FAILURES - 1)
    async with sessionmaker() as s, s.begin():
        await s.execute(sa.update(VerificationLock).values(updated_at=utcnow() - timedelta(minutes=LOCK_MINUTES + 1)))
    assert await _state(sessionmaker, "wechat:forgetful") == (0, None)
    await _fail(sessionmaker, "wechat:forgetful")  # counts from zero again: no lock
    assert await _state(sessionmaker, "wechat:forgetful") == (1, None)


async def test_migration_keeps_an_existing_lock_account_wide(store_url: str) -> None:
    from bot.db import make_engine
    from bot.migrate import BOT_MIGRATIONS, upgrade

    await upgrade(store_url, BOT_MIGRATIONS, "bot_0009_outbox_reply_lane")
    engine = make_engine(store_url)
    until = utcnow() + timedelta(minutes=10)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO dlg_verification_locks (account_number, failures, locked_until, updated_at) "
                "VALUES (:n, 0, :u, :now)"), {"n": NUMBER, "u": until, "now": utcnow()})
    finally:
        await engine.dispose()
    await upgrade(store_url, BOT_MIGRATIONS)
    engine = make_engine(store_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text(
                "SELECT account_number, identity FROM dlg_verification_failures"))).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in rows] == [(NUMBER, ACCOUNT_WIDE)]
