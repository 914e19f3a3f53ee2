"""hot path: no index the hot path writes and nothing reads

Every reply and every inbound message maintains each index of its table, twice (insert, then
the status change); on SQLite those pages are most of what a commit writes. Three indexes
serve no query:

- ``ix_inbound_status_received`` (status, received_at): the recovery scan, its only reader,
  uses the partial ``ix_inbound_received_due``.
- ``ix_outbox_due`` (status, next_attempt_at): the claim uses the partial pending indexes;
  its one other reader, the scan for orphaned ``sending`` rows, gets a partial index of the
  few rows in ``sending`` (``ix_outbox_sending_due``) instead of every row ever sent.
- ``ix_outbox_dedupe_prefix`` on SQLite: SQLite's LIKE is case-insensitive, so the prefix
  lookup ``dedupe_key LIKE 'in:<id>:%'`` cannot use a plain index (EXPLAIN: SCAN outbox);
  PostgreSQL keeps it (``text_pattern_ops``).

Revision ID: bot_0011_hot_path_indexes
Revises: bot_0010_verification_identity
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa

revision = "bot_0011_hot_path_indexes"
down_revision = "bot_0010_verification_identity"
branch_labels = None
depends_on = None


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    op.drop_index("ix_inbound_status_received", table_name="inbound_messages")
    op.create_index(
        "ix_outbox_sending_due",
        "outbox",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'sending'"),
        sqlite_where=sa.text("status = 'sending'"),
    )
    op.drop_index("ix_outbox_due", table_name="outbox")
    if _sqlite():
        op.drop_index("ix_outbox_dedupe_prefix", table_name="outbox")


def downgrade() -> None:
    if _sqlite():
        op.create_index("ix_outbox_dedupe_prefix", "outbox", ["dedupe_key"])
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.drop_index("ix_outbox_sending_due", table_name="outbox")
    op.create_index("ix_inbound_status_received", "inbound_messages", ["status", "received_at"])
