"""audit: one hash chain per ticket (audit_events.chain, seq; audit_chains) instead of one global chain behind one locked
row, and a global seal log (audit_seals, audit_seal_head) that seals each chain's head at the end of every run

Existing rows are checked against the old global chain first (a broken trail is not silently re-hashed into an intact
one), then re-hashed into their tickets' chains, and every chain gets one seal.

Revision ID: 0008
Revises: 0007
"""

import os
from datetime import UTC

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
OLD_FIELDS = ("ticket_id", "run_id", "kind", "name", "actor", "arguments", "result", "duration_ms", "error", "created_at")


def _check_old_chain(bind) -> None:
    from crewdesk.audit.chain import row_hash

    events = sa.table("audit_events", sa.column("id"), sa.column("prev_hash"), sa.column("hash"), *[sa.column(f) for f in OLD_FIELDS])
    prev, count, problems = GENESIS, 0, []
    for row in bind.execute(sa.select(events).order_by(events.c.id)).mappings():
        if row["prev_hash"] != prev or row_hash(row["prev_hash"], dict(row), OLD_FIELDS) != row["hash"]:
            problems.append(row["id"])
        prev, count = row["hash"], count + 1
    head = bind.execute(sa.text("SELECT last_hash, count FROM audit_chain_head WHERE id = 1")).first()
    if head is None or head[0] != prev or head[1] != count:
        problems.append("head")
    if problems and os.environ.get("CREWDESK_AUDIT_MIGRATE_BROKEN") != "1":
        raise RuntimeError(
            f"the audit trail does not verify before migration (rows {problems[:10]}); run `crewdesk audit verify` on the old "
            "version, keep a copy, and set CREWDESK_AUDIT_MIGRATE_BROKEN=1 to migrate it anyway"
        )


def upgrade() -> None:
    from crewdesk.audit.chain import HASHED_FIELDS, row_hash, seal_hash

    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    _check_old_chain(bind)

    op.create_table(
        "audit_chains",
        sa.Column("chain", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("chain"),
    )
    op.create_table(
        "audit_seals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chain", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("chain_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("hash"),
    )
    op.create_index("ix_audit_seals_chain", "audit_seals", ["chain"])
    op.create_table(
        "audit_seal_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("chain", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch.drop_constraint("uq_audit_events_hash", type_="unique")

    if postgres:  # existing rows move into their tickets' chains once, here; the append-only trigger is paused for it
        op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete")
    events = sa.table(
        "audit_events",
        sa.column("id"),
        sa.column("chain"),
        sa.column("seq"),
        sa.column("prev_hash"),
        sa.column("hash"),
        *[sa.column(f) for f in HASHED_FIELDS if f != "seq"],
    )
    heads: dict[int, tuple[str, int]] = {}
    rows = bind.execute(sa.select(events).order_by(sa.func.coalesce(events.c.ticket_id, 0), events.c.id)).mappings().all()
    for row in rows:
        chain = row["ticket_id"] if row["ticket_id"] is not None else 0
        prev, count = heads.get(chain, (GENESIS, 0))
        fields = {**dict(row), "seq": count + 1}
        digest = row_hash(prev, fields)
        bind.execute(events.update().where(events.c.id == row["id"]).values(chain=chain, seq=count + 1, prev_hash=prev, hash=digest))
        heads[chain] = (digest, count + 1)
    if postgres:
        op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete")

    from datetime import datetime

    op.bulk_insert(
        sa.table("audit_chains", sa.column("chain"), sa.column("last_hash"), sa.column("count")),
        [{"chain": c, "last_hash": h, "count": n} for c, (h, n) in sorted(heads.items())],
    )
    seals, prev = [], GENESIS
    for chain, (last_hash, count) in sorted(heads.items()):
        fields = {"chain": chain, "run_id": None, "count": count, "chain_hash": last_hash, "created_at": datetime.now(UTC)}
        digest = seal_hash(prev, fields)
        seals.append({**fields, "prev_hash": prev, "hash": digest})
        prev = digest
    seal_table = sa.table("audit_seals", *[sa.column(c) for c in ("chain", "run_id", "count", "chain_hash", "created_at", "prev_hash", "hash")])
    if seals:
        op.bulk_insert(seal_table, seals)
    op.bulk_insert(
        sa.table("audit_seal_head", sa.column("id"), sa.column("last_hash"), sa.column("count")), [{"id": 1, "last_hash": prev, "count": len(seals)}]
    )
    op.drop_table("audit_chain_head")

    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column("chain", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("seq", existing_type=sa.Integer(), nullable=False)
        batch.create_unique_constraint("uq_audit_events_hash", ["hash"])
        batch.create_index("ix_audit_events_chain_seq", ["chain", "seq"], unique=True)
    if postgres:
        op.execute("""
            CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP;
            END $$;
        """)
        op.execute("""
            CREATE TRIGGER audit_seals_no_update_delete BEFORE UPDATE OR DELETE ON audit_seals
            FOR EACH ROW EXECUTE FUNCTION audit_append_only();
        """)


def downgrade() -> None:
    """Back to one global chain: the rows are re-hashed in id order with the old fields (as 0002 did), after the
    per-ticket chains and the seal log are checked, so a broken trail is not laundered on the way down either."""
    from crewdesk.audit.chain import row_hash

    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if os.environ.get("CREWDESK_AUDIT_MIGRATE_BROKEN") != "1":
        from sqlalchemy.orm import Session

        from crewdesk.audit import service as audit

        with Session(bind=bind) as db:
            report = audit.verify(db=db)
        if not report.ok:
            raise RuntimeError(f"the audit trail does not verify ({report.problems[:3]}); set CREWDESK_AUDIT_MIGRATE_BROKEN=1 to downgrade anyway")
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    if postgres:
        op.execute("DROP TRIGGER IF EXISTS audit_seals_no_update_delete ON audit_seals")
        op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
        op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete")
    events = sa.table("audit_events", sa.column("id"), sa.column("prev_hash"), sa.column("hash"), *[sa.column(f) for f in OLD_FIELDS])
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_index("ix_audit_events_chain_seq")
        batch.drop_constraint("uq_audit_events_hash", type_="unique")
    prev, count = GENESIS, 0
    for row in bind.execute(sa.select(events).order_by(events.c.id)).mappings().all():
        digest = row_hash(prev, dict(row), OLD_FIELDS)
        bind.execute(events.update().where(events.c.id == row["id"]).values(prev_hash=prev, hash=digest))
        prev, count = digest, count + 1
    if postgres:
        op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete")
    op.bulk_insert(sa.table("audit_chain_head", sa.column("id"), sa.column("last_hash"), sa.column("count")), [{"id": 1, "last_hash": prev, "count": count}])
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("seq")
        batch.drop_column("chain")
        batch.create_unique_constraint("uq_audit_events_hash", ["hash"])
    op.drop_index("ix_audit_seals_chain", table_name="audit_seals")
    op.drop_table("audit_seals")
    op.drop_table("audit_seal_head")
    op.drop_table("audit_chains")
