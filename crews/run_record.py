"""The database side of one run of a ticket: begin it (nothing to run for a finished ticket, a run cut short by a
dead worker marked interrupted, a new run row, the ticket in triaging or in progress) and finish it (the ticket's
status, the reply and the team's note, the run's tokens, cost and latency, the audit seal; a ticket the customer
wrote to during the run is queued again)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.approvals import service as approvals
from crewdesk.audit import service as audit
from crewdesk.db import transaction, utcnow
from crewdesk.llm.factory import estimate_cost
from crewdesk.runs.models import CrewRun, RunStatus
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Question, QuestionStatus, Ticket, TicketStatus
from crewdesk.tickets.schemas import MAX_BODY_CHARS, TicketOutcome, Triage
from crews.builder import Work
from tools.gate import Gate


def begin_run(session_factory: sessionmaker[Session], ticket_id: int, celery_task_id: str | None, *, gate: Callable[..., Gate]) -> Work | TicketOutcome:
    """The run's work (its new run row committed, the ticket in triaging or in_progress), or the outcome when there
    is nothing to run (already finished, waiting for approval, or invalid)."""
    with transaction(session_factory) as db:
        ticket = tickets.get(db=db, ticket_id=ticket_id, lock=True)
        waiting = ticket.status == TicketStatus.awaiting_approval and approvals.pending_for(db=db, ticket_id=ticket.id)
        if tickets.is_terminal(ticket) or waiting:
            last = (
                db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket_id, CrewRun.status == RunStatus.completed).order_by(CrewRun.id.desc()))
                .scalars()
                .first()
            )
            return TicketOutcome(
                ticket_id=ticket.id, run_id=last.id if last else None, status=ticket.status, category=ticket.category, priority=ticket.priority, reused=True
            )
        problem = _validate(ticket)
        if problem:
            tickets.transition(ticket=ticket, to=TicketStatus.failed, reason=problem)
            audit.record(db=db, ticket_id=ticket.id, kind="status", name="failed", actor="pipeline", error=problem)
            return TicketOutcome(ticket_id=ticket.id, run_id=None, status=ticket.status)
        interrupted = cast(
            CursorResult,
            db.execute(
                update(CrewRun)
                .where(CrewRun.ticket_id == ticket_id, CrewRun.status == RunStatus.running)
                .values(status=RunStatus.interrupted, finished_at=utcnow(), error="worker stopped before the run finished"),
            ),
        ).rowcount
        if interrupted:
            audit.record(db=db, ticket_id=ticket.id, kind="status", name="run_interrupted", actor="pipeline", result={"runs": interrupted})
        conversation = tickets.conversation(db=db, ticket=ticket)
        read_up_to = tickets.last_inbound_id(db=db, ticket_id=ticket.id)  # what this run has seen of the thread
        run = CrewRun(ticket_id=ticket.id, process="sequential", celery_task_id=celery_task_id)
        db.add(run)
        resuming = ticket.status == TicketStatus.awaiting_approval
        tickets.transition(ticket=ticket, to=TicketStatus.in_progress if resuming else TicketStatus.triaging)
        db.flush()
        audit.record(db=db, ticket_id=ticket.id, run_id=run.id, kind="status", name="resumed" if resuming else "triaging", actor="pipeline")
    return Work(
        ticket=ticket,
        run_id=run.id,
        text=conversation or ticket.body,
        read_up_to=read_up_to,
        gate=gate(ticket_id=ticket.id, run_id=run.id, customer=ticket.customer),
    )


def _conversation(db: Session, work: Work, status: TicketStatus) -> None:
    """The question this run answered is answered, and the one it asks is recorded: with the run's status, or not at all."""
    if work.answering is not None:
        answered = db.get(Question, work.answering[0])
        if answered is not None and answered.status == QuestionStatus.open:
            tickets.mark_answered(question=answered, message_id=work.answering[1])
    if work.asking is not None and status is TicketStatus.waiting_on_customer:
        question = tickets.ask(db=db, ticket_id=work.ticket.id, run_id=work.run_id, state=work.asking, after_message_id=work.read_up_to)
        audit.record(
            db=db,
            ticket_id=work.ticket.id,
            run_id=work.run_id,
            kind="conversation",
            name="asked",
            actor="procedure",
            result={"question": question.id, "turn": question.turn, "points": [f"{q.get('intent')}: {q.get('kind')}" for q in work.asking["questions"]]},
        )


def _validate(ticket: Ticket) -> str | None:
    if not (ticket.body or "").strip():
        return "ticket has no message text"
    if len(ticket.body) > MAX_BODY_CHARS:
        return f"ticket text is {len(ticket.body)} characters; the limit is {MAX_BODY_CHARS}"
    return None


def finish_run(
    session_factory: sessionmaker[Session],
    work: Work,
    started: float,
    *,
    status: TicketStatus,
    reason: str | None,
    reply: str | None = None,
    note: str | None = None,
    triage: Triage | None = None,
    run_status: RunStatus = RunStatus.completed,
    error: str | None = None,
) -> TicketOutcome:
    seconds = time.perf_counter() - started
    ticket, run_id, ledger = work.ticket, work.run_id, work.ledger
    concealed_reply = work.gate.vault.conceal(reply) if reply else None  # the audit keeps tokens, the message real text
    with transaction(session_factory) as db:
        row = tickets.get(db=db, ticket_id=ticket.id, lock=True)
        if TicketStatus(row.status) != status:
            tickets.transition(ticket=row, to=status, reason=reason)
        else:
            row.status_reason = reason
        if reply:
            db.add(Message(ticket_id=row.id, direction="outbound", author="crewdesk", body=reply))
            audit.record(db=db, ticket_id=row.id, run_id=run_id, kind="reply", name="customer_reply", actor="pipeline", result={"body": concealed_reply})
        if note:
            db.add(Message(ticket_id=row.id, direction="internal", author="crewdesk", body=note))
        if reply is not None:
            row.resolution = {"customer_reply": reply, "internal_note": note or "", "status": status.value, "reason": reason}
        costs = sum(estimate_cost(model, t_in, t_out) for model, (t_in, t_out) in ledger.per_model().items())
        db.execute(
            update(CrewRun)
            .where(CrewRun.id == run_id)
            .values(
                status=run_status,
                outcome=status.value,
                error=error,
                models=ledger.models,
                tokens_in=ledger.tokens_in,
                tokens_out=ledger.tokens_out,
                tokens_cached=ledger.tokens_cached,
                llm_calls=ledger.calls,
                llm_seconds=ledger.llm_seconds,
                cost_usd=costs,
                latency_s=seconds,
                finished_at=utcnow(),
            )
        )
        if run_status is RunStatus.completed:
            _conversation(db, work, status)
        audit.record(db=db, ticket_id=row.id, run_id=run_id, kind="status", name=status.value, actor="pipeline", result={"reason": reason} if reason else None)
        requeue = False
        if status in (TicketStatus.resolved, TicketStatus.waiting_on_customer) and tickets.last_inbound_id(db=db, ticket_id=row.id) > work.read_up_to:
            # The customer wrote again while the crew worked: answer that too rather than leave it unread (an answer
            # to the question this run asked resumes it).
            tickets.transition(ticket=row, to=TicketStatus.queued, reason="reopened: the customer wrote during the run")
            audit.record(db=db, ticket_id=row.id, run_id=run_id, kind="status", name="reopened", actor="pipeline")
            requeue = True
        audit.seal(db=db, ticket_id=row.id, run_id=run_id)  # the run's chain head into the global seal log
    return TicketOutcome(
        ticket_id=ticket.id,
        run_id=run_id,
        status=status.value,
        category=ticket.category,
        priority=ticket.priority,
        escalation_reason=reason if status is TicketStatus.escalated else None,
        seconds=seconds,
        requeue=requeue,
    )
