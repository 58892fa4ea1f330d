"""HTTP face: submit a ticket, read its status and audit trail. Processing happens on the queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crewdesk import __version__
from crewdesk.audit import service as audit
from crewdesk.db import make_engine, make_session_factory, transaction
from crewdesk.errors import TicketNotFound
from crewdesk.runs.models import CrewRun
from crewdesk.settings import Settings
from crewdesk.tickets import service as tickets
from crewdesk.tickets.schemas import TicketIn


class SubmitResult(BaseModel):
    ticket_id: int
    status: str
    created: bool = Field(description="False when (source, external_id) was already known: nothing new was queued.")


class AuditRow(BaseModel):
    id: int
    at: datetime
    run_id: int | None
    kind: str
    name: str
    actor: str
    duration_ms: float | None
    error: str | None


class RunView(BaseModel):
    id: int
    status: str
    outcome: str | None
    models: dict[str, str]
    llm_calls: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_s: float | None


class TicketView(BaseModel):
    id: int
    source: str
    external_id: str
    status: str
    status_reason: str | None
    category: str | None
    priority: str | None
    triage: dict[str, Any] | None
    resolution: dict[str, Any] | None
    runs: list[RunView]
    trail: list[AuditRow]


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
    by: str = Field(min_length=1, max_length=128, description="Who decides; recorded in the audit trail.")
    reason: str | None = Field(default=None, max_length=2000)



def create_app(settings: Settings, *, session_factory: sessionmaker[Session] | None = None, enqueue=None) -> FastAPI:
    """`enqueue(ticket_id)` defaults to the Celery task; tests and embedders may pass their own."""
    factory = session_factory or make_session_factory(make_engine(settings.database_url))
    if enqueue is None:
        from workers.app import configure
        from workers.tasks import process_ticket

        configure(settings)
        enqueue = lambda ticket_id: process_ticket.apply_async(args=[ticket_id])  # noqa: E731

    app = FastAPI(title="crewdesk", version=__version__, description="Agentic customer-support worker service.")

    def db() -> Session:
        with factory() as session:
            yield session

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/tickets", response_model=SubmitResult, status_code=202)
    def submit(ticket_in: TicketIn) -> SubmitResult:
        with transaction(factory) as session:
            ticket, created = tickets.submit(db=session, ticket_in=ticket_in)
        if created or ticket.status == "received":
            enqueue(ticket.id)
            with transaction(factory) as session:
                tickets.mark_queued(db=session, ticket_ids=[ticket.id])
                ticket = tickets.get(db=session, ticket_id=ticket.id)
        return SubmitResult(ticket_id=ticket.id, status=ticket.status, created=created)

    @app.get("/tickets/{ticket_id}", response_model=TicketView)
    def show(ticket_id: int, session: Session = Depends(db)) -> TicketView:
        try:
            ticket = tickets.get(db=session, ticket_id=ticket_id)
        except TicketNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        runs = session.execute(select(CrewRun).where(CrewRun.ticket_id == ticket_id).order_by(CrewRun.id)).scalars().all()
        return TicketView(
            id=ticket.id, source=ticket.source, external_id=ticket.external_id, status=ticket.status, status_reason=ticket.status_reason,
            category=ticket.category, priority=ticket.priority, triage=ticket.triage, resolution=ticket.resolution,
            runs=[RunView(id=r.id, status=r.status, outcome=r.outcome, models=r.models, llm_calls=r.llm_calls, tokens_in=r.tokens_in,
                          tokens_out=r.tokens_out, cost_usd=r.cost_usd, latency_s=r.latency_s) for r in runs],
            trail=[AuditRow(id=e.id, at=e.created_at, run_id=e.run_id, kind=e.kind, name=e.name, actor=e.actor, duration_ms=e.duration_ms, error=e.error)
                   for e in audit.trail(db=session, ticket_id=ticket_id)],
        )

    def view(approval) -> ApprovalView:
        return ApprovalView(id=approval.id, ticket_id=approval.ticket_id, action=approval.action, arguments=approval.arguments, status=approval.status,
                            requested_by=approval.requested_by, decided_by=approval.decided_by, reason=approval.reason)

    @app.get("/approvals", response_model=list[ApprovalView])
    def list_approvals(status: str | None = "pending", session: Session = Depends(db)) -> list[ApprovalView]:
        from crewdesk.approvals import service as approvals

        return [view(a) for a in approvals.listing(db=session, status=status or None)]

    def decide(approval_id: int, decision: Decision, approve: bool) -> ApprovalView:
        from crewdesk.approvals.service import ApprovalError
        from crewdesk.llm.factory import LLMFactory
        from crews.approvals import decide as decide_and_resume
        from crews.pipeline import Pipeline

        pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings))
        try:
            approval, _ = decide_and_resume(pipeline=pipeline, approval_id=approval_id, approve=approve, by=decision.by, reason=decision.reason, resume=enqueue)
        except ApprovalError as exc:
            raise HTTPException(status_code=404 if "does not exist" in str(exc) else 409, detail=str(exc)) from exc
        return view(approval)

    @app.post("/approvals/{approval_id}/approve", response_model=ApprovalView)
    def approve(approval_id: int, decision: Decision) -> ApprovalView:
        return decide(approval_id, decision, True)

    @app.post("/approvals/{approval_id}/reject", response_model=ApprovalView)
    def reject(approval_id: int, decision: Decision) -> ApprovalView:
        return decide(approval_id, decision, False)

    return app
