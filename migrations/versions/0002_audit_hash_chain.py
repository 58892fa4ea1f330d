"""audit hash chain: prev_hash and hash on audit_events, and the audit_chain_head row

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
# The fields this revision hashed (frozen here: later revisions hash more, e.g. 0008's place in the ticket's chain).
HASHED_FIELDS = ("ticket_id", "run_id", "kind", "name", "actor", "arguments", "result", "duration_ms", "error", "created_at")


def upgrade() -> None:
    from crewdesk.audit.chain import row_hash

    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(length=64), nullable=True))

    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if postgres:  # existing rows get their hashes once, here; the append-only trigger is paused for it
        op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete")
    events = sa.table("audit_events", sa.column("id"), sa.column("prev_hash"), sa.column("hash"), *[sa.column(f) for f in HASHED_FIELDS])
    prev, count = GENESIS, 0
    for row in bind.execute(sa.select(events).order_by(events.c.id)).mappings():
        digest = row_hash(prev, dict(row), HASHED_FIELDS)
        bind.execute(events.update().where(events.c.id == row["id"]).values(prev_hash=prev, hash=digest))
        prev, count = digest, count + 1
    if postgres:
        op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete")
    op.bulk_insert(sa.table("audit_chain_head", sa.column("id"), sa.column("last_hash"), sa.column("count")), [{"id": 1, "last_hash": prev, "count": count}])

    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch.create_unique_constraint("uq_audit_events_hash", ["hash"])


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_constraint("uq_audit_events_hash", type_="unique")
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete")
    op.drop_table("audit_chain_head")
