"""crew_runs record the prompt tokens the model server took from its cache (KV prefix or provider prompt cache)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 12:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("crew_runs", sa.Column("tokens_cached", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("crew_runs", "tokens_cached")
