"""approvals record the ticket's bound customer and the money the write would give back (a refund waiting for
approval counts toward the customer's limits, and the approved write is recorded as theirs), how many people must
approve it, and the first of two approvers

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("customer_ref", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("amount_usd", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("approvals_needed", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("first_approved_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("first_approved_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_approvals_customer_ref", ["customer_ref"])


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_index("ix_approvals_customer_ref")
        batch.drop_column("first_approved_at")
        batch.drop_column("first_approved_by")
        batch.drop_column("approvals_needed")
        batch.drop_column("amount_usd")
        batch.drop_column("customer_ref")
