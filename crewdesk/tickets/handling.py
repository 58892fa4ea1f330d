"""What a person does with a ticket (the console's ticket page), each step an audit row under their name: reply to the
customer, add an internal note, hand the ticket back to crewdesk, close it. Taking and letting go are `service.assign`.

The rules:
- Replying, handing back and closing need the ticket taken by that person (`tickets.assigned_to`); a note does not
  (anyone logged in may leave the team a word on any ticket).
- A reply is an outbound message by the person; the delivery service sends it through the ticket's channel (SMTP in
  the customer's thread, a public Jira comment) exactly as crewdesk's own replies; an API ticket's reply stays in its
  thread, read through the API. Not while crewdesk works on the ticket (received, queued, triaging, in_progress): the
  run would answer without having read it.
- A note is an internal message: never mailed; on Jira an internal comment, which the customer does not see.
- Handing back and closing are for a ticket crewdesk has put down for a person: escalated or failed. Handing back
  moves it to `received` and lets go of it; the caller then sends it through the one way onto the queue (the
  Enqueuer: sent after this commit, then received -> queued; a crash between leaves it `received` for the
  reconciler). The ticket's row is locked and its status checked, so a second hand-back (a double click, two people)
  is refused: the ticket runs once. Closing moves it to `resolved`, with who closed it and why as its status reason.

These are a person's steps, not a run's, so they do not go through TRANSITIONS (no run moves an escalated ticket);
handing back and closing each write a `status` row (actor: the person), which the KPIs read as the final status
change. The KPIs measure crewdesk: a ticket a person closed counts as what crewdesk left it (escalated or failed, with
that reason, from the `closed` row), and one a person replied on or closed is no automated resolution."""

from __future__ import annotations

import hashlib

from sqlalchemy.orm import Session

from crewdesk.audit import service as audit
from crewdesk.errors import Conflict, CrewdeskError, Forbidden
from crewdesk.tickets.models import Message, Ticket, TicketStatus
from crewdesk.tickets.service import add_message, get

MAX_TEXT = 20_000  # characters of a reply or note
IN_A_RUN = frozenset({TicketStatus.received, TicketStatus.queued, TicketStatus.triaging, TicketStatus.in_progress})
PUT_DOWN = frozenset({TicketStatus.escalated, TicketStatus.failed})  # what may be handed back or closed


class NotTaken(Forbidden):
    """The step needs the ticket taken by the person asking (take it first)."""


class EmptyOrTooLong(CrewdeskError):
    """A reply or note with no text, or more than MAX_TEXT characters."""


def _text(text: str, what: str) -> str:
    cleaned = text.replace("\x00", "").replace("\r\n", "\n").strip()
    if not cleaned:
        raise EmptyOrTooLong(f"the {what} is empty")
    if len(cleaned) > MAX_TEXT:
        raise EmptyOrTooLong(f"the {what} is {len(cleaned)} characters; the limit is {MAX_TEXT}")
    return cleaned


def _held(db: Session, ticket_id: int, by: str, step: str) -> Ticket:
    ticket = get(db=db, ticket_id=ticket_id, lock=True)
    if ticket.assigned_to != by:
        holder = f"{ticket.assigned_to} has it" if ticket.assigned_to else "nobody has taken it"
        raise NotTaken(f"to {step} ticket {ticket.id}, take it first ({holder})")
    return ticket


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def reply(*, db: Session, ticket_id: int, body: str, by: str) -> Message:
    """The person's reply to the customer, stored for delivery through the ticket's channel (after the commit)."""
    body = _text(body, "reply")
    ticket = _held(db, ticket_id, by, "reply to")
    if ticket.status in IN_A_RUN:
        raise Conflict(f"ticket {ticket.id} is {ticket.status.value}: crewdesk is working on it; reply when it is done")
    message = add_message(db=db, ticket=ticket, direction="outbound", author=by, body=body, meta={"by": "person"})
    audit.record(
        db=db,
        ticket_id=ticket.id,
        kind="person",
        name="replied",
        actor=by,
        arguments={"message_id": message.id, "channel": ticket.source, "chars": len(body), "sha256": _digest(body)},
    )
    return message


def note(*, db: Session, ticket_id: int, body: str, by: str) -> Message:
    """An internal note for the team on the ticket's thread; never sent to the customer."""
    body = _text(body, "note")
    ticket = get(db=db, ticket_id=ticket_id, lock=True)
    message = add_message(db=db, ticket=ticket, direction="internal", author=by, body=body, meta={"by": "person"})
    audit.record(
        db=db, ticket_id=ticket.id, kind="person", name="noted", actor=by, arguments={"message_id": message.id, "chars": len(body), "sha256": _digest(body)}
    )
    return message


def hand_back(*, db: Session, ticket_id: int, by: str, reason: str = "") -> Ticket:
    """Give the ticket back to crewdesk: `received`, nobody holding it. The caller enqueues it after the commit."""
    ticket = _held(db, ticket_id, by, "hand back")
    if ticket.status not in PUT_DOWN:
        raise Conflict(f"ticket {ticket.id} is {ticket.status.value}: only an escalated or failed ticket is handed back")
    before = ticket.status
    why = reason.replace("\x00", "").strip()[:2000]
    ticket.status, ticket.status_reason, ticket.assigned_to = TicketStatus.received, f"handed back to crewdesk by {by}" + (f": {why}" if why else ""), None
    audit.record(db=db, ticket_id=ticket.id, kind="status", name="handed_back", actor=by, arguments={"from": before.value, "to": "received", "reason": why})
    return ticket


def close(*, db: Session, ticket_id: int, by: str, reason: str = "") -> Ticket:
    """Close the ticket as resolved by the person (it stays theirs): nothing more is sent unless someone writes."""
    ticket = _held(db, ticket_id, by, "close")
    if ticket.status not in PUT_DOWN:
        raise Conflict(f"ticket {ticket.id} is {ticket.status.value}: only an escalated or failed ticket is closed by a person")
    before, was = ticket.status, ticket.status_reason or ""
    why = reason.replace("\x00", "").strip()[:2000]
    ticket.status, ticket.status_reason = TicketStatus.resolved, f"closed by {by}" + (f": {why}" if why else "")
    # `was`: why crewdesk put it down, which the KPIs keep counting it by (crewdesk/metrics/kpi.py)
    arguments = {"from": before.value, "to": "resolved", "reason": why, "was": was}
    audit.record(db=db, ticket_id=ticket.id, kind="status", name="closed", actor=by, arguments=arguments)
    return ticket
