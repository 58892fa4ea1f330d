"""Tables: tickets and messages."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crewdesk.db import Base, JSONType, utcnow


class TicketStatus(StrEnum):
    received = "received"
    queued = "queued"
    triaging = "triaging"
    in_progress = "in_progress"
    awaiting_approval = "awaiting_approval"
    resolved = "resolved"
    escalated = "escalated"
    failed = "failed"


TERMINAL = frozenset({TicketStatus.resolved, TicketStatus.escalated, TicketStatus.failed})

# from -> allowed to. Re-entering triaging from triaging/in_progress is crash recovery:
# a redelivered ticket whose worker died restarts its run.
TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    TicketStatus.received: frozenset({TicketStatus.queued, TicketStatus.triaging, TicketStatus.failed}),
    TicketStatus.queued: frozenset({TicketStatus.triaging, TicketStatus.failed}),
    TicketStatus.triaging: frozenset({TicketStatus.triaging, TicketStatus.in_progress, TicketStatus.escalated, TicketStatus.failed, TicketStatus.queued}),
    TicketStatus.in_progress: frozenset({TicketStatus.triaging, TicketStatus.awaiting_approval, TicketStatus.resolved, TicketStatus.escalated, TicketStatus.failed, TicketStatus.queued}),
    TicketStatus.awaiting_approval: frozenset({TicketStatus.in_progress, TicketStatus.resolved, TicketStatus.escalated, TicketStatus.failed}),
    TicketStatus.resolved: frozenset(),
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
    status: Mapped[str] = mapped_column(String(32), default=TicketStatus.received.value)
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    triage: Mapped[dict | None] = mapped_column(JSONType, nullable=True)
    resolution: Mapped[dict | None] = mapped_column(JSONType, nullable=True)
    raw: Mapped[dict | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    messages: Mapped[list[Message]] = relationship(back_populates="ticket", order_by="Message.id")


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    direction: Mapped[str] = mapped_column(String(16))  # inbound | outbound | internal
    author: Mapped[str] = mapped_column(String(320), default="")
    body: Mapped[str] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(512), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
