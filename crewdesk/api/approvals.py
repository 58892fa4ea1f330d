"""Approvals: list the writes waiting for a person, approve or reject one. An approved write runs here, once, through
its ticket's gate; the ticket goes back on the queue when nothing else of it is pending."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from crewdesk.api.auth import ApprovalDecider
from crewdesk.api.common import BAD_BODY, CONFLICT, NOT_FOUND, Responses, RowId, schema_no_nul
from crewdesk.api.deps import DbSession, Services, ServicesDep
from crewdesk.api.limits import RATE_LIMITED, TOO_LARGE, ApprovalsLimit
from crewdesk.approvals import service as approvals
from crewdesk.approvals.models import Approval
from crewdesk.auth.service import Principal
from crewdesk.errors import Forbidden
from crewdesk.tickets.models import Ticket
from crews.approvals import decide as decide_and_resume

router = APIRouter()


class ApprovalView(BaseModel):
    id: int
    ticket_id: int
    action: str
    arguments: dict[str, Any]
    status: str
    requested_by: str
    decided_by: str | None
    reason: str | None


class Decision(BaseModel):
    model_config = ConfigDict(json_schema_extra=schema_no_nul)

    reason: str | None = Field(default=None, max_length=2000)

    @field_validator("reason")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("contains NUL bytes")
        return value


def view(approval: Approval) -> ApprovalView:
    return ApprovalView(
        id=approval.id,
        ticket_id=approval.ticket_id,
        action=approval.action,
        arguments=approval.arguments,
        status=approval.status,
        requested_by=approval.requested_by,
        decided_by=approval.decided_by,
        reason=approval.reason,
    )


@router.get("/approvals", response_model=list[ApprovalView])
def list_approvals(
    session: DbSession, caller: ApprovalDecider, status: Literal["pending", "approved", "rejected", ""] | None = "pending"
) -> list[ApprovalView]:
    return [view(a) for a in approvals.listing(db=session, status=status or None)]


def decide(services: Services, approval_id: int, decision: Decision, approve: bool, caller: Principal) -> ApprovalView:
    """ApprovalNotFound answers 404 and ApprovalDecided 409 (crewdesk/api/errors.py). The decider is the key's holder,
    recorded in the audit trail; nobody decides on a write of a ticket they submitted (403)."""
    with services.session_factory() as db:
        approval = approvals.get(db=db, approval_id=approval_id)
        ticket = db.get(Ticket, approval.ticket_id)
        if ticket is not None and ticket.submitted_by == caller.name:
            raise Forbidden(f"{caller.name!r} submitted ticket {ticket.id}: nobody approves their own request")
    approval, _ = decide_and_resume(
        gates=services.gates,
        approval_id=approval_id,
        approve=approve,
        by=caller.name,
        reason=decision.reason,
        resume=lambda ticket_id: services.enqueuer([ticket_id]),
    )
    return view(approval)


DECISION_RESPONSES: Responses = {**NOT_FOUND, **BAD_BODY, **CONFLICT, **TOO_LARGE, **RATE_LIMITED}


@router.post("/approvals/{approval_id}/approve", response_model=ApprovalView, responses=DECISION_RESPONSES)
def approve(approval_id: RowId, decision: Decision, services: ServicesDep, caller: ApprovalDecider, _limit: ApprovalsLimit) -> ApprovalView:
    return decide(services, approval_id, decision, True, caller)


@router.post("/approvals/{approval_id}/reject", response_model=ApprovalView, responses=DECISION_RESPONSES)
def reject(approval_id: RowId, decision: Decision, services: ServicesDep, caller: ApprovalDecider, _limit: ApprovalsLimit) -> ApprovalView:
    return decide(services, approval_id, decision, False, caller)
