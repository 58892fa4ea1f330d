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
    amount_usd: float = Field(description="Money the write would give back.")
    approvals_needed: int = Field(description="People who must approve it: 2 above the second-approval amount, else 1.")
    approved_by: list[str] = Field(description="Who approved it so far (the first of two while it waits for the second).")


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
        amount_usd=approval.amount_usd,
        approvals_needed=approval.approvals_needed,
        approved_by=approvals.approvers(approval),
    )


@router.get("/approvals", response_model=list[ApprovalView])
def list_approvals(
    session: DbSession, caller: ApprovalDecider, status: Literal["pending", "approved", "rejected", ""] | None = "pending"
) -> list[ApprovalView]:
    return [view(a) for a in approvals.listing(db=session, status=status or None)]


def decide(services: Services, approval_id: int, decision: Decision, approve: bool, caller: Principal) -> ApprovalView:
    """ApprovalNotFound answers 404, ApprovalDecided 409 and ApprovalRefused 403 (crewdesk/api/errors.py). The decider
    is the key's holder, recorded in the audit trail; nobody decides on a write of a ticket they submitted, and above
    the second-approval amount the second approval must come from another key's holder (crews/approvals.py)."""
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
