"""The bot store's database helpers: the engine factory and statement helpers live in
``common.db`` so the core can create its engine without importing the gateway."""

from common.db import (  # noqa: F401 - re-exported for the bot's modules
    WalCheckpointer,
    each_committed,
    in_transaction,
    is_sqlite,
    json_text,
    json_value,
    make_engine,
    make_sessionmaker,
    prebuilt,
    sql_const,
    unnest_rows,
)
