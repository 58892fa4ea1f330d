"""Tickets waiting on the customer (Celery beat): one reminder after `conversation_remind_after_hours`, in the
customer's language through the ticket's channel, and after `conversation_close_after_hours` the ticket is closed as
`no_reply`. Both are audited. The question stays open: a late reply resumes the ticket from it like any answer.

Safe to run twice or from two workers at once: each ticket is locked and re-read before it is changed, a question is
reminded once (`reminded_at`), and a ticket already closed or answered is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.audit import service as audit
from crewdesk.db import transaction, utcnow
from crewdesk.logging import get_logger
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Question, QuestionStatus, Ticket, TicketStatus

log = get_logger(__name__)


@dataclass
class ReminderReport:
    reminded: list[int] = field(default_factory=list)  # ticket ids
    closed: list[int] = field(default_factory=list)


def _say(replies: dict[str, Any], key: str, language: str, **facts: Any) -> str:
    entry = replies[key]
    return str(entry.get(language) or entry["en"]).format(**facts)


def sweep(
    *,
    session_factory: sessionmaker[Session],
    replies: dict[str, Any],
    remind_after: timedelta | None,
    close_after: timedelta | None,
    now: datetime | None = None,
    deliver: Callable[[int], None] = lambda _ticket_id: None,
) -> ReminderReport:
    """Remind, then close, the tickets waiting on the customer. `deliver(ticket_id)` sends a reminder through the ticket's
    channel after its commit (the worker enqueues the delivery task; tests deliver in place). None: never."""
    now = now or utcnow()
    report = ReminderReport()
    with session_factory() as db:
        waiting = db.execute(
            select(Question.id, Question.ticket_id)
            .join(Ticket, Ticket.id == Question.ticket_id)
            .where(Question.status == QuestionStatus.open, Ticket.status == TicketStatus.waiting_on_customer)
            .order_by(Question.id)
        ).all()
    for question_id, ticket_id in waiting:
        with transaction(session_factory) as db:
            ticket = tickets.get(db=db, ticket_id=ticket_id, lock=True)
            question = db.get(Question, question_id)
            if ticket.status != TicketStatus.waiting_on_customer or question is None or question.status != QuestionStatus.open:
                continue  # answered or closed meanwhile
            waited = now - question.created_at
            language = str((question.state.get("triage") or {}).get("language") or "en")
            if close_after is not None and waited >= close_after:
                tickets.transition(ticket=ticket, to=TicketStatus.no_reply, reason=f"no reply from the customer in {waited.total_seconds() / 3600:.0f} h")
                audit.record(
                    db=db,
                    ticket_id=ticket.id,
                    kind="status",
                    name="no_reply",
                    actor="conversation",
                    result={"question": question.id, "waited_hours": round(waited.total_seconds() / 3600, 1)},
                )
                report.closed.append(ticket.id)
                continue
            if remind_after is not None and waited >= remind_after and question.reminded_at is None:
                days = f"{close_after.total_seconds() / 86400:.0f}" if close_after is not None else ""
                body = "\n\n".join(
                    (
                        _say(replies, "greeting", language),
                        _say(replies, "reminder", language),
                        _say(replies, "reminder_close", language, days=days) if days else "",
                        _say(replies, "closing", language),
                    )
                )
                tickets.add_message(db=db, ticket=ticket, direction="outbound", author="crewdesk", body="\n\n".join(p for p in body.split("\n\n") if p))
                question.reminded_at = now
                audit.record(
                    db=db,
                    ticket_id=ticket.id,
                    kind="conversation",
                    name="reminded",
                    actor="conversation",
                    result={"question": question.id, "waited_hours": round(waited.total_seconds() / 3600, 1)},
                )
                report.reminded.append(ticket.id)
    for ticket_id in report.reminded:
        deliver(ticket_id)
    if report.reminded or report.closed:
        log.info("conversation.swept", reminded=len(report.reminded), closed=len(report.closed))
    return report
