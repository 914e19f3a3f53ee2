"""The bot_0005_sms_email migration (SMS opt-outs, SMS parts, outbox provider index) is reversible."""

from __future__ import annotations


async def test_sms_email_migration_goes_up_and_down(sqlite_url: str) -> None:
    from sqlalchemy import inspect

    from bot.db import make_engine
    from bot.migrate import BOT_MIGRATIONS, downgrade, upgrade

    async def tables() -> tuple[set[str], set[str]]:
        engine = make_engine(sqlite_url)
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            idx = await conn.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes("outbox")})
        await engine.dispose()
        return names, idx

    await upgrade(sqlite_url, BOT_MIGRATIONS)
    names, idx = await tables()
    assert {"sms_opt_outs", "sms_parts"} <= names and "ix_outbox_sms_provider" in idx  # since bot_0013
    await downgrade(sqlite_url, BOT_MIGRATIONS, "bot_0005_sms_email-1")
    names, idx = await tables()
    assert not ({"sms_opt_outs", "sms_parts"} & names) and "outbox" in names
    assert not {"ix_outbox_provider", "ix_outbox_sms_provider"} & idx
    await upgrade(sqlite_url, BOT_MIGRATIONS)
    assert {"sms_opt_outs", "sms_parts"} <= (await tables())[0]
