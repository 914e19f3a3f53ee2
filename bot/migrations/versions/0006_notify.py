"""notify: event-feed cursor of the notification producers

Revision ID: bot_0006_notify
Revises: bot_0001
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = "bot_0006_notify"
down_revision = "bot_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notify_cursors",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("cursor", sa.String(200), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notify_cursors")
