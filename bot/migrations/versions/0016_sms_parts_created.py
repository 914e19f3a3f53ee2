"""sms_parts: an index on created_at, for the retention purge

One row per SMS segment the provider accepted (a planned-outage notice to 100,000 customers
writes 100,000+ rows), kept for the delivery reports that arrive within hours or days; nothing
deleted them. The retention purge now deletes parts older than ``retention_days``; their key
is the provider's id (no order by age), so it walks this index. Its entries are appended in
time order (the page at its end, already dirty in the insert's commit).

Revision ID: bot_0016_sms_parts_created
Revises: bot_0015_inbound_waiting
Create Date: 2026-12-01
"""

from alembic import op

revision = "bot_0016_sms_parts_created"
down_revision = "bot_0015_inbound_waiting"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sms_parts_created", "sms_parts", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_sms_parts_created", table_name="sms_parts")
