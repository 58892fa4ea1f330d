"""A person decides an approval: an approved write runs once, through the same gate, and the ticket resumes."""

from __future__ import annotations

from collections.abc import Callable

from crewdesk.approvals import service as approvals
from crewdesk.approvals.models import Approval
from crewdesk.audit import service as audit
from crewdesk.db import transaction
from crewdesk.store.operations import operations
from crews.pipeline import Pipeline


def decide(*, pipeline: Pipeline, approval_id: int, approve: bool, by: str, reason: str | None, resume: Callable[[int], object]) -> tuple[Approval, object]:
    """Record the decision; run the approved write with its original idempotency key; resume the ticket
    once nothing else is pending. Returns the approval and the write's result (or None)."""
    with transaction(pipeline.session_factory) as db:
        approval = approvals.decide(db=db, approval_id=approval_id, approve=approve, by=by, reason=reason)
        audit.record(
            db=db,
            ticket_id=approval.ticket_id,
            run_id=approval.run_id,
            kind="approval",
            name="approved" if approve else "rejected",
            actor=by,
            arguments={"approval_id": approval.id, "action": approval.action},
            result={"reason": reason} if reason else None,
        )
    result = None
    if approve:
        gate = pipeline.gate(ticket_id=approval.ticket_id, run_id=approval.run_id)
        result = gate.run(role=approval.requested_by, operation=operations()[approval.action], arguments=approval.arguments, approved=True)
    with pipeline.session_factory() as db:
        still_pending = approvals.pending_for(db=db, ticket_id=approval.ticket_id)
    if not still_pending:
        resume(approval.ticket_id)
    return approval, result
