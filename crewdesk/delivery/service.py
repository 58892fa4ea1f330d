"""Send a ticket's undelivered outbound and internal messages through its channel, each at most once from our side.

A message row is locked (SKIP LOCKED, so two workers never send the same one), sent, and marked delivered with the
channel's id in one transaction. If the process dies after the channel accepted the message and before the commit,
the message is sent again on retry: the only window, and it is one message wide. E-mail's Message-IDs are random
(ones derived from the row would let a stranger name our next reply in References), so a mail resent in that
window is a second copy that the receiver cannot drop by its id.

When every message is out and the ticket has ended (resolved, escalated), a channel that keeps its own status (Jira)
is moved to the configured one: after the reply, so the customer reads the answer before the issue closes."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.audit import service as audit
from crewdesk.connectors.base import DeliveryRefused, OutboundMessage, ReplyChannel
from crewdesk.db import transaction, utcnow
from crewdesk.errors import TransientError
from crewdesk.logging import get_logger
from crewdesk.tickets.models import Message, Ticket

log = get_logger(__name__)
MAX_ATTEMPTS = 8


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # the channel sends nothing for these (e.g. internal notes by e-mail)
    refused: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    status: str | None = None  # the channel's status after a sync; None when there was nothing to sync


def pending(*, db: Session, ticket_id: int) -> list[Message]:
    return list(
        db.execute(
            select(Message)
            .where(
                Message.ticket_id == ticket_id,
                Message.direction.in_(("outbound", "internal")),
                Message.delivered_at.is_(None),
                Message.delivery_error.is_(None),
            )
            .order_by(Message.id)
        ).scalars()
    )


def never_tried(*, db: Session, sources: Collection[str], older_than: timedelta, limit: int = 1000) -> list[int]:
    """Tickets of these sources with a message to send, older than `older_than`, that no delivery ever tried: its task
    never reached a worker (the broker refused the send, or lost it). The reconciler sends each a delivery task again; a
    second task for one already queued is harmless (each message is locked, sent once, marked). A message with attempts
    is its task's (retrying with backoff, or given up) and is left to it."""
    stmt = (
        select(Message.ticket_id)
        .join(Ticket, Ticket.id == Message.ticket_id)
        .where(
            Ticket.source.in_(list(sources)),
            Message.direction.in_(("outbound", "internal")),
            Message.delivered_at.is_(None),
            Message.delivery_error.is_(None),
            Message.delivery_attempts == 0,
            Message.created_at < utcnow() - older_than,
        )
        .distinct()
        .order_by(Message.ticket_id)
        .limit(limit)
    )
    return list(db.execute(stmt).scalars())


def _outbound(db: Session, ticket: Ticket, message: Message) -> OutboundMessage:
    thread = tuple(
        m
        for m in db.execute(
            select(Message.external_id)
            .where(Message.ticket_id == ticket.id, Message.external_id.is_not(None), Message.direction != "internal")
            .order_by(Message.id)
        ).scalars()
        if m is not None  # excluded by the query already; narrows the type
    )
    answers = db.execute(  # the customer's latest message before this one: what it replies to
        select(Message.external_id)
        .where(Message.ticket_id == ticket.id, Message.direction == "inbound", Message.external_id.is_not(None), Message.id < message.id)
        .order_by(Message.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return OutboundMessage(
        message_id=message.id,
        ticket_id=ticket.id,
        ticket_external_id=ticket.external_id,
        customer=ticket.customer,
        subject=ticket.subject,
        body=message.body,
        public=message.direction == "outbound",
        thread=thread,
        in_reply_to=answers,
    )


def deliver_pending(*, session_factory: sessionmaker[Session], ticket_id: int, channels: dict[str, ReplyChannel]) -> DeliveryReport:
    """Raises TransientError after trying every message if any needs a retry (the Celery task retries with backoff)."""
    report = DeliveryReport()
    with session_factory() as db:
        ticket = db.get(Ticket, ticket_id)
        if ticket is None or ticket.source not in channels:
            return report  # no channel for this source (api, file, eval): the reply is read from the API/CLI
        ids = [m.id for m in pending(db=db, ticket_id=ticket_id)]
    channel = channels[ticket.source]
    for message_id in ids:
        with transaction(session_factory) as db:
            message = db.execute(
                select(Message)
                .where(Message.id == message_id, Message.delivered_at.is_(None), Message.delivery_error.is_(None))
                .with_for_update(skip_locked=True)
            ).scalar_one_or_none()
            if message is None:
                continue  # delivered meanwhile, or another worker holds it
            ticket = db.get_one(Ticket, ticket_id)  # the locked message's foreign key holds it
            message.delivery_attempts += 1
            try:
                channel_id = channel.deliver(_outbound(db, ticket, message))
            except DeliveryRefused as exc:
                message.delivery_error = str(exc)[:2000]
                audit.record(
                    db=db, ticket_id=ticket_id, kind="delivery", name="refused", actor=channel.source, error=str(exc)[:2000], result={"message_id": message_id}
                )
                report.refused.append(message_id)
                continue
            except TransientError as exc:
                if message.delivery_attempts >= MAX_ATTEMPTS:
                    message.delivery_error = f"gave up after {message.delivery_attempts} attempts: {exc}"[:2000]
                    audit.record(
                        db=db,
                        ticket_id=ticket_id,
                        kind="delivery",
                        name="gave_up",
                        actor=channel.source,
                        error=str(exc)[:2000],
                        result={"message_id": message_id},
                    )
                    report.refused.append(message_id)
                else:
                    log.warning("delivery.retry", ticket_id=ticket_id, message_id=message_id, error=str(exc))
                    report.retry.append(message_id)
                continue
            message.delivered_at = utcnow()
            if channel_id:
                message.external_id = channel_id[:512]
                report.sent.append(message_id)
            else:
                report.skipped.append(message_id)
            audit.record(
                db=db,
                ticket_id=ticket_id,
                kind="delivery",
                name="sent" if channel_id else "not_sent",
                actor=channel.source,
                result={"message_id": message_id, "channel_id": channel_id, "public": message.direction == "outbound"},
            )
    if report.retry:
        raise TransientError(f"{len(report.retry)} message(s) on ticket {ticket_id} could not be delivered yet")
    report.status = _sync_status(session_factory=session_factory, ticket_id=ticket_id, channel=channel)
    return report


def _sync_status(*, session_factory: sessionmaker[Session], ticket_id: int, channel: ReplyChannel) -> str | None:
    """Mirror an ended ticket's status on the channel. Refused (no such transition): audited, not retried.
    Transient: raised, and the task retries (the messages are already marked delivered, so only this repeats)."""
    with transaction(session_factory) as db:
        ticket = db.execute(select(Ticket).where(Ticket.id == ticket_id).with_for_update()).scalar_one()
        if not ticket.external_id or not channel.syncs_status(ticket.status):
            return None
        try:
            synced = channel.sync_status(ticket_external_id=ticket.external_id, status=ticket.status)
        except DeliveryRefused as exc:
            audit.record(
                db=db,
                ticket_id=ticket_id,
                kind="delivery",
                name="status_refused",
                actor=channel.source,
                error=str(exc)[:2000],
                arguments={"ticket_status": ticket.status},
            )
            log.warning("delivery.status_refused", ticket_id=ticket_id, error=str(exc))
            return None
        if synced is None:
            return None
        before = ticket.external_status
        ticket.external_status = synced.status[:64]
        audit.record(
            db=db,
            ticket_id=ticket_id,
            kind="delivery",
            name="status_synced" if synced.changed else "status_already",
            actor=channel.source,
            arguments={"ticket_status": ticket.status},
            result={"from": before, "to": synced.status, "changed": synced.changed},
        )
        return synced.status
