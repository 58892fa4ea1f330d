"""A run its own process stopped (Ctrl-C or SIGTERM on `crewdesk run` or `crewdesk eval`): the run row is marked
interrupted, the ticket goes back to where it waited before the run, with an audit row, and the run's chain is sealed.
The next run (the same command again, a worker, the reconciler) starts it afresh; writes the stopped run made are
replayed from their effect records, never repeated. An evaluation stopped mid-ticket also gets its demo store back.

A run a *dead* worker left `running` is marked by the ticket's next run instead (crews/run_record.begin_run)."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.audit import service as audit
from crewdesk.audit.models import AuditEvent
from crewdesk.db import transaction, utcnow
from crewdesk.logging import get_logger
from crewdesk.runs.models import CrewRun, RunStatus
from crewdesk.store import snapshot
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import TicketStatus

log = get_logger(__name__)


class InterruptedRun(BaseModel):
    """One run left resumable."""

    ticket_id: int
    ticket: str = Field(description="The ticket as `crewdesk show` takes it: SOURCE:EXTERNAL_ID.")
    run_id: int
    status: TicketStatus = Field(description="Where the ticket waits now: queued, or awaiting_approval for a run that resumed approved work.")


def leave_resumable(*, session_factory: sessionmaker[Session], run_ids: Iterable[int], cause: str) -> list[InterruptedRun]:
    """Each of these runs that is still `running`: marked interrupted, its ticket put back and audited, the chain sealed.
    A run that finished meanwhile, or never existed, is left as it is. One transaction per run."""
    left: list[InterruptedRun] = []
    for run_id in sorted(set(run_ids)):
        with transaction(session_factory) as db:
            _wait_briefly_for_locks(db)
            ticket_id = db.execute(select(CrewRun.ticket_id).where(CrewRun.id == run_id)).scalar_one_or_none()
            if ticket_id is None:
                continue
            ticket = tickets.get(db=db, ticket_id=ticket_id, lock=True)  # finish_run takes this lock first too
            run = db.execute(select(CrewRun).where(CrewRun.id == run_id).execution_options(populate_existing=True)).scalar_one()
            if run.status != RunStatus.running:
                continue
            run.status, run.finished_at, run.error = RunStatus.interrupted, utcnow(), f"{cause} before the run finished"
            back_to = _waiting_status(db, run_id)
            if not tickets.is_terminal(ticket) and ticket.status in (TicketStatus.triaging, TicketStatus.in_progress):
                tickets.transition(ticket=ticket, to=back_to)  # no reason: it would outlive the next run; the run row and the audit say it
            audit.record(
                db=db,
                ticket_id=ticket.id,
                run_id=run_id,
                kind="status",
                name="run_interrupted",
                actor="cli",
                result={"cause": cause, "status": ticket.status.value},
            )
            audit.seal(db=db, ticket_id=ticket.id, run_id=run_id)  # the run's end, as finish_run seals a finished one
            left.append(InterruptedRun(ticket_id=ticket.id, ticket=f"{ticket.source}:{ticket.external_id}", run_id=run_id, status=ticket.status))
        log.warning("run.interrupted", ticket_id=ticket_id, run_id=run_id, cause=cause)
    return left


def _waiting_status(db: Session, run_id: int) -> TicketStatus:
    """Where the ticket waited before this run: awaiting_approval when the run resumed approved work (begin_run's
    `resumed` row; the next run then goes on from the stored triage), else queued."""
    resumed = db.execute(
        select(AuditEvent.id).where(AuditEvent.run_id == run_id, AuditEvent.kind == "status", AuditEvent.name == "resumed").limit(1)
    ).scalar_one_or_none()
    return TicketStatus.awaiting_approval if resumed is not None else TicketStatus.queued


def put_back_store(*, session_factory: sessionmaker[Session]) -> bool:
    """The demo store as an evaluation's snapshot holds it, the snapshot dropped: what the evaluation itself does when it
    ends (crews/evaluation.run_eval, crews/eval_examples.run_set), for one stopped mid-ticket. False when there was no
    snapshot (stopped before it was taken)."""
    with transaction(session_factory) as db:
        _wait_briefly_for_locks(db)
        if not inspect(db.connection()).has_table(f"{snapshot.TABLES[0]}_snapshot"):
            return False
        snapshot.restore(db)
        snapshot.drop(db)
    return True


def _wait_briefly_for_locks(db: Session) -> None:
    """The stopped work may hold a row lock in a transaction it will never end (it is blocked in a model call, and the
    process ends without it): give up after 2 s rather than hang; the next run marks what is left."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SET LOCAL lock_timeout = '2s'"))
