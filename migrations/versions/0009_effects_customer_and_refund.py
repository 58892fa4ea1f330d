"""tool_effects record the customer the ticket was bound to and the money each write gave back (approval thresholds
add up refunds per ticket and per customer)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tool_effects") as batch:
        batch.add_column(sa.Column("customer_ref", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("refund_usd", sa.Float(), nullable=False, server_default="0"))
        batch.create_index("ix_tool_effects_customer_ref", ["customer_ref"])


def downgrade() -> None:
    with op.batch_alter_table("tool_effects") as batch:
        batch.drop_index("ix_tool_effects_customer_ref")
        batch.drop_column("refund_usd")
        batch.drop_column("customer_ref")
