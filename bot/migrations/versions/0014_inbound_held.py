"""inbound_messages: replies held for the inline answer

On SQLite in one process, a turn whose channel waits for the answer no longer queues its
replies in the outbox: its inbound row is left ``held`` (``next_attempt_at`` = the end of the
inline grace) until the channel marks the answer delivered. The recovery loop releases rows
still held after the grace; ``ix_inbound_held_due`` holds just those rows, each for the
seconds between its turn and its answer.

Revision ID: bot_0014_inbound_held
Revises: bot_0013_outbox_lanes
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa

revision = "bot_0014_inbound_held"
down_revision = "bot_0013_outbox_lanes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_inbound_held_due", "inbound_messages", ["next_attempt_at"],
                    postgresql_where=sa.text("status = 'held'"), sqlite_where=sa.text("status = 'held'"))


def downgrade() -> None:
    # a held row's replies are recorded in its turn's events: as ``received`` the next run replays them
    op.execute("UPDATE inbound_messages SET status = 'received' WHERE status = 'held'")
    op.drop_index("ix_inbound_held_due", table_name="inbound_messages")
