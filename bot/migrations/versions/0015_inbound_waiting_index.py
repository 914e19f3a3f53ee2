"""inbound_messages: the conversation index holds only the rows that wait

``ix_inbound_conversation`` (conversation_id, id) held every inbound row ever stored, keyed
by a random conversation id: each message dirtied a leaf page of a large index (a page
write a message at commit, a random read once the index outgrows the cache), for queries
that read only the rows still waiting (the drain's next row, the insert's backlog probe,
the lease statements). ``ix_inbound_conv_waiting`` holds just those: a row enters it when
it arrives and leaves when its turn ends, so it stays a few pages. The one reader of every
row of a conversation, the email channel's "last message of this thread" (for reply
threading), gets ``ix_inbound_email_conv`` of the email rows alone. The recovery scan's
``ix_inbound_received_due`` held the same rows as the new index: the scan walks the new one
(a few pages), and a message writes two index entries less.

Revision ID: bot_0015_inbound_waiting
Revises: bot_0014_inbound_held
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa

revision = "bot_0015_inbound_waiting"
down_revision = "bot_0014_inbound_held"
branch_labels = None
depends_on = None


def _partial(where: str) -> dict:
    return {"postgresql_where": sa.text(where), "sqlite_where": sa.text(where)}


def upgrade() -> None:
    op.create_index("ix_inbound_conv_waiting", "inbound_messages", ["conversation_id", "id"],
                    **_partial("status = 'received'"))
    op.create_index("ix_inbound_email_conv", "inbound_messages", ["conversation_id", "id"],
                    **_partial("channel = 'email'"))
    op.drop_index("ix_inbound_conversation", table_name="inbound_messages")
    op.drop_index("ix_inbound_received_due", table_name="inbound_messages")


def downgrade() -> None:
    op.create_index("ix_inbound_received_due", "inbound_messages", ["next_attempt_at"],
                    **_partial("status = 'received'"))
    op.create_index("ix_inbound_conversation", "inbound_messages", ["conversation_id", "id"])
    op.drop_index("ix_inbound_email_conv", table_name="inbound_messages")
    op.drop_index("ix_inbound_conv_waiting", table_name="inbound_messages")
