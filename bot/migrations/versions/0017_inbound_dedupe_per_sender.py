"""inbound_messages: a message id is unique per (channel, sender), not per channel

The id of a REST message (and an email's Message-ID) is chosen by whoever sends it: unique per
channel, one sender could suppress another's message (a hazard report) by sending its id
first. Platform-assigned ids (WeChat MsgId, SMS provider ids) stay unique under the new key.

SQLite cannot drop a table constraint: the table is rebuilt from its own stored definition,
with every index it has (whatever later migrations added) re-created from theirs.

Revision ID: bot_0017_inbound_dedupe_sender
Revises: bot_0016_sms_parts_created
Create Date: 2026-12-07
"""

from alembic import op

revision = "bot_0017_inbound_dedupe_sender"
down_revision = "bot_0016_sms_parts_created"
branch_labels = None
depends_on = None

OLD = ("channel", "dedupe_key")
NEW = ("channel", "sender_id", "dedupe_key")


def _rebuild_sqlite(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    conn = op.get_bind()
    table_sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'inbound_messages'").scalar_one()
    index_sql = [r[0] for r in conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'inbound_messages' AND sql IS NOT NULL")]
    before = f"CONSTRAINT uq_inbound_dedupe UNIQUE ({', '.join(old)})"
    if before not in table_sql:
        raise RuntimeError(f"inbound_messages has no {before}: {table_sql}")
    rebuilt = table_sql.replace(before, f"CONSTRAINT uq_inbound_dedupe UNIQUE ({', '.join(new)})")
    rebuilt = rebuilt.replace("inbound_messages", "inbound_messages_rebuilt", 1)
    conn.exec_driver_sql(rebuilt)
    conn.exec_driver_sql("INSERT INTO inbound_messages_rebuilt SELECT * FROM inbound_messages")
    conn.exec_driver_sql("DROP TABLE inbound_messages")
    conn.exec_driver_sql("ALTER TABLE inbound_messages_rebuilt RENAME TO inbound_messages")
    for sql in index_sql:
        conn.exec_driver_sql(sql)


def _swap(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(old, new)
        return
    op.drop_constraint("uq_inbound_dedupe", "inbound_messages", type_="unique")
    op.create_unique_constraint("uq_inbound_dedupe", "inbound_messages", list(new))


def upgrade() -> None:
    _swap(OLD, NEW)


def downgrade() -> None:
    _swap(NEW, OLD)
