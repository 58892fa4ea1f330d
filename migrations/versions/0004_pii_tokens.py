"""pii tokens

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 12:48:21.933159
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pii_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id", "token", name="uq_pii_tokens_ticket_token"),
    )
    with op.batch_alter_table("pii_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pii_tokens_ticket_id"), ["ticket_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pii_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pii_tokens_ticket_id"))

    op.drop_table("pii_tokens")
