"""outbox: a lane for conversational replies

The claim takes replies to customers before notices: a planned-outage fan-out puts 100,000
notices in the queue, and a customer's answer must not wait behind them. The partial index
finds the few pending replies without walking the pending notices.

Revision ID: bot_0009_outbox_reply_lane
Revises: bot_0008_scaleout
Create Date: 2026-11-28
"""

from alembic import op
import sqlalchemy as sa

revision = "bot_0009_outbox_reply_lane"
down_revision = "bot_0008_scaleout"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_outbox_pending_reply_due",
        "outbox",
        ["next_attempt_at", "id"],
        postgresql_where=sa.text("status = 'pending' AND kind = 'reply'"),
        sqlite_where=sa.text("status = 'pending' AND kind = 'reply'"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_pending_reply_due", table_name="outbox")
