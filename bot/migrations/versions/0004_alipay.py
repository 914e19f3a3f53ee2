"""alipay: payment orders created for bill payments (checked against Alipay's notify)

Revision ID: bot_0004_alipay
Revises: bot_0001
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = "bot_0004_alipay"
down_revision = "bot_0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alipay_orders",
        sa.Column("out_trade_no", sa.String(64), primary_key=True),
        sa.Column("account_number", sa.String(20), nullable=False),
        sa.Column("amount", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("recipient_id", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trade_no", sa.String(64), nullable=True),
        sa.Column("qr_code", sa.Text(), nullable=True),
        sa.Column("notify_count", sa.Integer(), nullable=False),
        sa.Column("claimed_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("paid_at", TS, nullable=True),
    )
    op.create_index("ix_alipay_orders_recipient", "alipay_orders", ["channel", "recipient_id"])


def downgrade() -> None:
    op.drop_index("ix_alipay_orders_recipient", table_name="alipay_orders")
    op.drop_table("alipay_orders")
