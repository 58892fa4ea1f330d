"""e-mail threading that does not depend on arrival order: email_containers (the JWZ thread index, one row per
Message-ID seen or referenced) and ticket_links (tickets found to be one thread: merged, or linked when one was
already being worked on)

Mail stored before this revision is indexed here from the Message-ID and References kept on its messages, so a
parent that arrives after the upgrade still finds the replies that came before it.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_containers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=512), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("thread_key", sa.String(length=512), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["email_containers.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_id", name="uq_email_containers_external_id"),
    )
    with op.batch_alter_table("email_containers") as batch:
        batch.create_index(batch.f("ix_email_containers_parent_id"), ["parent_id"], unique=False)
        batch.create_index(batch.f("ix_email_containers_thread_key"), ["thread_key"], unique=False)
        batch.create_index(batch.f("ix_email_containers_ticket_id"), ["ticket_id"], unique=False)
    op.create_table(
        "ticket_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("other_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["other_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id", "other_id", name="uq_ticket_links_pair"),
    )
    with op.batch_alter_table("ticket_links") as batch:
        batch.create_index(batch.f("ix_ticket_links_ticket_id"), ["ticket_id"], unique=False)
        batch.create_index(batch.f("ix_ticket_links_other_id"), ["other_id"], unique=False)
    _index_stored_mail(op.get_bind())


def downgrade() -> None:
    op.drop_table("ticket_links")
    op.drop_table("email_containers")


def _index_stored_mail(bind) -> None:
    """One container per stored e-mail message (its ticket and row), one placeholder per Message-ID its References /
    In-Reply-To name that is not stored, each message under the last one it names (JWZ: the message's own word wins;
    a chain's links are taken only where the child has no parent yet and no loop forms). Stored order is the order
    they came in; threads are the connected containers. Plain SQL here: the models may change after this revision."""
    import json
    from datetime import UTC, datetime
    from itertools import pairwise

    rows = bind.execute(
        sa.text(
            "SELECT m.id, m.ticket_id, m.external_id, m.meta FROM messages m JOIN tickets t ON t.id = m.ticket_id "
            "WHERE t.source = 'email' AND m.external_id IS NOT NULL ORDER BY m.id"
        )
    ).all()
    if not rows:
        return
    nodes: dict[str, dict] = {}  # Message-ID -> {"ticket", "message", "parent"}

    def node(mid: str) -> dict:
        return nodes.setdefault(mid, {"ticket": None, "message": None, "parent": None})

    def ancestor(a: str, b: str) -> bool:  # is a an ancestor of b (or b itself)?
        seen = set()
        while b is not None and b not in seen:
            if b == a:
                return True
            seen.add(b)
            b = nodes[b]["parent"]
        return False

    for message_id, ticket_id, mid, meta in rows:
        if isinstance(meta, str):
            meta = json.loads(meta)
        meta = meta or {}
        own = node(mid)
        if own["message"] is None:
            own["ticket"], own["message"] = ticket_id, message_id
        refs = [r for r in [*(meta.get("references") or []), meta.get("in_reply_to")] if r and len(r) <= 512 and r != mid]
        refs = list(dict.fromkeys(refs))
        for r in refs:
            node(r)
        for parent, child in pairwise(refs):
            if nodes[child]["parent"] is None and not ancestor(child, parent):
                nodes[child]["parent"] = parent
        if refs and not ancestor(mid, refs[-1]):
            own["parent"] = refs[-1]

    def root(mid: str) -> str:
        seen = set()
        while nodes[mid]["parent"] is not None and mid not in seen:
            seen.add(mid)
            mid = nodes[mid]["parent"]
        return mid

    table = sa.table(
        "email_containers",
        sa.column("id", sa.Integer),
        sa.column("external_id", sa.String),
        sa.column("parent_id", sa.Integer),
        sa.column("thread_key", sa.String),
        sa.column("ticket_id", sa.Integer),
        sa.column("message_id", sa.Integer),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    ids = {mid: index for index, mid in enumerate(nodes, start=1)}
    values = [
        dict(id=ids[mid], external_id=mid, parent_id=None, thread_key=root(mid), ticket_id=n["ticket"], message_id=n["message"], created_at=now)
        for mid, n in nodes.items()
    ]
    bind.execute(sa.insert(table), values)
    parents = [{"cid": ids[mid], "pid": ids[n["parent"]]} for mid, n in nodes.items() if n["parent"] is not None]
    if parents:
        bind.execute(sa.update(table).where(table.c.id == sa.bindparam("cid")).values(parent_id=sa.bindparam("pid")), parents)
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text("SELECT setval(pg_get_serial_sequence('email_containers', 'id'), :n)"), {"n": len(ids)})
