"""demo store tables and tool_effects

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 12:39:16.748035
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_orders",
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("doc", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    with op.batch_alter_table("store_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_store_orders_user_id"), ["user_id"], unique=False)

    op.create_table(
        "store_products",
        sa.Column("product_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("doc", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("product_id"),
    )
    op.create_table(
        "store_users",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("doc", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )
    with op.batch_alter_table("store_users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_store_users_email"), ["email"], unique=False)

    op.create_table(
        "tool_effects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("tool", sa.String(length=64), nullable=False),
        sa.Column("arguments", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.Column("result", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["crew_runs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("tool_effects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tool_effects_ticket_id"), ["ticket_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tool_effects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tool_effects_ticket_id"))

    op.drop_table("tool_effects")
    with op.batch_alter_table("store_users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_store_users_email"))

    op.drop_table("store_users")
    op.drop_table("store_products")
    with op.batch_alter_table("store_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_store_orders_user_id"))

    op.drop_table("store_orders")
