"""Tickets: submit one (it goes on the queue), read its status, runs and trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from crewdesk.api.auth import AnyCaller, TicketReader, TicketSubmitter
from crewdesk.api.common import BAD_BODY, CONFLICT, NOT_FOUND, RowId, schema_no_nul
from crewdesk.api.deps import DbSession, ServicesDep
from crewdesk.api.limits import RATE_LIMITED, TOO_LARGE, TicketsLimit
from crewdesk.audit import service as audit
from crewdesk.auth.service import Principal
from crewdesk.db import transaction
from crewdesk.errors import Conflict, Forbidden, TicketNotFound
from crewdesk.intake.admit import Stored, admit
from crewdesk.runs.models import CrewRun
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket, TicketStatus
from crewdesk.tickets.schemas import JIRA_KEY, MAX_BODY_CHARS, TicketIn, jira_key_problem

router = APIRouter()


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


def _submission_schema(schema: dict[str, Any], model: type) -> None:
    """schema_no_nul, and TicketIn's Jira rule as the schema says it: with source jira, external_id is an issue key."""
    schema_no_nul(schema, model)
    schema["if"] = {"properties": {"source": {"const": "jira"}}, "required": ["source"]}
    schema["then"] = {"properties": {"external_id": {"type": "string", "pattern": JIRA_KEY.pattern}}}


class TicketSubmission(TicketIn):
    """POST /tickets: a ticket as TicketIn, except that external_id must be a JSON string, as the schema says
    (files may carry numeric ids; an HTTP client can quote its own), and the source is the API's own channel, or
    (admin keys only) e-mail or Jira: anything else is a 422. A Jira ticket's external_id is its issue key."""

    model_config = ConfigDict(json_schema_extra=_submission_schema)

    source: Literal["api", "email", "jira"] = Field(  # TicketSource values: the channels a reply can go back through
        default="api", description="api; an admin key may submit as email or jira (replies then go out through that channel)."
    )

    @field_validator("external_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return value

    @model_validator(mode="before")
    @classmethod
    def _jira_key_as_sent(cls, data: object) -> object:
        """The Jira rule on the id as sent, before whitespace is stripped, as the published schema states it."""
        if isinstance(data, dict) and data.get("source") == "jira" and isinstance(data.get("external_id"), str):
            problem = jira_key_problem(data["external_id"])
            if problem:
                raise ValueError(f"external_id: {problem}")
        return data


class MessageView(BaseModel):
    id: int
    direction: str = Field(description="inbound (customer), outbound (our reply) or internal (a note for the team).")
    author: str
    body: str
    external_id: str | None = Field(description="The channel's id: Message-ID, Jira comment id.")
    created_at: datetime
    delivered_at: datetime | None
    delivery_error: str | None


class CustomerMessage(BaseModel):
    """POST /tickets/{id}/messages: the customer writes on their ticket (the answer to our question, or more)."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid", json_schema_extra=schema_no_nul)

    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS, description="The customer's message text.")
    author: str = Field(default="", max_length=320)
    external_id: str | None = Field(
        default=None, max_length=512, description="The caller's id for this message: sent again, it is not added twice and queues nothing."
    )

    @field_validator("body", "author", "external_id")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("NUL bytes are not allowed")
        return value


class MessageAdded(BaseModel):
    ticket_id: int
    message_id: int
    status: str = Field(description="The ticket's status after the message: queued when it resumed a ticket waiting on the customer.")
    created: bool = Field(description="False when a message with this external_id was already on the ticket: nothing new was queued.")


# Tickets whose customer writes through the channel they came from: an e-mail reply in the thread, a Jira comment.
CHANNEL_SOURCES = frozenset({"email", "jira"})


class TrailView(BaseModel):
    ticket_id: int
    status: str
    external_status: str | None = Field(description="The channel's own status, e.g. the Jira issue's.")
    messages: list[MessageView]
    events: list[AuditRow]


def _message_view(m: Message) -> MessageView:
    return MessageView(
        id=m.id,
        direction=m.direction,
        author=m.author,
        body=m.body,
        external_id=m.external_id,
        created_at=m.created_at,
        delivered_at=m.delivered_at,
        delivery_error=m.delivery_error,
    )


def _audit_rows(session: Session, ticket_id: int) -> list[AuditRow]:
    return [
        AuditRow(id=e.id, at=e.created_at, run_id=e.run_id, kind=e.kind, name=e.name, actor=e.actor, duration_ms=e.duration_ms, error=e.error)
        for e in audit.trail(db=session, ticket_id=ticket_id)
    ]


def _readable(ticket: Ticket, caller: Principal) -> Ticket:
    """tickets:read reads any ticket; a key that may only submit reads and answers the tickets it submitted (404 for the
    rest, as for a ticket that does not exist: an id says nothing of other callers' tickets)."""
    if caller.may("tickets:read"):
        return ticket
    if not caller.may("tickets:submit"):
        raise Forbidden(f"the key {caller.name!r} lacks the scope tickets:read")
    if ticket.submitted_by != caller.name:
        raise TicketNotFound(f"ticket {ticket.id} does not exist")
    return ticket


@router.post("/tickets", response_model=SubmitResult, status_code=202, responses={**BAD_BODY, **TOO_LARGE, **RATE_LIMITED})
def submit(ticket_in: TicketSubmission, services: ServicesDep, caller: TicketSubmitter, _limit: TicketsLimit) -> SubmitResult:
    """A ticket from this key's caller, recorded as theirs (`Ticket.submitted_by`: the requester, who may not approve its
    writes). Only an admin key may submit as another channel (e-mail, Jira): replies go out through the source's own
    channel, to its addresses and issue keys."""
    if ticket_in.source in CHANNEL_SOURCES and not caller.may("admin"):
        raise Forbidden(f"only an admin key may submit a ticket as {ticket_in.source!r}: replies would go out through that channel")
    factory = services.session_factory
    with transaction(factory) as session:
        ticket, created = tickets.submit(db=session, ticket_in=ticket_in, submitted_by=caller.name)
    if admit([Stored(ticket.id, needs_run=created or ticket.status == TicketStatus.received)], enqueuer=services.enqueuer).queued:
        with factory() as session:
            ticket = tickets.get(db=session, ticket_id=ticket.id)
    return SubmitResult(ticket_id=ticket.id, status=ticket.status, created=created)


@router.get("/tickets/{ticket_id}", response_model=TicketView, responses=NOT_FOUND)
def show(ticket_id: RowId, session: DbSession, caller: AnyCaller) -> TicketView:
    ticket = _readable(tickets.get(db=session, ticket_id=ticket_id), caller)  # TicketNotFound: 404 (crewdesk/api/errors.py)
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
        trail=_audit_rows(session, ticket_id),
    )


@router.get("/tickets/{ticket_id}/trail", response_model=TrailView, responses=NOT_FOUND)
def trail(ticket_id: RowId, session: DbSession, caller: TicketReader) -> TrailView:
    """The ticket's messages in order, and its audit events (the team's view: tickets:read)."""
    ticket = tickets.get(db=session, ticket_id=ticket_id)
    messages = session.execute(select(Message).where(Message.ticket_id == ticket_id).order_by(Message.id)).scalars()
    return TrailView(
        ticket_id=ticket.id,
        status=ticket.status,
        external_status=ticket.external_status,
        messages=[_message_view(m) for m in messages],
        events=_audit_rows(session, ticket_id),
    )


@router.post(
    "/tickets/{ticket_id}/messages", response_model=MessageAdded, status_code=202, responses={**NOT_FOUND, **CONFLICT, **BAD_BODY, **TOO_LARGE, **RATE_LIMITED}
)
def add_message(ticket_id: RowId, message: CustomerMessage, services: ServicesDep, caller: TicketSubmitter, _limit: TicketsLimit) -> MessageAdded:
    """The customer's reply on a ticket submitted through the API. A ticket waiting on the customer resumes with it
    (queued); a resolved one is reopened; one being worked or held by a person keeps it for them. E-mail and Jira
    tickets take their customer's messages through their own channel (409)."""
    factory = services.session_factory
    with transaction(factory) as session:
        ticket = _readable(tickets.get(db=session, ticket_id=ticket_id, lock=True), caller)
        if ticket.source in CHANNEL_SOURCES:
            raise Conflict(f"ticket {ticket_id} came by {ticket.source}: the customer answers through that channel")
        if message.external_id:
            known = session.execute(
                select(Message.id).where(Message.ticket_id == ticket_id, Message.direction == "inbound", Message.external_id == message.external_id)
            ).scalar_one_or_none()
            if known is not None:
                return MessageAdded(ticket_id=ticket_id, message_id=known, status=ticket.status, created=False)
        added, needs_run = tickets.follow_up(db=session, ticket=ticket, body=message.body, author=message.author, external_id=message.external_id)
        added_id = added.id
    if needs_run:
        admit([Stored(ticket_id, needs_run=True)], enqueuer=services.enqueuer)
    with factory() as session:
        status = tickets.get(db=session, ticket_id=ticket_id).status
    return MessageAdded(ticket_id=ticket_id, message_id=added_id, status=status, created=True)


@router.get("/tickets/{ticket_id}/messages", response_model=list[MessageView], responses=NOT_FOUND)
def messages(ticket_id: RowId, session: DbSession, caller: AnyCaller) -> list[MessageView]:
    """The conversation the customer sees: their messages and our replies, in order (the team's notes are left out)."""
    _readable(tickets.get(db=session, ticket_id=ticket_id), caller)
    rows = session.execute(select(Message).where(Message.ticket_id == ticket_id, Message.direction != "internal").order_by(Message.id)).scalars()
    return [_message_view(m) for m in rows]
