"""Shared fixtures: real PostgreSQL and Redis on loopback, fresh per test session.

CI sets POWERBOT_TEST_DATABASE_URL / POWERBOT_TEST_REDIS_URL; on a developer machine the
same loopback defaults apply. An unreachable server fails the tests loudly — never skips.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"

# Service settings from the developer's shell must not leak into tests.
for _k in list(os.environ):
    if _k.startswith("POWERBOT_") and not _k.startswith("POWERBOT_TEST_"):
        del os.environ[_k]


def _pg_admin_dsn(url: str) -> str:
    u = make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_exec(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_pg_admin_dsn(url), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class PostgresFactory:
    """Creates throw-away databases on the test server; drops them at session end."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.created: list[str] = []

    def new_database(self, prefix: str = "pb") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        asyncio.run(_pg_exec(self.base_url, f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return make_url(self.base_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        for name in self.created:
            try:
                asyncio.run(_pg_exec(self.base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresFactory]:
    base = os.environ.get("POWERBOT_TEST_DATABASE_URL", DEFAULT_PG)
    try:
        asyncio.run(_pg_exec(base, "SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL at {make_url(base).render_as_string(hide_password=True)} unreachable: {exc}")
    factory = PostgresFactory(base)
    yield factory
    factory.drop_all()


@pytest.fixture
def postgres_url(postgres: PostgresFactory) -> str:
    """URL of a brand-new, empty PostgreSQL database for one test."""
    return postgres.new_database()


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("POWERBOT_TEST_REDIS_URL", DEFAULT_REDIS)
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Redis at {url} unreachable: {exc}")
    return url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(scope="session")
def interpreter(tmp_path_factory):
    """The real NLU model, trained once per test session from training_data/."""
    from intents import load_or_train

    return load_or_train(data_dir="training_data", model_dir=str(tmp_path_factory.mktemp("models")))


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh bot-store URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest_asyncio.fixture
async def sessionmaker(store_url: str):  # type: ignore[no-untyped-def]
    """A sessionmaker on a migrated bot store (both backends)."""
    from bot.db import make_engine, make_sessionmaker
    from bot.migrate import BOT_MIGRATIONS, upgrade

    await upgrade(store_url, BOT_MIGRATIONS)
    engine = make_engine(store_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def core(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The reference core with its demo data on SQLite, one per test module (``db_url`` is
    the core's database, for tests that read what the core holds)."""
    from stack import run_core

    db = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('core') / 'core.db'}"
    async with run_core(db) as c:
        c.db_url = db
        yield c


@pytest_asyncio.fixture(loop_scope="module")
async def http():  # type: ignore[no-untyped-def]
    """An HTTP client for a test (on the module's event loop, where the module's servers run)."""
    import aiohttp

    async with aiohttp.ClientSession() as s:
        yield s
