"""``powerbot core ...`` — run and seed the thin reference core."""

from __future__ import annotations

import asyncio
import logging

import click


@click.group()
def core() -> None:
    """The thin reference core (accounts, bills, payments, outages, work orders)."""


@core.command("serve")
@click.option("--seed/--no-seed", default=None, help="Seed demo data into an empty store (default: POWERBOT_DEMO_SEED).")
def serve(seed: bool | None) -> None:
    """Migrate the core store, then serve the core API on POWERBOT_CORE_HOST:POWERBOT_CORE_PORT."""
    from common.logs import setup_logging
    from core.app import serve_core
    from core.settings import load_core_settings

    s = load_core_settings()
    if not logging.getLogger().handlers:
        setup_logging(s.log_level, s.log_json)  # the PII filter too
    token = s.core_token()
    from common.listen import run_server

    run_server(lambda: asyncio.run(serve_core(s.core_db_url, s.core_host, s.core_port,
                                              seed=s.demo_seed if seed is None else seed, token=token)),
               (s.core_host, s.core_port, "POWERBOT_CORE_PORT"))


@core.command("seed")
@click.option("--accounts", "n_accounts", default=1000, show_default=True, type=click.IntRange(2, 1_000_000))
def seed_cmd(n_accounts: int) -> None:
    """Migrate the core store, then load deterministic demo data (skipped if accounts exist)."""
    from core.seed import migrate_and_seed
    from core.settings import load_core_settings

    s = load_core_settings()
    summary = asyncio.run(migrate_and_seed(s.core_db_url, n_accounts=n_accounts))
    for line in summary:
        click.echo(line)
