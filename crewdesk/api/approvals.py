"""Approvals: list the writes waiting for a person, approve or reject one. An approved write runs here, once, through
its ticket's gate; the ticket goes back on the queue when nothing else of it is pending."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from crewdesk.api.common import BAD_BODY, CONFLICT, NOT_FOUND, Responses, RowId, schema_no_nul
from crewdesk.api.deps import DbSession, Services, ServicesDep
from crewdesk.approvals import service as approvals
from crewdesk.approvals.models import Approval
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

    by: str = Field(min_length=1, max_length=128, description="Who decides; recorded in the audit trail.")
    reason: str | None = Field(default=None, max_length=2000)

    @field_validator("by", "reason")
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
def list_approvals(session: DbSession, status: Literal["pending", "approved", "rejected", ""] | None = "pending") -> list[ApprovalView]:
    return [view(a) for a in approvals.listing(db=session, status=status or None)]


def decide(services: Services, approval_id: int, decision: Decision, approve: bool) -> ApprovalView:
    """ApprovalNotFound answers 404 and ApprovalDecided 409 (crewdesk/api/errors.py)."""
    approval, _ = decide_and_resume(
        gates=services.gates,
        approval_id=approval_id,
        approve=approve,
        by=decision.by,
        reason=decision.reason,
        resume=lambda ticket_id: services.enqueuer([ticket_id]),
    )
    return view(approval)


DECISION_RESPONSES: Responses = {**NOT_FOUND, **BAD_BODY, **CONFLICT}


@router.post("/approvals/{approval_id}/approve", response_model=ApprovalView, responses=DECISION_RESPONSES)
def approve(approval_id: RowId, decision: Decision, services: ServicesDep) -> ApprovalView:
    return decide(services, approval_id, decision, True)


@router.post("/approvals/{approval_id}/reject", response_model=ApprovalView, responses=DECISION_RESPONSES)
def reject(approval_id: RowId, decision: Decision, services: ServicesDep) -> ApprovalView:
    return decide(services, approval_id, decision, False)
