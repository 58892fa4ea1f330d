"""HTTP face: submit a ticket, read its status and trail, decide approvals, receive Jira webhooks. Processing
happens on the queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from crewdesk import __version__
from crewdesk.audit import service as audit
from crewdesk.db import make_engine, make_session_factory, transaction
from crewdesk.errors import TicketNotFound
from crewdesk.intake import jira as jira_intake
from crewdesk.intake.admit import Stored, admit
from crewdesk.intake.enqueue import Enqueuer, Send
from crewdesk.runs.models import CrewRun
from crewdesk.settings import Settings
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message
from crewdesk.tickets.schemas import TicketIn

# Row ids are PostgreSQL integers: a larger id is a 422, not a database error.
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
MAX_WEBHOOK_BYTES = 1_000_000  # the largest fixture is 47 kB; anything near this is not a Jira delivery


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


def _schema_no_nul(schema: dict[str, Any], _model: type) -> None:
    """Publish the NUL-byte rule TicketIn and Decision enforce: PostgreSQL text cannot hold NUL."""
    for prop in schema.get("properties", {}).values():
        for branch in (prop, *prop.get("anyOf", [])):
            if branch.get("type") == "string" and "enum" not in branch:
                branch["pattern"] = "^[^\\u0000]*$"


class Decision(BaseModel):
    model_config = ConfigDict(json_schema_extra=_schema_no_nul)

    by: str = Field(min_length=1, max_length=128, description="Who decides; recorded in the audit trail.")
    reason: str | None = Field(default=None, max_length=2000)

    @field_validator("by", "reason")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("contains NUL bytes")
        return value


class TicketSubmission(TicketIn):
    """POST /tickets: a ticket as TicketIn, except that external_id must be a JSON string, as the schema says
    (files may carry numeric ids; an HTTP client can quote its own)."""

    model_config = ConfigDict(json_schema_extra=_schema_no_nul)

    @field_validator("external_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return value


class Health(BaseModel):
    status: Literal["ok"]


class ErrorView(BaseModel):
    detail: str


class MessageView(BaseModel):
    id: int
    direction: str = Field(description="inbound (customer), outbound (our reply) or internal (a note for the team).")
    author: str
    body: str
    external_id: str | None = Field(description="The channel's id: Message-ID, Jira comment id.")
    created_at: datetime
    delivered_at: datetime | None
    delivery_error: str | None


class TrailView(BaseModel):
    ticket_id: int
    status: str
    external_status: str | None = Field(description="The channel's own status, e.g. the Jira issue's.")
    messages: list[MessageView]
    events: list[AuditRow]


class WebhookAck(BaseModel):
    status: Literal["accepted", "duplicate", "ignored", "rejected"]
    ticket_id: int | None
    reason: str | None = None


Responses = dict[int | str, dict[str, Any]]  # FastAPI's `responses=`
NOT_FOUND: Responses = {404: {"model": ErrorView, "description": "No such row."}}
BAD_BODY: Responses = {400: {"model": ErrorView, "description": "The body could not be read (not UTF-8)."}}
WEBHOOK_ERRORS: Responses = {
    400: {"model": ErrorView, "description": "Malformed X-Hub-Signature, or a body that is not a JSON object."},
    401: {"model": ErrorView, "description": "Missing or forged X-Hub-Signature."},
    413: {"model": ErrorView, "description": "Body over 1 MB."},
    429: {"model": ErrorView, "description": "Too many refused deliveries from this address: counted, not recorded one by one (Retry-After)."},
    503: {"model": ErrorView, "description": "No webhook secret is configured: every delivery is refused (Jira retries it later)."},
}
WEBHOOK_BODY = {
    "requestBody": {
        "required": True,
        "description": "A Jira webhook delivery, signed in X-Hub-Signature.",
        "content": {"application/json": {"schema": jira_intake.PAYLOAD_SCHEMA}},
    },
    "parameters": [
        {
            "name": "X-Hub-Signature",
            "in": "header",
            "required": True,
            "description": "sha256=<hex HMAC-SHA256 of the raw body with the webhook secret>",
            "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
        },
        {
            "name": "X-Atlassian-Webhook-Identifier",
            "in": "header",
            "required": False,
            "description": "Jira Cloud's delivery id, repeated on retries: a repeat is processed once.",
            "schema": {"type": "string"},
        },
    ],
}


def _metrics_registry(factory: sessionmaker[Session], settings: Settings):
    """A registry of this app's own: the database/broker collector and this process's CPU and memory."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    from crewdesk.metrics.collector import DatabaseCollector
    from crewdesk.queues import Queue

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(factory, settings, queues=[q.value for q in Queue]))
    ProcessCollector(registry=registry)
    return registry


def create_app(settings: Settings, *, session_factory: sessionmaker[Session] | None = None, send: Send | None = None) -> FastAPI:
    """`send(ticket_ids)` puts tickets on the broker's queue; it defaults to Celery's (workers.app.ticket_sender), and
    tests and embedders may pass their own. Tickets reach it only through the Enqueuer (crewdesk/intake/enqueue.py)."""
    factory = session_factory or make_session_factory(make_engine(settings.database_url))
    if send is None:
        from workers.app import configure, ticket_sender

        send = ticket_sender(configure(settings))
    enqueuer = Enqueuer(session_factory=factory, send=send)

    app = FastAPI(title="crewdesk", version=__version__, description="Agentic customer-support worker service.")
    refusals = jira_intake.RefusalLimiter(settings.jira_refusals_per_minute)

    def db() -> Iterator[Session]:
        with factory() as session:
            yield session

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        return Health(status="ok")

    metrics_registry = _metrics_registry(factory, settings)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus text format: tickets, approvals, tool calls, queue depth, breaker state, read at scrape time
        (crewdesk/metrics/collector.py)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/tickets", response_model=SubmitResult, status_code=202, responses=BAD_BODY)
    def submit(ticket_in: TicketSubmission) -> SubmitResult:
        with transaction(factory) as session:
            ticket, created = tickets.submit(db=session, ticket_in=ticket_in)
        if admit([Stored(ticket.id, needs_run=created or ticket.status == "received")], enqueuer=enqueuer).queued:
            with factory() as session:
                ticket = tickets.get(db=session, ticket_id=ticket.id)
        return SubmitResult(ticket_id=ticket.id, status=ticket.status, created=created)

    @app.get("/tickets/{ticket_id}", response_model=TicketView, responses=NOT_FOUND)
    def show(ticket_id: RowId, session: Session = Depends(db)) -> TicketView:
        try:
            ticket = tickets.get(db=session, ticket_id=ticket_id)
        except TicketNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        runs = session.execute(select(CrewRun).where(CrewRun.ticket_id == ticket_id).order_by(CrewRun.id)).scalars().all()
        return TicketView(
            id=ticket.id,
            source=ticket.source,
            external_id=ticket.external_id,
            status=ticket.status,
            status_reason=ticket.status_reason,
            category=ticket.category,
            priority=ticket.priority,
            triage=ticket.triage,
            resolution=ticket.resolution,
            runs=[
                RunView(
                    id=r.id,
                    status=r.status,
                    outcome=r.outcome,
                    models=r.models,
                    llm_calls=r.llm_calls,
                    tokens_in=r.tokens_in,
                    tokens_out=r.tokens_out,
                    cost_usd=r.cost_usd,
                    latency_s=r.latency_s,
                )
                for r in runs
            ],
            trail=[
                AuditRow(id=e.id, at=e.created_at, run_id=e.run_id, kind=e.kind, name=e.name, actor=e.actor, duration_ms=e.duration_ms, error=e.error)
                for e in audit.trail(db=session, ticket_id=ticket_id)
            ],
        )

    @app.get("/tickets/{ticket_id}/trail", response_model=TrailView, responses=NOT_FOUND)
    def trail(ticket_id: RowId, session: Session = Depends(db)) -> TrailView:
        """The ticket's messages in order, and its audit events."""
        try:
            ticket = tickets.get(db=session, ticket_id=ticket_id)
        except TicketNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        messages = session.execute(select(Message).where(Message.ticket_id == ticket_id).order_by(Message.id)).scalars()
        return TrailView(
            ticket_id=ticket.id,
            status=ticket.status,
            external_status=ticket.external_status,
            messages=[
                MessageView(
                    id=m.id,
                    direction=m.direction,
                    author=m.author,
                    body=m.body,
                    external_id=m.external_id,
                    created_at=m.created_at,
                    delivered_at=m.delivered_at,
                    delivery_error=m.delivery_error,
                )
                for m in messages
            ],
            events=[
                AuditRow(id=e.id, at=e.created_at, run_id=e.run_id, kind=e.kind, name=e.name, actor=e.actor, duration_ms=e.duration_ms, error=e.error)
                for e in audit.trail(db=session, ticket_id=ticket_id)
            ],
        )

    def view(approval) -> ApprovalView:
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

    @app.get("/approvals", response_model=list[ApprovalView])
    def list_approvals(status: Literal["pending", "approved", "rejected", ""] | None = "pending", session: Session = Depends(db)) -> list[ApprovalView]:
        from crewdesk.approvals import service as approvals

        return [view(a) for a in approvals.listing(db=session, status=status or None)]

    def decide(approval_id: int, decision: Decision, approve: bool) -> ApprovalView:
        from crewdesk.approvals.service import ApprovalError
        from crewdesk.llm.factory import LLMFactory
        from crews.approvals import decide as decide_and_resume
        from crews.pipeline import Pipeline

        pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings))
        try:
            approval, _ = decide_and_resume(
                pipeline=pipeline,
                approval_id=approval_id,
                approve=approve,
                by=decision.by,
                reason=decision.reason,
                resume=lambda ticket_id: enqueuer([ticket_id]),
            )
        except ApprovalError as exc:
            raise HTTPException(status_code=404 if "does not exist" in str(exc) else 409, detail=str(exc)) from exc
        return view(approval)

    @app.post("/approvals/{approval_id}/approve", response_model=ApprovalView, responses={**NOT_FOUND, **BAD_BODY, 409: {"model": ErrorView}})
    def approve(approval_id: RowId, decision: Decision) -> ApprovalView:
        return decide(approval_id, decision, True)

    @app.post("/approvals/{approval_id}/reject", response_model=ApprovalView, responses={**NOT_FOUND, **BAD_BODY, 409: {"model": ErrorView}})
    def reject(approval_id: RowId, decision: Decision) -> ApprovalView:
        return decide(approval_id, decision, False)

    def receive_jira(body: bytes, headers: dict[str, str], remote: str | None, too_large: bool) -> WebhookAck:
        """Authenticate, record and apply one delivery in one short transaction; the crew runs on the queue."""
        evidence = {
            "remote": remote,
            "bytes": len(body),
            "headers": {
                k: v[:200].replace("\x00", "")
                for k, v in headers.items()
                if k in ("user-agent", "content-type", "x-hub-signature", "x-atlassian-webhook-identifier", "x-atlassian-webhook-retry", "x-forwarded-for")
            },
        }

        def refuse(status_code: int, reason: str) -> HTTPException:
            admitted, suppressed = refusals.admit(remote)
            if not admitted:
                return HTTPException(
                    status_code=429,
                    detail=f"too many refused deliveries from {remote}; this one ({reason}) is counted, not recorded",
                    headers={"Retry-After": str(refusals.retry_after(remote))},
                )
            with transaction(factory) as session:
                jira_intake.record_refused(
                    db=session, body=body, reason=reason, detail={**evidence, "suppressed_before": suppressed} if suppressed else evidence
                )
            return HTTPException(status_code=status_code, detail=reason)

        if too_large:
            raise refuse(413, f"body over {MAX_WEBHOOK_BYTES} bytes")
        try:
            jira_intake.verify_signature(settings.jira_webhook_secret.get_secret_value(), body, headers.get("x-hub-signature"))
        except jira_intake.WebhookNotConfigured as exc:
            raise refuse(503, str(exc)) from exc
        except jira_intake.SignatureMalformed as exc:
            raise refuse(400, str(exc)) from exc
        except jira_intake.SignatureError as exc:  # missing or forged
            raise refuse(401, str(exc)) from exc
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise refuse(400, f"body is not JSON: {str(exc)[:200]}") from exc
        if not isinstance(payload, dict):
            raise refuse(400, f"body is JSON {type(payload).__name__}, not an object")
        event = jira_intake.parse_event(payload)
        delivery_id = jira_intake.delivery_key(body=body, identifier=headers.get("x-atlassian-webhook-identifier"))
        with transaction(factory) as session:
            outcome = jira_intake.handle_event(db=session, event=event, delivery_id=delivery_id, settings=settings, detail=evidence)
        admit([outcome], enqueuer=enqueuer)  # after the commit: the worker always finds the ticket and its message
        return WebhookAck(status=outcome.status, ticket_id=outcome.ticket_id, reason=outcome.reason)

    @app.post("/webhooks/jira", response_model=WebhookAck, status_code=202, responses=WEBHOOK_ERRORS, openapi_extra=WEBHOOK_BODY)
    async def jira_webhook(request: Request) -> WebhookAck:
        """A Jira (Service Management) webhook delivery. Answers 202 once the delivery is recorded; every refused
        delivery is recorded too. Without CREWDESK_JIRA_WEBHOOK_SECRET every delivery gets 503, so Jira keeps
        retrying until the secret is set rather than having its deliveries accepted unauthenticated."""
        body, too_large = bytearray(), False
        async for chunk in request.stream():  # stop reading at the cap instead of buffering whatever is sent
            body += chunk
            if len(body) > MAX_WEBHOOK_BYTES:
                too_large = True
                break
        remote = request.client.host if request.client else None
        return await run_in_threadpool(receive_jira, bytes(body), dict(request.headers), remote, too_large)

    return app
