"""dialogue: tracker (conversations, events), customers/identities, verification locks, handoffs

Revision ID: bot_0002_dialogue
Revises: bot_0001
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = "bot_0002_dialogue"
down_revision = "bot_0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dlg_conversations",
        sa.Column("id", sa.String(240), primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("sender_id", sa.String(200), nullable=False),
        sa.Column("customer_id", BigId, nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "dlg_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(240), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(80), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_dlg_events_conv", "dlg_events", ["conversation_id", "id"])
    op.create_table(
        "dlg_customers",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "dlg_identities",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("sender_id", sa.String(200), nullable=False),
        sa.Column("customer_id", BigId, sa.ForeignKey("dlg_customers.id"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("channel", "sender_id", name="uq_dlg_identity"),
    )
    op.create_table(
        "dlg_customer_accounts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("customer_id", BigId, sa.ForeignKey("dlg_customers.id"), nullable=False),
        sa.Column("account_number", sa.String(20), nullable=False),
        sa.Column("how", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("customer_id", "account_number", name="uq_dlg_customer_account"),
    )
    op.create_index("ix_dlg_customer_accounts_acct", "dlg_customer_accounts", ["account_number"])
    op.create_table(
        "dlg_verification_locks",
        sa.Column("account_number", sa.String(20), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "handoffs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(240), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(120), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("acked", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("assigned_at", TS, nullable=True),
        sa.Column("released_at", TS, nullable=True),
    )
    op.create_index("ix_handoffs_conv_status", "handoffs", ["conversation_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_handoffs_conv_status", table_name="handoffs")
    op.drop_table("handoffs")
    op.drop_table("dlg_verification_locks")
    op.drop_index("ix_dlg_customer_accounts_acct", table_name="dlg_customer_accounts")
    op.drop_table("dlg_customer_accounts")
    op.drop_table("dlg_identities")
    op.drop_table("dlg_customers")
    op.drop_index("ix_dlg_events_conv", table_name="dlg_events")
    op.drop_table("dlg_events")
    op.drop_table("dlg_conversations")
