"""intake channels: inbound events, mailbox cursors, backlog imports, attachments, message delivery

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 15:20:00
"""

import sqlalchemy as sa
from alembic import op

from crewdesk.db import JSONType

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backlog_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("rows_ok", sa.Integer(), nullable=False),
        sa.Column("rows_bad", sa.Integer(), nullable=False),
        sa.Column("rows_duplicate", sa.Integer(), nullable=False),
        sa.Column("rows_enqueued", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sha256", name="uq_backlog_imports_sha256"),
    )
    op.create_table(
        "mailbox_cursors",
        sa.Column("mailbox", sa.String(length=512), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mailbox"),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_status", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("backlog_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_tickets_backlog_id"), ["backlog_id"], unique=False)
        batch_op.create_foreign_key("fk_tickets_backlog_id", "backlog_imports", ["backlog_id"], ["id"], ondelete="SET NULL")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("meta", JSONType, nullable=True))
        batch_op.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("delivery_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("delivery_error", sa.Text(), nullable=True))
        batch_op.create_index("ix_messages_external_id", ["external_id"], unique=False)
    op.create_table(
        "attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("stored", sa.Boolean(), nullable=False),
        sa.Column("refused_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attachments_message_id"), ["message_id"], unique=False)
    op.create_table(
        "inbound_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("detail", JSONType, nullable=True),
        sa.Column("seen_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "external_id", name="uq_inbound_events_channel_external_id"),
    )
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_events_status", ["channel", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_inbound_events_ticket_id"), ["ticket_id"], unique=False)


def downgrade() -> None:
    op.drop_table("inbound_events")
    op.drop_table("attachments")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_external_id")
        for column in ("delivery_error", "delivery_attempts", "delivered_at", "meta"):
            batch_op.drop_column(column)
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint("fk_tickets_backlog_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_tickets_backlog_id"))
        batch_op.drop_column("backlog_id")
        batch_op.drop_column("external_status")
    op.drop_table("mailbox_cursors")
    op.drop_table("backlog_imports")
