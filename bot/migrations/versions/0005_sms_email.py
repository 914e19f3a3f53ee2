"""sms/email channels: SMS opt-outs, SMS segment parts, outbox lookup by provider id

Revision ID: bot_0005_sms_email
Revises: bot_0001
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = "bot_0005_sms_email"
down_revision = "bot_0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sms_opt_outs",
        sa.Column("phone", sa.String(32), primary_key=True),
        sa.Column("keyword", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "sms_parts",
        sa.Column("provider_id", sa.String(200), primary_key=True),
        sa.Column("batch_ref", sa.String(64), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.String(200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_sms_parts_batch", "sms_parts", ["batch_ref"])
    # Delivery reports find their outbox row by the provider id.
    op.create_index("ix_outbox_provider", "outbox", ["channel", "provider_id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_provider", table_name="outbox")
    op.drop_index("ix_sms_parts_batch", table_name="sms_parts")
    op.drop_table("sms_parts")
    op.drop_table("sms_opt_outs")
