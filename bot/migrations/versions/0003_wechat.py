"""wechat: customer-service window ledger (48-hour / 1-minute grants per openid)

Revision ID: bot_0003_wechat
Revises: bot_0001
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = "bot_0003_wechat"
down_revision = "bot_0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wechat_windows",
        sa.Column("openid", sa.String(128), primary_key=True),
        sa.Column("msg_until", TS, nullable=True),
        sa.Column("msg_left", sa.Integer(), nullable=False),
        sa.Column("evt_until", TS, nullable=True),
        sa.Column("evt_left", sa.Integer(), nullable=False),
        sa.Column("subscribed", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("wechat_windows")
