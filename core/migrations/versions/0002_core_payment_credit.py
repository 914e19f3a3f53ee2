"""payments.credit_amount: the part of a paid payment no unpaid bill took

A payment confirmed after the account's bills were already paid (the customer paid two
payment links) used to be recorded as paid and its money applied to nothing. The amount
left over is now kept on the payment and summed per account (``credit_balance`` of the
arrears), so the money is visible and can be refunded or set against later bills.

Revision ID: 0002_core_payment_credit
Revises: 0001_core_initial
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_core_payment_credit'
down_revision = '0001_core_initial'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credit_amount', sa.Numeric(precision=12, scale=2), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('credit_amount')
