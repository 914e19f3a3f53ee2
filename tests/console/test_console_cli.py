"""`powerbot agents add NAME --role ...` creates an account usable on the console login."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from bot.console.auth import login
from bot.console.models import Agent
from bot.db import make_engine, make_sessionmaker

POWERBOT = [sys.executable, "-m", "bot.cli"]


def run_cli(args: list[str], db_url: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERBOT_")}
    env["POWERBOT_DATABASE_URL"] = db_url
    return subprocess.run(POWERBOT + args, input=stdin, capture_output=True, text=True, env=env, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])


async def test_agents_add_from_stdin_then_login(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    r = run_cli(["agents", "add", "lead", "--role", "supervisor"], url, "s3cret-password\n")
    assert r.returncode == 0, r.stderr
    assert "s3cret-password" not in r.stdout + r.stderr
    r = run_cli(["agents", "add", "lead"], url, "another-password\n")
    assert r.returncode != 0 and "already exists" in r.stderr
    r = run_cli(["agents", "add", "shorty"], url, "short\n")
    assert r.returncode != 0 and "8 characters" in r.stderr
    r = run_cli(["agents", "add", "x", "--role", "admin"], url, "long-enough-password\n")
    assert r.returncode != 0
    r = run_cli(["agents", "list"], url)
    assert r.returncode == 0 and "lead\tsupervisor\tactive" in r.stdout

    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as s, s.begin():
            agent = (await s.execute(select(Agent).where(Agent.name == "lead"))).scalar_one()
            assert agent.role == "supervisor" and agent.password_hash.startswith("$argon2id$")
            assert (await login(s, "lead", "wrong-password")).error == "bad_credentials"
            ok = await login(s, "lead", "s3cret-password")
            assert ok.error is None and ok.token and ok.csrf
    finally:
        await engine.dispose()
