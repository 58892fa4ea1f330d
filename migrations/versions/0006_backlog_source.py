"""backlog imports remember their --source, so a resume without the flag goes on with the same one

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 18:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("backlog_imports", sa.Column("source", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("backlog_imports", "source")
