"""dlg_customer_accounts: forget accounts linked by the look of a sender id

Before, any sender id shaped like "+86…" (a REST sender picks its own) was linked to every
account registered with that phone ("how" = 'phone'). Only an SMS sender's number is proven
(signed by the provider): links of that kind held by a customer without an SMS identity were
never proven and are removed. Bindings and verified links stay.

Revision ID: bot_0018_unproven_phone_links
Revises: bot_0017_inbound_dedupe_sender
Create Date: 2026-12-07
"""

from alembic import op

revision = "bot_0018_unproven_phone_links"
down_revision = "bot_0017_inbound_dedupe_sender"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM dlg_customer_accounts WHERE how = 'phone' AND customer_id NOT IN "
        "(SELECT customer_id FROM dlg_identities WHERE channel = 'sms')"
    )


def downgrade() -> None:
    pass  # unproven links are not restored
