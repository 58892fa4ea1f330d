"""What the faces show of tickets, read back from the database: one ticket with its thread, runs and audit trail
(`crewdesk show`), and a batch processed in this process (`crewdesk run`)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from crewdesk.audit import service as audit
from crewdesk.audit.models import AuditEvent
from crewdesk.effects import service as effects
from crewdesk.runs import service as runs
from crewdesk.runs.service import RunSummary
from crewdesk.tickets.models import Message, Question, Ticket
from crewdesk.tickets.schemas import TicketOutcome
from crewdesk.tickets.service import get, lookup, open_question


@dataclass(frozen=True)
class TicketView:
    """Everything recorded about one ticket, loaded: the row, its messages in order, its crew runs and its audit trail."""

    ticket: Ticket
    messages: list[Message]
    runs: list[RunSummary]
    trail: list[AuditEvent]
    question: Question | None = None  # what the ticket waits on the customer for, when it does

    def waiting_on(self) -> str:
        """What the ticket waits on the customer for, in a line: since when, which turn, the points asked."""
        if self.question is None:
            return ""
        points = "; ".join(
            f"{q.get('intent', '')}: {q.get('kind', '')}"
            + (f" ({q['detail'].get('tool', '')} {q['detail'].get('order', '')}, for a yes)" if q.get("kind") == "propose" else "")
            for q in self.question.state.get("questions", [])
        )
        return f"question {self.question.turn} asked {self.question.created_at:%Y-%m-%d %H:%M} UTC, not answered yet ({points})"


def view(*, db: Session, ref: str) -> TicketView:
    """The ticket `ref` names (see lookup) with its thread, runs and audit trail (`crewdesk show`)."""
    ticket = lookup(db=db, ref=ref)
    return TicketView(
        ticket=ticket,
        messages=list(ticket.messages),
        runs=runs.for_ticket(db=db, ticket_id=ticket.id),
        trail=audit.trail(db=db, ticket_id=ticket.id),
        question=open_question(db=db, ticket_id=ticket.id),
    )


@dataclass(frozen=True)
class Processed:
    """One ticket of a batch processed in this process, and what became of it."""

    ticket: Ticket
    run: RunSummary | None  # the run that processed it now; None when nothing ran
    seconds: float  # the run's latency, else the pipeline's own timing
    done: list[str]  # the writes completed in the store for it: "tool order_id"
    note: str  # "already processed" when nothing ran, else why the ticket has its status
    reply: str | None  # what the customer receives, when a run now answered them


@dataclass(frozen=True)
class BatchReport:
    """A batch processed in this process (`crewdesk run`): each ticket, outcomes by status and the typical time."""

    tickets: list[Processed]
    by_status: dict[str, int]  # ordered by status
    median_seconds: float | None  # per ticket that ran now (None when every one was already processed)


def batch_report(*, db: Session, outcomes: Sequence[TicketOutcome]) -> BatchReport:
    """Read back what processing `outcomes` left in the database."""
    processed = []
    for outcome in outcomes:
        ticket = get(db=db, ticket_id=outcome.ticket_id)
        run = runs.get(db=db, run_id=outcome.run_id) if outcome.run_id else None
        done = [f"{e.tool} {e.arguments.get('order_id', '')}".strip() for e in effects.for_ticket(db=db, ticket_id=ticket.id)]
        reply = ticket.resolution.get("customer_reply", "") if ticket.resolution and not outcome.reused else None
        processed.append(
            Processed(
                ticket=ticket,
                run=run,
                seconds=run.latency_s if run and run.latency_s is not None else outcome.seconds,
                done=done,
                note="already processed" if outcome.reused else ticket.status_reason or "",
                reply=reply,
            )
        )
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    fresh = [o.seconds for o in outcomes if not o.reused]
    return BatchReport(tickets=processed, by_status=dict(sorted(counts.items())), median_seconds=statistics.median(fresh) if fresh else None)
