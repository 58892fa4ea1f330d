"""Jira (Service Management) webhooks: verify a delivery's signature, read it into a JiraEvent, and turn it into a
ticket, a follow-up message or a status sync, recording every delivery once as an InboundEvent."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from crewdesk.audit import service as audit
from crewdesk.errors import CrewdeskError
from crewdesk.intake import events as inbound
from crewdesk.ratelimit import TokenBucket
from crewdesk.settings import JiraSettings
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket, TicketStatus
from crewdesk.tickets.schemas import MAX_BODY_CHARS, Priority, TicketIn

CHANNEL = "jira"
SIGNATURE_HEADER = "X-Hub-Signature"
DELIVERY_HEADER = "X-Atlassian-Webhook-Identifier"

EventKind = Literal["issue_created", "comment_created", "comment_updated", "comment_deleted", "issue_updated", "issue_deleted", "other"]
OutcomeStatus = Literal["accepted", "duplicate", "ignored", "rejected"]


_USER_SCHEMA = {
    "type": "object",
    "properties": {
        "accountId": {"type": "string"},
        "name": {"type": "string"},
        "key": {"type": "string"},
        "emailAddress": {"type": "string"},
        "displayName": {"type": "string"},
    },
}
# The part of a delivery that crewdesk reads (OpenAPI documentation; anything else is accepted and ignored).
PAYLOAD_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "webhookEvent": {
            "type": "string",
            "enum": ["jira:issue_created", "jira:issue_updated", "jira:issue_deleted", "comment_created", "comment_updated", "comment_deleted"],
        },
        "issue_event_type_name": {"type": "string"},
        "timestamp": {"type": "integer"},
        "user": _USER_SCHEMA,
        "issue": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "key": {"type": "string"},
                "fields": {
                    "type": "object",
                    "properties": {
                        "summary": {"type": "string"},
                        "description": {"type": ["string", "null"]},
                        "priority": {"type": "object", "properties": {"name": {"type": "string"}}},
                        "status": {"type": "object", "properties": {"name": {"type": "string"}}},
                        "reporter": _USER_SCHEMA,
                    },
                },
            },
        },
        "comment": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "body": {"type": "string"},
                "author": _USER_SCHEMA,
                "jsdPublic": {"type": "boolean"},
                "created": {"type": "string"},
                "updated": {"type": "string"},
            },
        },
        "changelog": {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "field": {"type": "string"},
                            "fieldId": {"type": "string"},
                            "fromString": {"type": ["string", "null"]},
                            "toString": {"type": ["string", "null"]},
                        },
                    },
                }
            },
        },
    },
    "additionalProperties": True,
}


class SignatureError(CrewdeskError):
    """A delivery whose signature cannot be accepted; the subclass says why (the HTTP face maps it to a status)."""


class WebhookNotConfigured(SignatureError):
    """No webhook secret is configured, so no delivery can be authenticated."""


class SignatureMissing(SignatureError):
    pass


class SignatureMalformed(SignatureError):
    pass


class SignatureForged(SignatureError):
    pass


_DIGESTS = {"sha256": (hashlib.sha256, 64), "sha1": (hashlib.sha1, 40)}
_HEX = re.compile(r"[0-9a-fA-F]+")


def verify_signature(secret: str, body: bytes, header: str | None) -> None:
    """Check `X-Hub-Signature: <method>=<hex HMAC of the raw body>` (Atlassian's format; sha256, or sha1 from older
    senders). Raises a SignatureError subclass; returns None when the body was signed with `secret`."""
    if not secret:
        raise WebhookNotConfigured("no Jira webhook secret is configured (CREWDESK_JIRA_WEBHOOK_SECRET): every delivery is refused")
    if header is None or not header.strip():
        raise SignatureMissing(f"no {SIGNATURE_HEADER} header")
    method, sep, signature = header.strip().partition("=")
    method = method.strip().lower()
    signature = signature.strip()
    if not sep or method not in _DIGESTS:
        raise SignatureMalformed(f"{SIGNATURE_HEADER} must be sha256=<hex> (got method {method[:16]!r})")
    digest, length = _DIGESTS[method]
    if len(signature) != length or not _HEX.fullmatch(signature):
        raise SignatureMalformed(f"{SIGNATURE_HEADER} {method} signature must be {length} hex digits")
    expected = hmac.new(secret.encode(), body, digest).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise SignatureForged(f"{SIGNATURE_HEADER} does not match the body: not signed with our webhook secret")


def sign(secret: str, body: bytes) -> str:
    """The header value Jira sends for `body` (tests, the benchmark's load generator)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class JiraUser(BaseModel):
    """A Jira user as webhooks show it: Cloud has accountId (e-mail often hidden), Server has name/key."""

    account_id: str | None = Field(default=None, description="Cloud accountId.")
    name: str | None = Field(default=None, description="Server user name (Cloud sends it on old payloads).")
    key: str | None = Field(default=None, description="Server user key.")
    email: str | None = Field(default=None, description="emailAddress, when the instance shows it.")
    display_name: str | None = None

    @property
    def identity(self) -> str:
        """Who this is, for ticket.customer and message.author: e-mail first, then accountId, then name."""
        return self.email or self.account_id or self.name or self.key or self.display_name or ""


class JiraComment(BaseModel):
    id: str = Field(description="Jira's comment id.")
    body: str = ""
    author: JiraUser | None = None
    public: bool | None = Field(default=None, description="JSM jsdPublic: False for an internal comment; None when not a service desk.")
    created: str | None = None
    updated: str | None = None


class JiraEvent(BaseModel):
    """One webhook delivery, normalised across Jira Cloud and Server/Data Center payload shapes."""

    kind: EventKind
    webhook_event: str = Field(default="", description="The payload's webhookEvent, e.g. jira:issue_updated.")
    event_type_name: str | None = Field(default=None, description="issue_event_type_name (absent on old servers).")
    timestamp: int | None = None
    issue_id: str | None = None
    issue_key: str | None = None
    project_key: str | None = None
    summary: str = ""
    description: str = ""
    priority: str | None = Field(default=None, description="Jira's priority name: Highest, High, Medium, Major, ...")
    status: str | None = Field(default=None, description="The issue's current status name.")
    reporter: JiraUser | None = None
    actor: JiraUser | None = Field(default=None, description="The payload's `user`: who caused the event.")
    comment: JiraComment | None = None
    status_from: str | None = Field(default=None, description="From the changelog's status item, when the status changed.")
    status_to: str | None = None
    changed_fields: list[str] = Field(default_factory=list)


class JiraOutcome(BaseModel):
    """What became of a delivery. `needs_run`: the ticket should go on the queue (after the caller commits)."""

    status: OutcomeStatus
    ticket_id: int | None = None
    message_id: int | None = None
    needs_run: bool = False
    reason: str | None = None


def _text(value: Any, limit: int | None = None) -> str:
    """Jira text as a plain string: wiki/plain text as is, Atlassian Document Format flattened; NUL removed
    because PostgreSQL text refuses it."""
    if value is None:
        return ""
    if isinstance(value, dict):  # ADF: {"type": "doc", "content": [...]}
        parts: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if isinstance(node.get("text"), str):
                    parts.append(node["text"])
                for child in node.get("content") or []:
                    walk(child)
                if node.get("type") in ("paragraph", "heading", "listItem", "codeBlock"):
                    parts.append("\n")
            elif isinstance(node, list):
                for child in node:
                    walk(child)

        walk(value)
        text = "".join(parts).strip()
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value)
    else:
        text = ""
    text = text.replace("\x00", "\ufffd")
    return text[:limit] if limit else text


def _opt(value: Any, limit: int = 255) -> str | None:
    return _text(value, limit) or None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _user(value: Any) -> JiraUser | None:
    user = _dict(value)
    if not user:
        return None
    return JiraUser(
        account_id=_opt(user.get("accountId")),
        name=_opt(user.get("name")),
        key=_opt(user.get("key")),
        email=_opt(user.get("emailAddress"), 320),
        display_name=_opt(user.get("displayName")),
    )


def _kind(webhook_event: str, type_name: str | None, comment: JiraComment | None) -> EventKind:
    if webhook_event in ("jira:issue_created",) or type_name == "issue_created":
        return "issue_created"
    if webhook_event == "jira:issue_deleted" or type_name == "issue_deleted":
        return "issue_deleted"
    if webhook_event in ("comment_created", "comment_updated", "comment_deleted"):
        return webhook_event  # type: ignore[return-value]
    if webhook_event != "jira:issue_updated":
        return "other"
    # Jira Server also reports comments as jira:issue_updated, named by issue_event_type_name, or (old servers)
    # unnamed with the comment attached: an edit shows as updated != created.
    named = {"issue_commented": "comment_created", "issue_comment_edited": "comment_updated", "issue_comment_deleted": "comment_deleted"}
    if type_name in named:
        return named[type_name]  # type: ignore[return-value]
    if not type_name and comment is not None:
        return "comment_created" if not comment.updated or comment.updated == comment.created else "comment_updated"
    return "issue_updated"


def parse_event(payload: dict) -> JiraEvent:
    """Read any webhook body (Cloud or Server, any age) into a JiraEvent; fields it lacks stay empty, never raise."""
    issue = _dict(payload.get("issue"))
    fields = _dict(issue.get("fields"))
    raw_comment = _dict(payload.get("comment"))
    comment = None
    if raw_comment.get("id") is not None:
        public = raw_comment.get("jsdPublic")
        comment = JiraComment(
            id=_text(raw_comment.get("id"), 255),
            body=_text(raw_comment.get("body"), MAX_BODY_CHARS),
            author=_user(raw_comment.get("author")),
            public=public if isinstance(public, bool) else None,
            created=_opt(raw_comment.get("created"), 64),
            updated=_opt(raw_comment.get("updated"), 64),
        )
    webhook_event = _text(payload.get("webhookEvent"), 64)
    type_name = _opt(payload.get("issue_event_type_name"), 64)
    status_from = status_to = None
    changed: list[str] = []
    for item in _dict(payload.get("changelog")).get("items") or []:
        item = _dict(item)
        field = _text(item.get("fieldId") or item.get("field"), 64)
        if field:
            changed.append(field)
        if field.lower() == "status":
            status_from, status_to = _opt(item.get("fromString"), 64), _opt(item.get("toString"), 64)
    timestamp = payload.get("timestamp")
    return JiraEvent(
        kind=_kind(webhook_event, type_name, comment),
        webhook_event=webhook_event,
        event_type_name=type_name,
        timestamp=timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None,
        issue_id=_opt(issue.get("id"), 64),
        issue_key=_opt(issue.get("key"), 255),
        project_key=_opt(_dict(fields.get("project")).get("key"), 64),
        summary=_text(fields.get("summary"), 998),
        description=_text(fields.get("description"), MAX_BODY_CHARS),
        priority=_opt(_dict(fields.get("priority")).get("name"), 64),
        status=_opt(_dict(fields.get("status")).get("name"), 64),
        reporter=_user(fields.get("reporter")),
        actor=_user(payload.get("user")),
        comment=comment,
        status_from=status_from,
        status_to=status_to,
        changed_fields=changed[:50],
    )


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
    return {"jira_issue_id": event.issue_id, "jira_issue_key": event.issue_key, "jira_status": event.status}


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
    created = False
    if ticket is None:
        # A comment on an issue we never saw created (the webhook was added later, or that delivery was lost):
        # the issue in the payload becomes the ticket, so the customer's words are not dropped.
        try:
            ticket, created = tickets.submit(db=db, ticket_in=_ticket_in(event, customer=event.reporter or comment.author), message_meta=_issue_meta(event))
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
    author = comment.author.identity if comment.author else ""
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


@dataclass
class _Client:
    bucket: TokenBucket
    suppressed: int = 0  # refusals answered 429 since the last recorded one


class RefusalLimiter:
    """Per client address, at most `per_minute` refused deliveries are recorded (a token bucket); past that the API
    answers 429 and only counts them, so a flood of forged requests cannot flood the database. The count is written
    with the next refusal that is recorded. Deliveries with a valid signature are never limited. In-process: each
    API process keeps its own buckets, for at most `max_clients` addresses (the least recently seen go first)."""

    def __init__(self, per_minute: int, *, max_clients: int = 10_000, clock=time.monotonic) -> None:
        self.per_minute, self.max_clients, self.clock = per_minute, max_clients, clock
        self._buckets: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, client: str | None) -> tuple[bool, int]:
        """(record this refusal?, refusals suppressed since the last recorded one, returned once when admitted)."""
        if self.per_minute <= 0:
            return True, 0
        key = client or "(unknown)"
        with self._lock:
            entry = self._buckets.pop(key, None) or _Client(TokenBucket(self.per_minute / 60.0, capacity=float(self.per_minute), clock=self.clock))
            self._buckets[key] = entry
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            if not entry.bucket.try_take():
                entry.suppressed += 1
                return False, 0
            count, entry.suppressed = entry.suppressed, 0
            return True, count

    def retry_after(self, client: str | None) -> int:
        """Seconds until this client's next refusal would be recorded."""
        with self._lock:
            entry = self._buckets.get(client or "(unknown)")
            return 1 if entry is None else max(1, int(entry.bucket.wait() + 0.999))


def record_refused(*, db: Session, body: bytes, reason: str, detail: dict) -> None:
    """Keep a delivery refused before processing (bad signature, bad JSON, too large) as a rejected InboundEvent.
    Keyed apart from accepted deliveries so that a later, valid delivery of the same body is not taken for a replay."""
    key = "refused:" + hashlib.sha256(body).hexdigest()
    record, _ = inbound.claim(db=db, channel=CHANNEL, external_id=key, kind="refused", detail=detail)
    record.detail = detail  # a repeat keeps the evidence that goes with its (latest) reason
    inbound.settle(record, status=inbound.REJECTED, reason=reason)
