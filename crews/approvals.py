"""A person decides an approval: an approved write runs once, through the same gate, and the ticket resumes.

Deciding needs a ticket's gate, not a crew: `gate_factory(settings, session_factory)` reads the crew config's
permissions once and builds gates as the pipeline does (a face builds it at start and keeps it). A Pipeline has the
same `gate` and `session_factory`, so a caller that already holds one may pass it instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.orm import Session, sessionmaker

from crewdesk.approvals import service as approvals
from crewdesk.approvals.models import Approval, ApprovalStatus
from crewdesk.approvals.service import ApprovalRefused
from crewdesk.audit import service as audit
from crewdesk.connectors.builtin_store import SqlRetailStore
from crewdesk.db import transaction
from crewdesk.settings import Settings
from crewdesk.store.operations import operations
from crewdesk.tickets.models import Ticket
from crews.config import CrewConfig, load_config
from tools.gate import Gate, GateFactory

if TYPE_CHECKING:
    from crews.pipeline import Pipeline


class Gates(Protocol):
    """Where a decided approval's write gets its gate: a GateFactory, or a Pipeline."""

    @property
    def session_factory(self) -> sessionmaker[Session]: ...

    def gate(self, *, ticket_id: int, run_id: int | None) -> Gate: ...


def gate_factory(settings: Settings, session_factory: sessionmaker[Session], *, config: CrewConfig | None = None) -> GateFactory:
    """Gates for deciding approvals, built as the pipeline's are (tools.gate.GateFactory), without the crew: no LLMs,
    router or memory. Reads agents/ and tasks/ once (or takes the crew `config` already read)."""
    config = config or load_config(settings.agents_dir, settings.tasks_dir)
    return GateFactory(settings=settings, session_factory=session_factory, permissions=config.permissions, store_factory=SqlRetailStore)


def decide(
    *,
    gates: Gates | None = None,
    pipeline: Pipeline | None = None,
    approval_id: int,
    approve: bool,
    by: str,
    reason: str | None,
    resume: Callable[[int], object],
) -> tuple[Approval, object]:
    """Record the decision; run the approved write with its original idempotency key; resume the ticket
    once nothing else is pending. Returns the approval and the write's result (or None).

    `by` is the decider: the API key's holder, or the CLI's --by. Nobody decides on a write of a ticket they submitted
    or a write they requested; above the second-approval amount the first approval only records `by` (the approval
    stays pending, nothing runs, the ticket keeps waiting) and a different person's approval makes the write. Every
    decision is an audit row (first_approval, approved, rejected), and so is every refusal (refused), then raised.

    `gates` (e.g. gate_factory(...)) gives the write its gate; `pipeline=` is the same for a caller that holds a
    Pipeline. Pass exactly one."""
    source: Gates | None = gates if pipeline is None else pipeline if gates is None else None
    if source is None:
        raise TypeError("decide() takes exactly one of gates= or pipeline=")
    try:
        with transaction(source.session_factory) as db:
            ticket = db.get(Ticket, approvals.get(db=db, approval_id=approval_id).ticket_id)
            approval = approvals.decide(
                db=db, approval_id=approval_id, approve=approve, by=by, reason=reason, submitted_by=ticket.submitted_by if ticket else None
            )
            first = approval.status == ApprovalStatus.pending  # the first of two approvals: nothing runs yet
            _audit(db, approval, "first_approval" if first else "approved" if approve else "rejected", by=by, reason=reason)
    except ApprovalRefused as refused:
        with transaction(source.session_factory) as db:
            tried = approvals.get(db=db, approval_id=approval_id)
            _audit(db, tried, "refused", by=by, reason=reason, decision="approve" if approve else "reject", error=str(refused))
        raise
    if first:
        return approval, None
    result = None
    if approve:
        gate = source.gate(ticket_id=approval.ticket_id, run_id=approval.run_id)
        result = gate.run(role=approval.requested_by, operation=operations()[approval.action], arguments=approval.arguments, approved=True)
    with source.session_factory() as db:
        still_pending = approvals.pending_for(db=db, ticket_id=approval.ticket_id)
    if not still_pending:
        resume(approval.ticket_id)
    return approval, result


def _audit(db: Session, approval: Approval, name: str, *, by: str, reason: str | None, decision: str | None = None, error: str | None = None) -> None:
    """One audit row of the approval's ticket per decision (first_approval, approved, rejected) and per refusal
    (refused, with what `by` tried and why not): who, on which write, and who has approved it so far."""
    audit.record(
        db=db,
        ticket_id=approval.ticket_id,
        run_id=approval.run_id,
        kind="approval",
        name=name,
        actor=by,
        arguments={"approval_id": approval.id, "action": approval.action} | ({"decision": decision} if decision else {}),
        result={"approved_by": approvals.approvers(approval), "approvals_needed": approval.approvals_needed} | ({"reason": reason} if reason else {}),
        error=error,
    )
