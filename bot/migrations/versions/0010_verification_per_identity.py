"""verification failures per identity and per account

The lock was per account number: five wrong last-4 answers from anyone locked the check for
everyone, so a neighbour who knew the number could lock the owner out for good, half an hour
at a time. Counters are now kept per (account, identity) and per account (identity ``*``,
with a higher threshold). An existing row is an account-wide counter.

Revision ID: bot_0010_verification_identity
Revises: bot_0009_outbox_reply_lane
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa

revision = "bot_0010_verification_identity"
down_revision = "bot_0009_outbox_reply_lane"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dlg_verification_failures",
        sa.Column("account_number", sa.String(20), primary_key=True),
        sa.Column("identity", sa.String(200), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.execute(
        "INSERT INTO dlg_verification_failures (account_number, identity, failures, locked_until, updated_at) "
        "SELECT account_number, '*', failures, locked_until, updated_at FROM dlg_verification_locks"
    )
    op.drop_table("dlg_verification_locks")


def downgrade() -> None:
    op.create_table(
        "dlg_verification_locks",
        sa.Column("account_number", sa.String(20), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.execute(
        "INSERT INTO dlg_verification_locks (account_number, failures, locked_until, updated_at) "
        "SELECT account_number, failures, locked_until, updated_at FROM dlg_verification_failures "
        "WHERE identity = '*'"
    )
    op.drop_table("dlg_verification_failures")
