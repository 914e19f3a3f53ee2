"""alipay: the reconciler's sweep walks a partial index of the pending orders

Every two minutes the reconciler asks for the orders still ``pending`` after five minutes
(their notify may have been lost). Without an index both stores read every order ever
created for it (SQLite: ``SCAN alipay_orders`` and a sort); the orders waiting for a notify
are a handful at any time, so a partial index of them is small and always current.

Revision ID: bot_0012_alipay_pending
Revises: bot_0011_hot_path_indexes
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa

revision = "bot_0012_alipay_pending"
down_revision = "bot_0011_hot_path_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_alipay_orders_pending", "alipay_orders", ["created_at"],
        postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_alipay_orders_pending", table_name="alipay_orders")
