"""The ``powerbot`` command line: one entry point for operators and developers."""

from __future__ import annotations

import asyncio
import sys

import click

from bot.settings import SettingsError, get_settings
from common.listen import require_free_ports, run_server


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("powerbot")
    except PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "unknown"


@click.group()
@click.version_option(_version(), "--version", "-V", prog_name="powerbot", message="%(prog)s %(version)s")
def main() -> None:
    """powerbot — 95598 customer-service chatbot gateway and reference core."""
    try:
        get_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--bot-only", is_flag=True, help="Upgrade only the bot store.")
def db_upgrade(bot_only: bool) -> None:
    """Apply Alembic migrations to the bot store and the core store."""
    from bot.migrate import upgrade_all

    s = get_settings()
    asyncio.run(upgrade_all(s.bot_db_url, None if bot_only else s.core_db_url))
    click.echo("database schema up to date")


@db.command("purge")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
def db_purge(dry_run: bool) -> None:
    """Delete finished messages older than POWERBOT_RETENTION_DAYS and conversation history
    older than POWERBOT_HISTORY_RETENTION_DAYS (the gateway also does it every hour)."""
    from bot.db import make_engine, make_sessionmaker
    from bot.retention import policy_from, purge

    s = get_settings()

    async def go() -> dict[str, int]:
        engine = make_engine(s.bot_db_url)
        try:
            return await purge(make_sessionmaker(engine), policy_from(s), dry_run=dry_run)
        finally:
            await engine.dispose()

    counts = asyncio.run(go())
    verb = "would delete" if dry_run else "deleted"
    if not counts:
        click.echo("retention is off (POWERBOT_RETENTION_DAYS=0, POWERBOT_HISTORY_RETENTION_DAYS=0)")
    for table, n in counts.items():
        click.echo(f"{table}: {verb} {n} rows")


@main.command()
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Gateway processes sharing the port (use PostgreSQL, and Redis for the console).")
def serve(workers: int) -> None:
    """Run the gateway (channels, dialogue, console) on POWERBOT_HOST:POWERBOT_PORT."""
    from bot.runner import serve_gateway, serve_workers

    settings = get_settings()
    listener = (settings.host, settings.port, "POWERBOT_PORT")
    if workers == 1:
        run_server(lambda: asyncio.run(serve_gateway(settings)), listener)
        return
    from bot.db import is_sqlite

    if is_sqlite(settings.bot_db_url):
        raise click.ClickException("--workers > 1 needs a shared database: set POWERBOT_DATABASE_URL to PostgreSQL")
    require_free_ports(listener)  # the workers share it (SO_REUSEPORT), nobody else may hold it
    serve_workers(settings, workers)


@main.command()
def run() -> None:
    """Run the embedded default: the core and the gateway in one process, on two ports."""
    from bot.runner import run_all

    s = get_settings()
    run_server(lambda: asyncio.run(run_all(s)),
               (s.core_host, s.core_port, "POWERBOT_CORE_PORT"), (s.host, s.port, "POWERBOT_PORT"))


@main.group()
def rasa() -> None:
    """Work with a Rasa assistant."""


@rasa.command("actions")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=5055, show_default=True, type=click.IntRange(1, 65535),
              help="Port of the action server (Rasa's endpoints.yml: action_endpoint url).")
def rasa_actions(host: str, port: int) -> None:
    """Run the action server with powerbot's 95598 actions (needs powerbot[rasa])."""
    try:
        from bot.rasa.server import serve
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"{exc.name} is missing: pip install 'powerbot[rasa]'") from None
    settings = get_settings()
    run_server(lambda: serve(settings, host, port), (host, port, "--port"))


def _register_optional() -> None:
    """Attach the command groups that live in their own packages."""
    from core.cli import core
    from intents.cli import nlu

    main.add_command(core)
    main.add_command(nlu)
    from bot.shell import shell

    main.add_command(shell)
    from bot.wechat_cli import wechat

    main.add_command(wechat)
    from bot.console.cli import agents

    main.add_command(agents)
    from bot.notify.cli import notify

    main.add_command(notify)
    from bot.testing.cli import test

    main.add_command(test)


_register_optional()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
