"""console_canned: canned answers agents edit in the console and insert with "/shortcut"

Seeded with the answers that used to be fixed in the code.

Revision ID: bot_0019_console_canned
Revises: bot_0018_unproven_phone_links
Create Date: 2026-12-07
"""

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "bot_0019_console_canned"
down_revision = "bot_0018_unproven_phone_links"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SEED = [
    ("hello", "您好，我是人工客服，很高兴为您服务，请问有什么可以帮您？"),
    ("wait", "请您稍等，我正在为您查询。"),
    ("repair", "抢修人员已在赶往现场的路上（城区平均45分钟内到达），请您远离断线、冒火等危险区域，注意安全。"),
    ("ticket", "您反映的问题已登记工单，我们会在1个工作日内与您联系，请保持电话畅通。"),
    ("paid", "您的缴费已收到，到账可能有几分钟延迟，请稍后再查询。"),
    ("bye", "感谢您的耐心等待，请问还有其他可以帮您的吗？"),
]


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
    op.bulk_insert(table, [{"shortcut": s, "text": t, "updated_by": None, "updated_at": now} for s, t in SEED])


def downgrade() -> None:
    op.drop_table("console_canned")
