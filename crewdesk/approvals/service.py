"""Approvals: a write above the threshold waits for a person; a decision is recorded once."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crewdesk.approvals.models import Approval, ApprovalStatus
from crewdesk.db import utcnow
from crewdesk.errors import Conflict, CrewdeskError, NotFound


class ApprovalError(CrewdeskError):
    pass


class ApprovalNotFound(ApprovalError, NotFound):
    pass


class ApprovalDecided(ApprovalError, Conflict):
    """The approval was already approved or rejected."""


def request(*, db: Session, ticket_id: int, run_id: int | None, action: str, arguments: dict, idempotency_key: str, requested_by: str, reason: str) -> Approval:
    """One approval per idempotency key: asking again for the same write returns the first request."""
    existing = by_key(db=db, idempotency_key=idempotency_key)
    if existing is not None:
        return existing
    approval = Approval(
        ticket_id=ticket_id, run_id=run_id, action=action, arguments=arguments, idempotency_key=idempotency_key, requested_by=requested_by, reason=reason
    )
    db.add(approval)
    db.flush()
    return approval


def by_key(*, db: Session, idempotency_key: str) -> Approval | None:
    return db.execute(select(Approval).where(Approval.idempotency_key == idempotency_key)).scalar_one_or_none()


def listing(*, db: Session, status: str | None = "pending", ticket_id: int | None = None) -> list[Approval]:
    stmt = select(Approval).order_by(Approval.id)
    if status:
        stmt = stmt.where(Approval.status == status)
    if ticket_id is not None:
        stmt = stmt.where(Approval.ticket_id == ticket_id)
    return list(db.execute(stmt).scalars())


def pending_for(*, db: Session, ticket_id: int) -> list[Approval]:
    return listing(db=db, status=ApprovalStatus.pending, ticket_id=ticket_id)


def get(*, db: Session, approval_id: int) -> Approval:
    approval = db.get(Approval, approval_id)
    if approval is None:
        raise ApprovalNotFound(f"approval {approval_id} does not exist")
    return approval


def decide(*, db: Session, approval_id: int, approve: bool, by: str, reason: str | None = None) -> Approval:
    approval = db.execute(select(Approval).where(Approval.id == approval_id).with_for_update()).scalar_one_or_none()
    if approval is None:
        raise ApprovalNotFound(f"approval {approval_id} does not exist")
    if approval.status != ApprovalStatus.pending:
        raise ApprovalDecided(f"approval {approval_id} was already {approval.status} by {approval.decided_by}")
    approval.status = ApprovalStatus.approved if approve else ApprovalStatus.rejected
    approval.decided_by = by
    approval.decided_at = utcnow()
    if reason:
        approval.reason = f"{approval.reason or ''} | decision: {reason}".strip(" |")
    return approval
