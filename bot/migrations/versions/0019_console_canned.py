"""console_canned: canned answers agents edit in the console and insert with "/shortcut"

Seeded with the answers that used to be fixed in the code (0019_console_canned.yml).

Revision ID: bot_0019_console_canned
Revises: bot_0018_unproven_phone_links
Create Date: 2026-12-07
"""

from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
import yaml
from alembic import op

revision = "bot_0019_console_canned"
down_revision = "bot_0018_unproven_phone_links"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# the canned answers the console had in its code (agent-facing words, so kept out of the .py)
SEED = yaml.safe_load(Path(__file__).with_suffix(".yml").read_text(encoding="utf-8"))


def upgrade() -> None:
    table = op.create_table(
        "console_canned",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("shortcut", sa.String(32), nullable=False, unique=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(80), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    now = datetime.now(timezone.utc)
    op.bulk_insert(table, [{"shortcut": r["shortcut"], "text": r["text"], "updated_by": None, "updated_at": now} for r in SEED])


def downgrade() -> None:
    op.drop_table("console_canned")
