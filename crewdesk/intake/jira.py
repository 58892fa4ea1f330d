"""Jira (Service Management) deliveries become a ticket, a follow-up message or a status sync, each delivery recorded
once as an InboundEvent. Reading the payload is crewdesk/intake/jira_events.py; the webhook's edge (signature,
refusals) is crewdesk/intake/jira_webhook.py."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from crewdesk.audit import service as audit
from crewdesk.db import utcnow
from crewdesk.intake import events as inbound
from crewdesk.intake.jira_events import JiraEvent, JiraUser
from crewdesk.settings import JiraSettings
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket, TicketStatus
from crewdesk.tickets.schemas import MAX_BODY_CHARS, Priority, TicketIn, jira_key_problem

CHANNEL = "jira"
SIGNATURE_HEADER = "X-Hub-Signature"
DELIVERY_HEADER = "X-Atlassian-Webhook-Identifier"

OutcomeStatus = Literal["accepted", "duplicate", "ignored", "rejected"]


class JiraOutcome(BaseModel):
    """What became of a delivery. `needs_run`: the ticket should go on the queue (after the caller commits)."""

    status: OutcomeStatus
    ticket_id: int | None = None
    message_id: int | None = None
    needs_run: bool = False
    reason: str | None = None


# Jira Cloud's and Server's default priority schemes onto ours. Unknown names (custom schemes) stay unset: triage decides.
_PRIORITIES: dict[str, Priority] = {
    "highest": "urgent",
    "blocker": "urgent",
    "critical": "urgent",
    "high": "high",
    "medium": "normal",
    "major": "normal",
    "low": "low",
    "lowest": "low",
    "minor": "low",
    "trivial": "low",
}


def _ticket_in(event: JiraEvent, *, customer: JiraUser | None) -> TicketIn:
    body = "\n\n".join(part for part in (event.summary.strip(), event.description.strip()) if part)
    return TicketIn(
        source=CHANNEL,
        external_id=event.issue_key or "",
        customer=(customer.identity if customer else "")[:320],
        subject=event.summary[:998],
        body=(body or f"(Jira issue {event.issue_key} has no summary or description)")[:MAX_BODY_CHARS],
        priority=_PRIORITIES.get((event.priority or "").lower()),
    )


def _issue_meta(event: JiraEvent) -> dict:
    """Kept on the ticket's first message: the reporter too, since Jira Cloud's comment events do not name them."""
    meta: dict = {"jira_issue_id": event.issue_id, "jira_issue_key": event.issue_key, "jira_status": event.status}
    if event.reporter is not None:
        meta["jira_reporter"] = event.reporter.model_dump(include={"account_id", "name", "key", "email"}, exclude_none=True)
    return meta


def _ids(user: JiraUser | dict | None) -> set[tuple[str, str]]:
    """What identifies a Jira user: accountId (Cloud), name and key (Server), e-mail address (when shown)."""
    if user is None:
        return set()
    fields = user.model_dump() if isinstance(user, JiraUser) else user
    ids = {(kind, str(fields[kind])) for kind in ("account_id", "name", "key") if fields.get(kind)}
    return ids | ({("email", str(fields["email"]).casefold())} if fields.get("email") else set())


def _reporter(*, db: Session, event: JiraEvent, ticket: Ticket | None) -> set[tuple[str, str]]:
    """The issue's reporter: as the payload names them (Jira Server's comment events do), else as recorded when the
    issue became a ticket, else the ticket's customer (a ticket from before the reporter was recorded). Empty when
    nobody can tell."""
    if event.reporter is not None:
        return _ids(event.reporter)
    if ticket is None:
        return set()
    meta = db.execute(select(Message.meta).where(Message.ticket_id == ticket.id, Message.direction == "inbound").order_by(Message.id).limit(1)).scalar()
    recorded = (meta or {}).get("jira_reporter")
    if isinstance(recorded, dict) and recorded:
        return _ids(recorded)
    customer = ticket.customer.strip()
    return {(kind, customer.casefold() if kind == "email" else customer) for kind in ("account_id", "name", "key", "email")} if customer else set()


def _kept_as_note(*, db: Session, ticket: Ticket | None, comment_id: str) -> int | None:
    """The message that already keeps this comment as a note (a comment by someone other than the reporter)."""
    if ticket is None:
        return None
    rows = db.execute(
        select(Message.id, Message.meta).where(Message.ticket_id == ticket.id, Message.direction == "internal", Message.external_id == comment_id)
    )
    return next((message_id for message_id, meta in rows if (meta or {}).get("not_reporter")), None)


def _own_comment(*, db: Session, event: JiraEvent, settings: JiraSettings, ticket: Ticket | None) -> str | None:
    """Why this comment is one crewdesk wrote (so answering it would loop), or None."""
    comment = event.comment
    assert comment is not None
    author = comment.author or JiraUser()
    bot = settings.jira_bot_account_id.strip()
    if bot and bot in (author.account_id, author.name, author.key):
        return f"comment {comment.id} is by our bot account {bot}"
    if settings.jira_user and author.email and author.email.casefold() == settings.jira_user.strip().casefold():
        return f"comment {comment.id} is by our API user {settings.jira_user}"
    posted = db.execute(
        select(Message.id)
        .join(Ticket, Ticket.id == Message.ticket_id)
        .where(Ticket.source == CHANNEL, Message.direction.in_(("outbound", "internal")), Message.external_id == comment.id)
        .limit(1)
    ).scalar_one_or_none()
    if posted is not None:
        return f"comment {comment.id} is our message {posted}"
    if ticket is not None and comment.body.strip():
        # The webhook can arrive before the delivery that posted the comment has committed its id: match the text.
        ours = db.execute(select(Message.id, Message.body).where(Message.ticket_id == ticket.id, Message.direction.in_(("outbound", "internal")))).all()
        text = " ".join(comment.body.split())
        for message_id, body in ours:
            if " ".join(body.split()) == text:
                return f"comment {comment.id} has the text of our message {message_id}"
    return None


def _comment(*, db: Session, event: JiraEvent, settings: JiraSettings) -> JiraOutcome:
    """comment_created: a follow-up from the customer, unless it is ours, internal, or already recorded."""
    comment = event.comment
    if comment is None:
        return JiraOutcome(status="rejected", reason="comment event without a comment id")
    if not event.issue_key:
        # Jira Server's comment_created carries no issue; the same comment also arrives as jira:issue_updated
        # (issue_commented) with the issue, and that delivery records it.
        return JiraOutcome(status="ignored", reason=f"comment {comment.id} arrived without its issue (Jira Server sends it again as issue_commented)")
    ticket = tickets.find(db=db, source=CHANNEL, external_id=event.issue_key)
    noted = _kept_as_note(db=db, ticket=ticket, comment_id=comment.id)
    if noted is not None:
        return JiraOutcome(
            status="ignored", ticket_id=ticket.id if ticket else None, message_id=noted, reason=f"comment {comment.id} is already message {noted} (a note)"
        )
    own = _own_comment(db=db, event=event, settings=settings, ticket=ticket)
    if own:
        return JiraOutcome(status="ignored", ticket_id=ticket.id if ticket else None, reason=f"our own comment, no run: {own}")
    if comment.public is False:
        return JiraOutcome(
            status="ignored",
            ticket_id=ticket.id if ticket else None,
            reason=f"comment {comment.id} is internal (jsdPublic false): a note among agents, not the customer",
        )
    if not comment.body.strip():
        return JiraOutcome(status="ignored", ticket_id=ticket.id if ticket else None, reason=f"comment {comment.id} is empty")
    author = comment.author.identity if comment.author else ""
    # Only the issue's reporter speaks for the customer: anyone else's public comment (a JSM agent, another customer
    # the issue was shared with) is kept as a note for the team, and neither resumes nor reopens the ticket.
    by_reporter = bool(_ids(comment.author) & _reporter(db=db, event=event, ticket=ticket))
    created = False
    if ticket is None:
        # A comment on an issue we never saw created (the webhook was added later, or that delivery was lost):
        # the issue in the payload becomes the ticket, so the customer's words are not dropped. Its customer is the
        # reporter the payload names; Cloud's comment events name none, and then the ticket has no customer.
        try:
            ticket, created = tickets.submit(db=db, ticket_in=_ticket_in(event, customer=event.reporter), message_meta=_issue_meta(event))
        except ValidationError as exc:
            return JiraOutcome(status="rejected", reason=f"issue {event.issue_key} cannot become a ticket: {exc.errors()[0]['msg']}")
        if event.status:
            ticket.external_status = event.status[:64]
    else:
        already = db.execute(
            select(Message.id).where(Message.ticket_id == ticket.id, Message.direction == "inbound", Message.external_id == comment.id)
        ).scalar_one_or_none()
        if already is not None:
            # Jira Server announces one comment twice (comment_created and issue_commented) under different deliveries.
            return JiraOutcome(status="ignored", ticket_id=ticket.id, message_id=already, reason=f"comment {comment.id} is already message {already}")
    if not by_reporter:
        note = tickets.add_message(
            db=db,
            ticket=ticket,
            direction="internal",
            body=comment.body,
            author=author,
            external_id=comment.id,
            meta={"jira_comment_id": comment.id, "jira_issue_key": event.issue_key, "public": comment.public, "not_reporter": True},
        )
        note.delivered_at = utcnow()  # it came from Jira: never posted back there
        who = author or "an unnamed user"
        reason = f"comment {comment.id} by {who}, not the reporter of {event.issue_key}: kept as a note for the team, no run"
        if created:
            reason = f"new ticket from issue {event.issue_key} (first seen through a comment); {reason} for it"
        return JiraOutcome(status="accepted", ticket_id=ticket.id, message_id=note.id, needs_run=created, reason=reason)
    message, needs_run = tickets.follow_up(
        db=db,
        ticket=ticket,
        body=comment.body,
        author=author,
        external_id=comment.id,
        meta={"jira_comment_id": comment.id, "jira_issue_key": event.issue_key, "public": comment.public},
    )
    reason = f"new ticket from issue {event.issue_key} (first seen through a comment)" if created else f"comment {comment.id} added to ticket {ticket.id}"
    return JiraOutcome(status="accepted", ticket_id=ticket.id, message_id=message.id, needs_run=needs_run or created, reason=reason)


def _sync_status(*, db: Session, event: JiraEvent) -> JiraOutcome:
    ticket = tickets.find(db=db, source=CHANNEL, external_id=event.issue_key) if event.issue_key else None
    if ticket is None:
        return JiraOutcome(status="ignored", reason=f"issue {event.issue_key or '(no key)'} has no ticket here")
    # The changelog names a transition; without one, the issue's current status still corrects a sync we missed.
    to = event.status_to or event.status
    if not to or to == ticket.external_status:
        changed = ", ".join(event.changed_fields) or "nothing"
        return JiraOutcome(status="ignored", ticket_id=ticket.id, reason=f"no status change (changed: {changed[:200]})")
    before = ticket.external_status
    ticket.external_status = to[:64]
    audit.record(
        db=db,
        ticket_id=ticket.id,
        kind="intake",
        name="jira_status",
        actor=CHANNEL,
        arguments={"issue": event.issue_key, "from": event.status_from or before, "to": to, "event": event.event_type_name or event.webhook_event},
        result={"ticket_status": ticket.status},
    )
    return JiraOutcome(status="accepted", ticket_id=ticket.id, reason=f"Jira status {before or '(unknown)'} -> {to}; no run")


def _dispatch(*, db: Session, event: JiraEvent, settings: JiraSettings) -> JiraOutcome:
    problem = jira_key_problem(event.issue_key) if event.issue_key else None
    if problem:
        return JiraOutcome(status="rejected", reason=f"{event.kind} refused: {problem}")
    if event.kind == "issue_created":
        if not event.issue_key:
            return JiraOutcome(status="rejected", reason="issue_created without an issue key")
        try:
            ticket_in = _ticket_in(event, customer=event.reporter or event.actor)
        except ValidationError as exc:
            return JiraOutcome(status="rejected", reason=f"issue {event.issue_key} cannot become a ticket: {exc.errors()[0]['msg']}")
        submitted, created = tickets.submit(db=db, ticket_in=ticket_in, message_meta=_issue_meta(event))
        if not created:
            return JiraOutcome(
                status="ignored",
                ticket_id=submitted.id,
                needs_run=submitted.status == TicketStatus.received,
                reason=f"issue {event.issue_key} is already ticket {submitted.id}",
            )
        submitted.external_status = (event.status or "")[:64] or None
        return JiraOutcome(status="accepted", ticket_id=submitted.id, needs_run=True, reason=f"new ticket from issue {event.issue_key}")
    if event.kind == "comment_created":
        return _comment(db=db, event=event, settings=settings)
    ticket = tickets.find(db=db, source=CHANNEL, external_id=event.issue_key) if event.issue_key else None
    ticket_id = ticket.id if ticket else None
    if event.kind == "comment_updated":
        return JiraOutcome(status="ignored", ticket_id=ticket_id, reason="comment edited: the original was answered; edits do not start a run")
    if event.kind == "comment_deleted":
        return JiraOutcome(status="ignored", ticket_id=ticket_id, reason="comment deleted in Jira; our copy is kept")
    if event.kind == "issue_deleted":
        if ticket is not None:
            ticket.external_status = "(deleted)"
            audit.record(db=db, ticket_id=ticket.id, kind="intake", name="jira_deleted", actor=CHANNEL, arguments={"issue": event.issue_key})
        return JiraOutcome(status="ignored", ticket_id=ticket_id, reason=f"issue {event.issue_key} deleted in Jira; the ticket is kept, no run")
    if event.kind == "issue_updated":
        synced = _sync_status(db=db, event=event)
        if event.comment is None:
            return synced
        # A transition made with a comment (Server: issue_resolved + comment) carries both; the comment counts too.
        commented = _comment(db=db, event=event, settings=settings)
        accepted = "accepted" in (synced.status, commented.status)
        return JiraOutcome(
            status="accepted" if accepted else commented.status,
            ticket_id=commented.ticket_id or synced.ticket_id,
            message_id=commented.message_id,
            needs_run=commented.needs_run,
            reason=f"{synced.reason}; {commented.reason}",
        )
    return JiraOutcome(status="ignored", ticket_id=ticket_id, reason=f"event {event.webhook_event or '(none)'!r} is not handled")


def delivery_key(*, body: bytes, identifier: str | None) -> str:
    """Jira Cloud repeats X-Atlassian-Webhook-Identifier on retries; Server sends none, and its retried body is
    byte-identical (it carries the event's timestamp), so the body's hash stands in."""
    identifier = (identifier or "").strip()
    if not identifier:
        return "sha256:" + hashlib.sha256(body).hexdigest()
    if len(identifier) > 200 or "\x00" in identifier:  # not a Jira UUID: keep it distinct but storable
        return "id-sha256:" + hashlib.sha256(identifier.encode("utf-8", "replace")).hexdigest()
    return identifier


def handle_event(*, db: Session, event: JiraEvent, delivery_id: str, settings: JiraSettings, detail: dict | None = None) -> JiraOutcome:
    """Process one authenticated delivery once. Call inside the caller's transaction; enqueue after it commits.
    A repeated delivery_id is 'duplicate' (seen_count bumped, nothing else), re-offering only a ticket never queued."""
    evidence = {
        "webhookEvent": event.webhook_event,
        "issue_event_type_name": event.event_type_name,
        "issue_key": event.issue_key,
        "comment_id": event.comment.id if event.comment else None,
        "timestamp": event.timestamp,
        **(detail or {}),
    }
    record, first_time = inbound.claim(db=db, channel=CHANNEL, external_id=delivery_id, kind=event.kind, detail=evidence)
    if not first_time:
        ticket = db.get(Ticket, record.ticket_id) if record.ticket_id else None
        return JiraOutcome(
            status="duplicate",
            ticket_id=record.ticket_id,
            message_id=record.message_id,
            needs_run=ticket is not None and ticket.status == TicketStatus.received,
            reason=f"delivery already processed ({record.status}); seen {record.seen_count} times",
        )
    outcome = _dispatch(db=db, event=event, settings=settings)
    status = {"accepted": inbound.ACCEPTED, "ignored": inbound.IGNORED, "rejected": inbound.REJECTED}[outcome.status]
    inbound.settle(record, status=status, reason=outcome.reason, ticket_id=outcome.ticket_id, message_id=outcome.message_id)
    return outcome


def record_refused(*, db: Session, body: bytes, reason: str, detail: dict) -> None:
    """Keep a delivery refused before processing (bad signature, bad JSON, too large) as a rejected InboundEvent.
    Keyed apart from accepted deliveries so that a later, valid delivery of the same body is not taken for a replay."""
    key = "refused:" + hashlib.sha256(body).hexdigest()
    record, _ = inbound.claim(db=db, channel=CHANNEL, external_id=key, kind="refused", detail=detail)
    record.detail = detail  # a repeat keeps the evidence that goes with its (latest) reason
    inbound.settle(record, status=inbound.REJECTED, reason=reason)
