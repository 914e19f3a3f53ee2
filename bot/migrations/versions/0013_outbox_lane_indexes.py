"""outbox: each index holds only the rows its query reads

Every reply went into six outbox indexes on insert and changed four of them when it was
marked delivered; on SQLite those pages are most of what a commit writes. Three indexes
held rows their query never reads:

- ``ix_outbox_recipient`` (channel, recipient_id): only the REST channel's poll looks rows
  up by recipient. Now ``ix_outbox_rest_recipient`` (recipient_id, id) of the REST rows alone;
  the recipient ids of the other channels were random keys, a page written per reply.
- ``ix_outbox_provider`` (channel, provider_id): only SMS delivery receipts look rows up by
  provider id. Now ``ix_outbox_sms_provider`` of the SMS rows alone (every WeChat reply moved
  its entry when marked delivered).
- ``ix_outbox_pending_due``: the notice lane's claim (``kind <> 'reply'``); replies have
  their own lane and index (``ix_outbox_pending_reply_due``), so it now holds the pending
  rows that are not replies.

A reply now enters three indexes (primary key, dedupe key, reply lane) and leaves one.

Revision ID: bot_0013_outbox_lanes
Revises: bot_0012_alipay_pending
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa

revision = "bot_0013_outbox_lanes"
down_revision = "bot_0012_alipay_pending"
branch_labels = None
depends_on = None


def _partial(where: str) -> dict:
    return {"postgresql_where": sa.text(where), "sqlite_where": sa.text(where)}


def upgrade() -> None:
    op.drop_index("ix_outbox_recipient", table_name="outbox")
    op.create_index("ix_outbox_rest_recipient", "outbox", ["recipient_id", "id"], **_partial("channel = 'rest'"))
    op.drop_index("ix_outbox_provider", table_name="outbox")
    op.create_index("ix_outbox_sms_provider", "outbox", ["provider_id"], **_partial("channel = 'sms'"))
    op.drop_index("ix_outbox_pending_due", table_name="outbox")
    op.create_index("ix_outbox_pending_due", "outbox", ["next_attempt_at", "id"],
                    **_partial("status = 'pending' AND kind <> 'reply'"))


def downgrade() -> None:
    op.drop_index("ix_outbox_pending_due", table_name="outbox")
    op.create_index("ix_outbox_pending_due", "outbox", ["next_attempt_at", "id"], **_partial("status = 'pending'"))
    op.drop_index("ix_outbox_sms_provider", table_name="outbox")
    op.create_index("ix_outbox_provider", "outbox", ["channel", "provider_id"])
    op.drop_index("ix_outbox_rest_recipient", table_name="outbox")
    op.create_index("ix_outbox_recipient", "outbox", ["channel", "recipient_id"])
