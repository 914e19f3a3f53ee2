"""Agent accounts, password hashing (argon2id), browser sessions, CSRF and lockout."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.console.models import Agent, AuditEntry, ConsoleSession
from bot.models import utcnow
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
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


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


async def login(session: AsyncSession, name: str, password: str) -> LoginResult:
    """Check a password; count failures; lock the account after ``MAX_FAILURES`` in a row."""
    now = utcnow()
    agent = (await session.execute(select(Agent).where(Agent.name == name.strip()))).scalar_one_or_none()
    loop = asyncio.get_running_loop()
    if agent is None or not agent.active:
        await loop.run_in_executor(None, verify_password, _DUMMY_HASH, password)
        return LoginResult(None, error="bad_credentials")
    if agent.locked_until and as_aware(agent.locked_until) > now:
        session.add(AuditEntry(agent_name=agent.name, action="login_locked", detail={}))
        return LoginResult(agent, error="locked")
    ok = await loop.run_in_executor(None, verify_password, agent.password_hash, password)
    if not ok:
        failures = agent.failed_logins + 1
        values: dict[str, object] = {"failed_logins": failures}
        action = "login_failed"
        if failures >= MAX_FAILURES:
            values = {"failed_logins": 0, "locked_until": now + LOCKOUT}
            action = "lockout"
        await session.execute(update(Agent).where(Agent.id == agent.id).values(**values))
        session.add(AuditEntry(agent_name=agent.name, action=action, detail={"failures": failures}))
        return LoginResult(agent, error="locked" if action == "lockout" else "bad_credentials")
    await session.execute(update(Agent).where(Agent.id == agent.id).values(failed_logins=0, locked_until=None))
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(ConsoleSession(token_hash=token_hash(token), agent_id=agent.id, csrf_token=csrf,
                               created_at=now, expires_at=now + SESSION_TTL))
    session.add(AuditEntry(agent_name=agent.name, action="login", detail={}))
    await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
    return LoginResult(agent, token=token, csrf=csrf)


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


def lock_remaining(agent: Agent, now: datetime | None = None) -> int:
    if not agent.locked_until:
        return 0
    return max(0, int((as_aware(agent.locked_until) - (now or utcnow())).total_seconds()))
