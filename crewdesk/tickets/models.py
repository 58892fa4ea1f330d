"""Tables: tickets and messages."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crewdesk.db import Base, EnumText, JSONType, utcnow
from crewdesk.inbound import models as _inbound  # noqa: F401  (tickets.backlog_id refers to backlog_imports)


class TicketStatus(StrEnum):
    received = "received"
    queued = "queued"
    triaging = "triaging"
    in_progress = "in_progress"
    awaiting_approval = "awaiting_approval"
    waiting_on_customer = "waiting_on_customer"  # asked the customer one question; their reply resumes the ticket
    no_reply = "no_reply"  # waited on the customer past the close time (after a reminder); a late reply resumes it
    resolved = "resolved"
    escalated = "escalated"
    failed = "failed"


# No run acts on these until someone writes: the customer (a reply reopens resolved, failed and waiting tickets) or a
# person (escalated). A ticket waiting on the customer has ended its run as surely as a resolved one.
TERMINAL = frozenset({TicketStatus.resolved, TicketStatus.escalated, TicketStatus.failed, TicketStatus.waiting_on_customer, TicketStatus.no_reply})

# from -> allowed to. Re-entering triaging from triaging/in_progress is crash recovery:
# a redelivered ticket whose worker died restarts its run.
TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    TicketStatus.received: frozenset({TicketStatus.queued, TicketStatus.triaging, TicketStatus.failed}),
    TicketStatus.queued: frozenset({TicketStatus.triaging, TicketStatus.failed}),
    TicketStatus.triaging: frozenset({TicketStatus.triaging, TicketStatus.in_progress, TicketStatus.escalated, TicketStatus.failed, TicketStatus.queued}),
    TicketStatus.in_progress: frozenset(
        {
            TicketStatus.triaging,
            TicketStatus.awaiting_approval,
            TicketStatus.waiting_on_customer,
            TicketStatus.resolved,
            TicketStatus.escalated,
            TicketStatus.failed,
            TicketStatus.queued,
        }
    ),
    TicketStatus.awaiting_approval: frozenset({TicketStatus.in_progress, TicketStatus.resolved, TicketStatus.escalated, TicketStatus.failed}),
    # answered: resumed; a person takes it; or the customer never answered
    TicketStatus.waiting_on_customer: frozenset({TicketStatus.queued, TicketStatus.escalated, TicketStatus.no_reply}),
    TicketStatus.no_reply: frozenset({TicketStatus.queued}),  # a late reply resumes the question it answers
    TicketStatus.resolved: frozenset({TicketStatus.queued}),  # the customer wrote again: reopened for a new run
    TicketStatus.escalated: frozenset(),
    TicketStatus.failed: frozenset({TicketStatus.queued}),
}


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_tickets_source_external_id"),
        Index("ix_tickets_customer", "customer"),
        Index("ix_tickets_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    customer: Mapped[str] = mapped_column(String(320), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[str | None] = mapped_column(String(16), nullable=True)
    category: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[TicketStatus] = mapped_column(EnumText(TicketStatus, 32), default=TicketStatus.received)
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    triage: Mapped[dict | None] = mapped_column(JSONType, nullable=True)
    resolution: Mapped[dict | None] = mapped_column(JSONType, nullable=True)
    raw: Mapped[dict | None] = mapped_column(JSONType, nullable=True)
    external_status: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the channel's own status (e.g. Jira's), synced in
    backlog_id: Mapped[int | None] = mapped_column(ForeignKey("backlog_imports.id", ondelete="SET NULL"), nullable=True, index=True)
    assigned_to: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the person who took it in the console (a user's name)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def submitted_by(self) -> str | None:
        """The API key's holder who submitted it (crewdesk/api/tickets.py): who may read it, and who may not approve its writes."""
        return (self.raw or {}).get("submitted_by")

    messages: Mapped[list[Message]] = relationship(back_populates="ticket", order_by="Message.id")


class Message(Base):
    """One message on a ticket. Inbound: from the customer. Outbound: our reply to the customer. Internal: a note for
    the team. Outbound and internal messages are handed to the ticket's channel (SMTP, Jira) by the delivery service;
    `delivered_at` and the channel's id for the sent message make that exactly-once from our side."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_external_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    direction: Mapped[str] = mapped_column(String(16))  # inbound | outbound | internal
    author: Mapped[str] = mapped_column(String(320), default="")
    body: Mapped[str] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(512), nullable=True)  # Message-ID, Jira comment id, ...
    meta: Mapped[dict | None] = mapped_column(JSONType, nullable=True)  # channel details: headers, references, attachments
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivery_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ticket: Mapped[Ticket] = relationship(back_populates="messages")

    @property
    def public(self) -> bool:
        return self.direction != "internal"


class Attachment(Base):
    """A file that came with an inbound message, stored by content hash under CREWDESK_HOME/attachments."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255), default="")
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    size: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    stored: Mapped[bool] = mapped_column(Boolean, default=True)
    refused_reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # over the size limit, a refused type: kept as a record only


class TicketLinkKind(StrEnum):
    merged = "merged"  # ticket_id's messages moved to other_id; ticket_id is closed, never answered
    linked = "linked"  # one conversation kept in two tickets: one of them was already being worked on


class TicketLink(Base):
    """Two tickets found to be one conversation (an e-mail thread whose messages arrived out of order): `ticket_id`
    was merged into `other_id`, the thread's ticket, or is linked to it."""

    __tablename__ = "ticket_links"
    __table_args__ = (UniqueConstraint("ticket_id", "other_id", name="uq_ticket_links_pair"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    other_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    kind: Mapped[TicketLinkKind] = mapped_column(EnumText(TicketLinkKind, 16))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class QuestionStatus(StrEnum):
    open = "open"  # asked; the customer has not answered
    answered = "answered"  # a run read the customer's answer and carried on


class Question(Base):
    """One question put to the customer at the end of a run (which item, which variant, confirm a write, a detail the
    request needs), with what the procedure had established (`state`: the customer, the intents, the request, the
    candidates and the writes it proposed), so the customer's answer resumes the ticket from there: nothing already
    known is asked again, and writes already made are not repeated (their idempotency keys hold across turns)."""

    __tablename__ = "ticket_questions"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    turn: Mapped[int] = mapped_column(Integer, default=1)  # 1 for the ticket's first question, 2 after one answer, ...
    status: Mapped[QuestionStatus] = mapped_column(EnumText(QuestionStatus, 16), default=QuestionStatus.open)
    state: Mapped[dict] = mapped_column(JSONType)
    after_message_id: Mapped[int] = mapped_column(Integer, default=0)  # the last inbound message read when it was asked
    answer_message_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    reminded_at: Mapped[datetime | None] = mapped_column(nullable=True)  # the one reminder sent while it waited
