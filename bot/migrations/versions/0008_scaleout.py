"""scale-out: indexes for the hot queries of many gateway processes on one database

Merges every feature head (dialogue, wechat, alipay, sms/email, notify, console).

Each index below is checked with EXPLAIN on PostgreSQL by tests/pipeline/test_indexes.py:

- ``ix_inbound_received_due``: the recovery loop's "messages left received and due" scan
  (partial: only the few ``received`` rows, not the millions that are ``done``).
- ``ix_outbox_pending_due``: the outbox claim (``pending`` and due, oldest first), partial
  for the same reason; ``FOR UPDATE SKIP LOCKED`` walks it in order.
- ``ix_outbox_dedupe_prefix``: the cross-process reply lookup ``dedupe_key LIKE 'in:<id>:%'``
  (the unique (channel, dedupe_key) index cannot serve it: channel leads). On PostgreSQL it
  uses ``text_pattern_ops`` so prefix LIKE works whatever the database collation.
- ``ix_handoffs_status_created``: the console queue (waiting / active handoffs, oldest first).

Revision ID: bot_0008_scaleout
Revises: bot_0002_dialogue, bot_0003_wechat, bot_0004_alipay, bot_0005_sms_email, bot_0006_notify, bot_0007_console
Create Date: 2026-11-26
"""

from alembic import op
import sqlalchemy as sa

revision = "bot_0008_scaleout"
down_revision = (
    "bot_0002_dialogue",
    "bot_0003_wechat",
    "bot_0004_alipay",
    "bot_0005_sms_email",
    "bot_0006_notify",
    "bot_0007_console",
)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_inbound_received_due",
        "inbound_messages",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'received'"),
        sqlite_where=sa.text("status = 'received'"),
    )
    op.create_index(
        "ix_outbox_pending_due",
        "outbox",
        ["next_attempt_at", "id"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_outbox_dedupe_prefix",
        "outbox",
        ["dedupe_key"],
        postgresql_ops={"dedupe_key": "text_pattern_ops"},
    )
    op.create_index("ix_handoffs_status_created", "handoffs", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_handoffs_status_created", table_name="handoffs")
    op.drop_index("ix_outbox_dedupe_prefix", table_name="outbox")
    op.drop_index("ix_outbox_pending_due", table_name="outbox")
    op.drop_index("ix_inbound_received_due", table_name="inbound_messages")
