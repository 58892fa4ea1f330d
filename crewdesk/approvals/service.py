"""Approvals: a write above the threshold waits for a person; a decision is recorded once.

Who may decide: anyone but who asked for the write (the crew's role that requested it, and the API key holder who
submitted the ticket). A write whose refund brings the customer's total above the second-approval amount needs two
approvals by two different people: the first leaves it pending with the first approver recorded, the second approves
it. A rejection by either rejects it. A refund waiting for approval counts toward the customer's limits (`waiting`)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from crewdesk.approvals.models import Approval, ApprovalStatus
from crewdesk.db import utcnow
from crewdesk.errors import Conflict, CrewdeskError, Forbidden, NotFound


class ApprovalError(CrewdeskError):
    pass


class ApprovalNotFound(ApprovalError, NotFound):
    pass


class ApprovalDecided(ApprovalError, Conflict):
    """The approval was already approved or rejected."""


class ApprovalRefused(ApprovalError, Forbidden):
    """This person may not decide this approval: they asked for the write, or they already gave it its first approval."""


def request(
    *,
    db: Session,
    ticket_id: int,
    run_id: int | None,
    action: str,
    arguments: dict,
    idempotency_key: str,
    requested_by: str,
    reason: str,
    customer_ref: str | None = None,
    amount_usd: float = 0.0,
    approvals_needed: int = 1,
) -> Approval:
    """One approval per idempotency key: asking again for the same write returns the first request. `customer_ref` is
    the ticket's bound customer and `amount_usd` the money the write would give back (both count toward the customer's
    limits while it waits, and the approved write is recorded as theirs); `approvals_needed` is 1 or 2."""
    existing = by_key(db=db, idempotency_key=idempotency_key)
    if existing is not None:
        return existing
    approval = Approval(
        ticket_id=ticket_id,
        run_id=run_id,
        action=action,
        arguments=arguments,
        idempotency_key=idempotency_key,
        requested_by=requested_by,
        reason=reason,
        customer_ref=customer_ref,
        amount_usd=amount_usd,
        approvals_needed=approvals_needed,
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


def waiting(*, db: Session, ticket_id: int, customer_ref: str | None, within: timedelta, besides: str) -> float:
    """Money that writes waiting for a person would give back on this ticket, or to this customer within `within`,
    other than the write `besides` (an idempotency key): exposure, counted toward the threshold as if given, so that a
    small refund asked for while a bigger one waits adds up with it."""
    scope = Approval.ticket_id == ticket_id
    if customer_ref:
        scope = or_(scope, (Approval.customer_ref == customer_ref) & (Approval.created_at > utcnow() - within))
    stmt = select(func.coalesce(func.sum(Approval.amount_usd), 0.0)).where(
        scope, Approval.status == ApprovalStatus.pending, Approval.idempotency_key != besides
    )
    return float(db.execute(stmt).scalar_one())


def approvers(approval: Approval) -> list[str]:
    """Who approved it so far: the first of two while it waits for the second, both (or the one) once approved."""
    names = [approval.first_approved_by] if approval.first_approved_by else []
    if approval.status == ApprovalStatus.approved and approval.decided_by:
        names.append(approval.decided_by)
    return names


def pending_for(*, db: Session, ticket_id: int) -> list[Approval]:
    return listing(db=db, status=ApprovalStatus.pending, ticket_id=ticket_id)


def get(*, db: Session, approval_id: int) -> Approval:
    approval = db.get(Approval, approval_id)
    if approval is None:
        raise ApprovalNotFound(f"approval {approval_id} does not exist")
    return approval


def decide(*, db: Session, approval_id: int, approve: bool, by: str, reason: str | None = None, submitted_by: str | None = None) -> Approval:
    """Record `by`'s decision; `submitted_by` is who submitted the approval's ticket. An approval that needs two and
    has none yet stays pending with `by` as its first approver: the caller checks `status` before making the write.
    ApprovalRefused (403) when `by` asked for the write or gave it its first approval already."""
    approval = db.execute(select(Approval).where(Approval.id == approval_id).with_for_update()).scalar_one_or_none()
    if approval is None:
        raise ApprovalNotFound(f"approval {approval_id} does not exist")
    if approval.status != ApprovalStatus.pending:
        raise ApprovalDecided(f"approval {approval_id} was already {approval.status} by {approval.decided_by}")
    if by == submitted_by:
        raise ApprovalRefused(f"{by!r} submitted ticket {approval.ticket_id}: nobody approves their own request")
    if by == approval.requested_by:
        raise ApprovalRefused(f"{by!r} requested this write: nobody approves their own request")
    if approve and by == approval.first_approved_by:
        raise ApprovalRefused(f"{by!r} gave approval {approval_id} its first approval already: the second must come from a different person")
    if approve and approval.approvals_needed > 1 and approval.first_approved_by is None:
        approval.first_approved_by, approval.first_approved_at = by, utcnow()
        if reason:
            approval.reason = f"{approval.reason or ''} | first approval: {reason}".strip(" |")
        return approval
    approval.status = ApprovalStatus.approved if approve else ApprovalStatus.rejected
    approval.decided_by = by
    approval.decided_at = utcnow()
    if reason:
        approval.reason = f"{approval.reason or ''} | decision: {reason}".strip(" |")
    return approval
