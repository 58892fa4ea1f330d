"""Tables for intake: every inbound item seen on any channel, mailbox cursors, backlog imports, and the e-mail thread
index (one container per Message-ID seen)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crewdesk.db import Base, EnumText, JSONType, utcnow


class InboundStatus(StrEnum):
    received = "received"  # claimed, not yet settled (a crash in between leaves this)
    accepted = "accepted"  # became a ticket or a message
    ignored = "ignored"  # on purpose: our own mail, an auto-reply, an event we do not handle
    rejected = "rejected"  # could not become a ticket; `reason` says why


class ImportStatus(StrEnum):
    running = "running"
    finished = "finished"


class InboundEvent(Base):
    """One inbound item on a channel (an email, a webhook delivery, a backlog row), recorded once.

    The unique (channel, external_id) is the de-duplication: a redelivered webhook or a re-fetched email finds its
    row, bumps `seen_count` and does nothing else. `status` says what became of it: accepted (a ticket or a message
    on one), ignored (auto-reply, bounce, list mail, our own comment; recorded, not answered) or rejected (bad input,
    with the reason)."""

    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("channel", "external_id", name="uq_inbound_events_channel_external_id"),
        Index("ix_inbound_events_status", "channel", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))  # email | jira | backlog | api
    external_id: Mapped[str] = mapped_column(String(512))
    kind: Mapped[str] = mapped_column(String(64), default="")  # e.g. issue_created, comment_created, message
    status: Mapped[InboundStatus] = mapped_column(EnumText(InboundStatus, 16), default=InboundStatus.received)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), nullable=True, index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"), nullable=True)
    detail: Mapped[dict | None] = mapped_column(JSONType, nullable=True)  # headers, line number, excerpt: evidence, never the whole raw item
    seen_count: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class MailboxCursor(Base):
    """How far an IMAP folder has been read: messages with UID <= last_uid under this UIDVALIDITY are committed."""

    __tablename__ = "mailbox_cursors"

    mailbox: Mapped[str] = mapped_column(String(512), primary_key=True)  # user@host:port/folder
    uidvalidity: Mapped[int] = mapped_column(BigInteger)  # IMAP UIDVALIDITY and UIDs are unsigned 32-bit
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class BacklogImport(Base):
    """One `crewdesk backlog import FILE`: where it got to (for resuming) and what it found."""

    __tablename__ = "backlog_imports"
    __table_args__ = (UniqueConstraint("sha256", name="uq_backlog_imports_sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))  # of the file's bytes: the same file resumes the same import
    format: Mapped[str] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)  # --source; None = the format's own (a resume reuses it)
    status: Mapped[ImportStatus] = mapped_column(EnumText(ImportStatus, 16), default=ImportStatus.running)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)  # rows committed (resume skips these)
    rows_ok: Mapped[int] = mapped_column(Integer, default=0)
    rows_bad: Mapped[int] = mapped_column(Integer, default=0)
    rows_duplicate: Mapped[int] = mapped_column(Integer, default=0)
    rows_enqueued: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class EmailContainer(Base):
    """One node of the e-mail thread index (JWZ threading): a Message-ID we have seen, as a message or only named in
    another mail's References / In-Reply-To (a placeholder for a parent not yet arrived, or never to arrive).

    `parent_id` is the container this message answers; `thread_key` names its thread (the Message-ID of the thread's
    root: a container put under another takes, with everything under it, the key of its new parent's thread), so a
    thread is read in one query. `ticket_id` is the ticket holding the message (NULL: a placeholder); `message_id` its row (NULL for a
    placeholder, or for our own reply known only by its ticket). Maintained by every ingest in its transaction, so
    a parent arriving days after its replies finds them here and adopts them, whatever the order mail came in."""

    __tablename__ = "email_containers"
    __table_args__ = (UniqueConstraint("external_id", name="uq_email_containers_external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(512))  # the Message-ID, without <>
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("email_containers.id", ondelete="SET NULL"), nullable=True, index=True)
    thread_key: Mapped[str] = mapped_column(String(512), index=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), nullable=True, index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
