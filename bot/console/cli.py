"""``powerbot agents ...``: console accounts (agents and supervisors)."""

from __future__ import annotations

import asyncio
import sys

import click


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _with_session(fn):  # type: ignore[no-untyped-def]
    from bot.db import make_engine, make_sessionmaker
    from bot.migrate import BOT_MIGRATIONS, upgrade
    from bot.settings import get_settings

    url = get_settings().bot_db_url
    await upgrade(url, BOT_MIGRATIONS)
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            return await fn(session)
    finally:
        await engine.dispose()


def _read_password() -> str:
    if sys.stdin is not None and not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.group()
def agents() -> None:
    """Agent console accounts."""


@agents.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["agent", "supervisor"]), default="agent", show_default=True)
def agents_add(name: str, role: str) -> None:
    """Create an account; the password is prompted (or read from the first line of stdin)."""
    from bot.console.auth import add_agent

    password = _read_password()
    try:
        _run(_with_session(lambda s: add_agent(s, name, password, role)))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"agent {name} ({role}) created")


@agents.command("list")
def agents_list() -> None:
    """List accounts."""
    from sqlalchemy import select

    from bot.console.models import Agent

    async def fn(session):  # type: ignore[no-untyped-def]
        return (await session.execute(select(Agent).order_by(Agent.name))).scalars().all()

    for a in _run(_with_session(fn)):
        state = "active" if a.active else "disabled"
        click.echo(f"{a.name}\t{a.role}\t{state}")


@agents.command("passwd")
@click.argument("name")
def agents_passwd(name: str) -> None:
    """Set a new password (prompted or from stdin); also lifts a lockout."""
    from sqlalchemy import update

    from bot.console.auth import clear_login_state, hash_password
    from bot.console.models import Agent

    password = _read_password()
    if len(password) < 8:
        raise click.ClickException("password must be at least 8 characters")

    async def fn(session):  # type: ignore[no-untyped-def]
        res = await session.execute(update(Agent).where(Agent.name == name).values(
            password_hash=hash_password(password), failed_logins=0, locked_until=None))
        if res.rowcount:
            await clear_login_state(session, name)
        return res.rowcount

    if not _run(_with_session(fn)):
        raise click.ClickException(f"no agent {name!r}")
    click.echo(f"password of {name} changed")


@agents.command("disable")
@click.argument("name")
def agents_disable(name: str) -> None:
    """Disable an account (its sessions stop working)."""
    from sqlalchemy import update

    from bot.console.models import Agent

    async def fn(session):  # type: ignore[no-untyped-def]
        return (await session.execute(update(Agent).where(Agent.name == name).values(active=False))).rowcount

    if not _run(_with_session(fn)):
        raise click.ClickException(f"no agent {name!r}")
    click.echo(f"agent {name} disabled")
