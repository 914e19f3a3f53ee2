"""bot store base: inbound messages, outbox, cache

Revision ID: bot_0001
Revises:
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = "bot_0001"
down_revision = None
branch_labels = ("bot",)
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("dedupe_key", sa.String(200), nullable=False),
        sa.Column("sender_id", sa.String(200), nullable=False),
        sa.Column("conversation_id", sa.String(240), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("processed_at", TS, nullable=True),
        sa.UniqueConstraint("channel", "dedupe_key", name="uq_inbound_dedupe"),
    )
    op.create_index("ix_inbound_status_received", "inbound_messages", ["status", "received_at"])
    op.create_index("ix_inbound_conversation", "inbound_messages", ["conversation_id", "id"])
    op.create_table(
        "outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("recipient_id", sa.String(200), nullable=False),
        sa.Column("conversation_id", sa.String(240), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("dedupe_key", sa.String(200), nullable=True),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("provider_id", sa.String(200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.UniqueConstraint("channel", "dedupe_key", name="uq_outbox_dedupe"),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_recipient", "outbox", ["channel", "recipient_id"])
    op.create_table(
        "conversation_leases",
        sa.Column("conversation_id", sa.String(240), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "cache_entries",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("expires_at", TS, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("cache_entries")
    op.drop_table("conversation_leases")
    op.drop_index("ix_outbox_recipient", table_name="outbox")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_inbound_conversation", table_name="inbound_messages")
    op.drop_index("ix_inbound_status_received", table_name="inbound_messages")
    op.drop_table("inbound_messages")
