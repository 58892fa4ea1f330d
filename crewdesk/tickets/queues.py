"""The queues a person works from (the support console, issue 22): tickets that need a person, wait on an approval,
wait on the customer or failed, with counts, filters (channel, category, priority, language, age) and a search by text, customer or
order number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from crewdesk.db import utcnow
from crewdesk.tickets.models import Ticket, TicketStatus

# The console's queues, in the order it shows them: the name in its URL, the statuses it holds, its title.
QUEUES: dict[str, tuple[frozenset[TicketStatus], str]] = {
    "escalated": (frozenset({TicketStatus.escalated}), "Needs a person"),
    "approval": (frozenset({TicketStatus.awaiting_approval}), "Awaiting approval"),
    "customer": (frozenset({TicketStatus.waiting_on_customer, TicketStatus.no_reply}), "Waiting on the customer"),
    "failed": (frozenset({TicketStatus.failed}), "Failed"),
}
SHOWN = 200  # tickets listed per page of a queue, newest change first


@dataclass(frozen=True)
class QueueFilter:
    """What narrows a queue; empty strings (and 0) narrow nothing. `text` matches the subject, the body, the customer or
    the ticket's external id (an order number is in the body, as the customer wrote it); `older_than_hours` keeps the
    tickets that have not changed for that long."""

    source: str = ""
    category: str = ""
    priority: str = ""
    language: str = ""
    text: str = ""
    older_than_hours: int = 0


def asked(*, queue: str, source: str, category: str, priority: str, language: str, q: str, older: int) -> tuple[str, QueueFilter]:
    """A queue page's query as the console reads it: a known queue (else escalated) and its filter (the search cut to
    200 characters); the page and its live counts read it the same way."""
    chosen = queue if queue in QUEUES else "escalated"
    return chosen, QueueFilter(source=source, category=category, priority=priority, language=language, text=q[:200], older_than_hours=older)


@dataclass(frozen=True)
class Queue:
    name: str
    title: str
    count: int  # the queue's tickets under the filter
    tickets: list[Ticket]  # the first SHOWN of them, when this queue is the one asked for; else empty


def _language_value() -> ColumnElement[str]:
    """The language the router detected, kept in the ticket's triage."""
    return Ticket.triage["language"].as_string()


def _filtered(stmt: Select, narrow: QueueFilter) -> Select:
    if narrow.source:
        stmt = stmt.where(Ticket.source == narrow.source)
    if narrow.category:
        stmt = stmt.where(Ticket.category == narrow.category)
    if narrow.priority:
        stmt = stmt.where(Ticket.priority == narrow.priority)
    if narrow.older_than_hours > 0:
        stmt = stmt.where(Ticket.updated_at < utcnow() - timedelta(hours=narrow.older_than_hours))
    if narrow.language:
        stmt = stmt.where(_language_value() == narrow.language)
    if narrow.text.strip():
        pattern = "%" + narrow.text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(*(column.ilike(pattern, escape="\\") for column in (Ticket.subject, Ticket.body, Ticket.customer, Ticket.external_id))))
    return stmt


def queues(*, db: Session, shown: str, narrow: QueueFilter) -> list[Queue]:
    """Every queue with its count under `narrow`; the tickets of the one named `shown`."""
    result = []
    for name, (statuses, title) in QUEUES.items():
        count = db.execute(_filtered(select(func.count(Ticket.id)).where(Ticket.status.in_(statuses)), narrow)).scalar_one()
        tickets: list[Ticket] = []
        if name == shown:
            stmt = _filtered(select(Ticket).where(Ticket.status.in_(statuses)), narrow).order_by(Ticket.updated_at.desc(), Ticket.id.desc()).limit(SHOWN)
            tickets = list(db.execute(stmt).scalars())
        result.append(Queue(name=name, title=title, count=count, tickets=tickets))
    return result


def choices(*, db: Session) -> dict[str, list[str]]:
    """The values the filters offer: the channels, categories and languages tickets have."""
    return {
        "source": sorted(v for (v,) in db.execute(select(Ticket.source).distinct()) if v),
        "category": sorted(v for (v,) in db.execute(select(Ticket.category).distinct()) if v),
        "priority": sorted(v for (v,) in db.execute(select(Ticket.priority).distinct()) if v),
        "language": sorted(v for (v,) in db.execute(select(_language_value()).distinct()) if v),
    }
