"""console: agents, sessions, audit, agent messages/notes, satisfaction, callback offers

Revision ID: bot_0007_console
Revises: bot_0001
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = "bot_0007_console"
down_revision = "bot_0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_agents",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(80), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", TS, nullable=True),
        sa.Column("last_seen_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("agent_id", BigId, nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "console_audit",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("agent_name", sa.String(80), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("conversation_id", sa.String(240), nullable=True),
        sa.Column("field", sa.String(40), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_console_audit_conv", "console_audit", ["conversation_id"])
    op.create_table(
        "console_messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(240), nullable=False),
        sa.Column("handoff_id", BigId, nullable=True),
        sa.Column("agent_name", sa.String(80), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("outbox_id", BigId, nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_console_messages_conv", "console_messages", ["conversation_id", "id"])
    op.create_table(
        "console_satisfaction",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(240), nullable=False),
        sa.Column("handoff_id", BigId, nullable=False, unique=True),
        sa.Column("agent_name", sa.String(80), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("asked_at", TS, nullable=False),
        sa.Column("answered_at", TS, nullable=True),
    )
    op.create_index("ix_console_satisfaction_conv", "console_satisfaction", ["conversation_id", "status"])
    op.create_table(
        "console_callback_offers",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(240), nullable=False),
        sa.Column("handoff_id", BigId, nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("estimated_wait_seconds", sa.Integer(), nullable=True),
        sa.Column("work_order_id", sa.String(40), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("accepted_at", TS, nullable=True),
    )
    op.create_index("ix_console_callback_conv", "console_callback_offers", ["conversation_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_console_callback_conv", table_name="console_callback_offers")
    op.drop_table("console_callback_offers")
    op.drop_index("ix_console_satisfaction_conv", table_name="console_satisfaction")
    op.drop_table("console_satisfaction")
    op.drop_index("ix_console_messages_conv", table_name="console_messages")
    op.drop_table("console_messages")
    op.drop_index("ix_console_audit_conv", table_name="console_audit")
    op.drop_table("console_audit")
    op.drop_table("console_sessions")
    op.drop_table("console_agents")
