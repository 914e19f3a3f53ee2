"""Agent accounts, password hashing (argon2id), browser sessions, CSRF and lockout."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.console.models import Agent, AuditEntry, ConsoleSession
from bot.models import CacheEntry, utcnow
from bot.outbox import as_aware

ROLES = ("agent", "supervisor")
MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
SESSION_TTL = timedelta(hours=12)
NAME_MAX = 80

_hasher = PasswordHasher()
# Verified against when the name is unknown, so both cases cost the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password-" + secrets.token_hex(8))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def same(a: object, b: object) -> bool:
    """Constant-time equality of two tokens; anything but two non-empty strings is unequal
    (``hmac.compare_digest`` refuses non-ASCII ``str``: compare their bytes)."""
    if not (isinstance(a, str) and isinstance(b, str) and a and b):
        return False
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


async def add_agent(session: AsyncSession, name: str, password: str, role: str = "agent") -> Agent:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise ValueError("name must be 1–80 characters")
    if len(password) < 8:
        raise ValueError("password must be at least 8 characters")
    existing = (await session.execute(select(Agent).where(Agent.name == name))).scalar_one_or_none()
    if existing is not None:
        raise ValueError(f"agent {name!r} already exists")
    loop = asyncio.get_running_loop()
    agent = Agent(name=name, role=role, password_hash=await loop.run_in_executor(None, hash_password, password),
                  active=True, failed_logins=0)
    session.add(agent)
    await session.flush()
    return agent


@dataclass
class LoginResult:
    agent: Agent | None
    token: str | None = None
    csrf: str | None = None
    error: str | None = None  # bad_credentials | locked


# Failed logins are counted per *name tried*, whether or not an account has that name, in the
# shared ``cache_entries`` table: a real name and an unknown one then answer alike — the same
# message, the same lockout after the same number of failures, one password hash each — so the
# login form does not tell which names exist. A streak of failures is forgotten after a day
# without one.
LOCK_PREFIX = "console:login:"
FAILURE_MEMORY = timedelta(hours=24)


def lock_key(name: str) -> str:
    return LOCK_PREFIX + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class LoginState:
    failures: int = 0
    locked_until: datetime | None = None


async def login_state(session: AsyncSession, name: str) -> LoginState:
    row = await session.get(CacheEntry, lock_key(name))
    if row is None or (row.expires_at is not None and as_aware(row.expires_at) <= utcnow()):
        return LoginState()
    try:
        doc = json.loads(row.value)
        until = doc.get("locked_until")
        return LoginState(int(doc.get("failures", 0)), datetime.fromisoformat(until) if until else None)
    except (ValueError, TypeError, AttributeError):
        return LoginState()


async def _save_state(session: AsyncSession, name: str, state: LoginState, now: datetime) -> None:
    expires = now + FAILURE_MEMORY
    if state.locked_until is not None and state.locked_until > expires:
        expires = state.locked_until
    value = json.dumps({"failures": state.failures,
                        "locked_until": state.locked_until.isoformat() if state.locked_until else None})
    mod = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    stmt = mod.insert(CacheEntry).values(key=lock_key(name), value=value, expires_at=expires)
    await session.execute(stmt.on_conflict_do_update(index_elements=[CacheEntry.key],
                                                     set_={"value": value, "expires_at": expires}))


async def clear_login_state(session: AsyncSession, name: str) -> None:
    await session.execute(delete(CacheEntry).where(CacheEntry.key == lock_key(name)))


async def login(session: AsyncSession, name: str, password: str) -> LoginResult:
    """Check a password; count failures per name tried; lock it after ``MAX_FAILURES`` in a row.

    Known and unknown names take the same path: one lookup, one lockout check, one argon2
    verification (against a dummy hash when there is no active account), one state write."""
    now = utcnow()
    name = name.strip()
    agent = (await session.execute(select(Agent).where(Agent.name == name))).scalar_one_or_none()
    if agent is not None and not agent.active:
        agent = None
    state = await login_state(session, name)
    loop = asyncio.get_running_loop()
    if state.locked_until is not None and as_aware(state.locked_until) > now:
        session.add(AuditEntry(agent_name=name[:NAME_MAX], action="login_locked", detail=_who(agent)))
        return LoginResult(None, error="locked")
    stored = agent.password_hash if agent is not None else _DUMMY_HASH
    ok = await loop.run_in_executor(None, verify_password, stored, password)
    if agent is None or not ok:
        failures = state.failures + 1
        action = "login_failed"
        if failures >= MAX_FAILURES:
            state, action = LoginState(0, now + LOCKOUT), "lockout"
        else:
            state = LoginState(failures, None)
        await _save_state(session, name, state, now)
        session.add(AuditEntry(agent_name=name[:NAME_MAX], action=action, detail={"failures": failures, **_who(agent)}))
        return LoginResult(None, error="locked" if action == "lockout" else "bad_credentials")
    await clear_login_state(session, name)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(ConsoleSession(token_hash=token_hash(token), agent_id=agent.id, csrf_token=csrf,
                               created_at=now, expires_at=now + SESSION_TTL))
    session.add(AuditEntry(agent_name=agent.name, action="login", detail={}))
    await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
    await session.execute(delete(CacheEntry).where(CacheEntry.key.startswith(LOCK_PREFIX, autoescape=True),
                                                   CacheEntry.expires_at < now))
    return LoginResult(agent, token=token, csrf=csrf)


def _who(agent: Agent | None) -> dict[str, object]:
    # for whoever reads the audit log, not for the person at the login form
    return {} if agent is not None else {"unknown_name": True}


async def load_session(session: AsyncSession, token: str | None) -> tuple[Agent, ConsoleSession] | None:
    if not token or len(token) > 200:
        return None
    row = (
        await session.execute(
            select(ConsoleSession, Agent)
            .join(Agent, Agent.id == ConsoleSession.agent_id)
            .where(ConsoleSession.token_hash == token_hash(token))
        )
    ).first()
    if row is None:
        return None
    cs, agent = row
    if as_aware(cs.expires_at) <= utcnow() or not agent.active:
        return None
    return agent, cs


async def logout(session: AsyncSession, token: str) -> None:
    await session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == token_hash(token)))


def lock_remaining(state: LoginState, now: datetime | None = None) -> int:
    if not state.locked_until:
        return 0
    return max(0, int((as_aware(state.locked_until) - (now or utcnow())).total_seconds()))
