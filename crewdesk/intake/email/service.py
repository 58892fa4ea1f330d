"""Ingest one raw e-mail in one transaction: a new ticket, a follow-up on its thread, a duplicate, or a recorded
ignore/rejection. The IMAP poller and `crewdesk email import` both call ingest_email. Threading (which ticket a mail
belongs to, whatever order the thread's mail arrives in) is crewdesk.intake.email.threading."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.audit import service as audit
from crewdesk.db import transaction
from crewdesk.intake import events
from crewdesk.intake.email import authresults, threading
from crewdesk.intake.email.attachments import ParsedAttachment
from crewdesk.intake.email.headers import printable
from crewdesk.intake.email.parse import EmailRejected, NeedsPerson, ParsedEmail, parse_email, subject_tag, synthetic_message_id
from crewdesk.settings import MailSettings
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Attachment, Message, Ticket, TicketStatus
from crewdesk.tickets.schemas import MAX_BODY_CHARS, TicketIn

CHANNEL = SOURCE = "email"
IngestStatus = Literal["created", "follow_up", "duplicate", "ignored", "rejected", "needs_person"]  # needs_person: escalated, never queued


@dataclass(frozen=True)
class IngestResult:
    status: IngestStatus
    ticket_id: int | None = None
    message_id: int | None = None  # the messages row, not the Message-ID header
    needs_run: bool = False  # put the ticket on the queue (a new ticket, a reopened one, or one never queued)
    reason: str | None = None


def ingest_email(*, session_factory: sessionmaker[Session], raw: bytes, settings: MailSettings, source_ref: str = "") -> IngestResult:
    own = frozenset({settings.support_address.strip().lower()} - {""})
    rejection: EmailRejected | None = None
    ticket_in: TicketIn | None = None
    try:
        parsed: ParsedEmail | None = parse_email(
            raw, own_addresses=own, max_attachment_bytes=settings.attachment_max_bytes, allowed_types=settings.attachment_types
        )
    except EmailRejected as exc:
        parsed, rejection = None, exc
    if parsed is not None and parsed.ignore_reason is None:
        try:
            ticket_in = _ticket_in(parsed)
        except ValidationError as exc:  # parse guarantees what TicketIn checks; this is the last line of defence
            rejection = EmailRejected(f"not a valid ticket: {exc.errors()[0]['msg']}", message_id=parsed.message_id, evidence=parsed.evidence)
            parsed = None

    external_id = parsed.message_id if parsed else ((rejection.message_id if rejection else None) or synthetic_message_id(raw))
    detail = _detail(parsed, rejection, source_ref)
    with transaction(session_factory) as db:
        event, first_time = events.claim(db=db, channel=CHANNEL, external_id=external_id, kind="message", detail=detail)
        if not first_time:
            return _duplicate(db, event)
        if rejection is not None:
            return _record_rejection(db, event, rejection, raw=raw, detail=detail, external_id=external_id, source_ref=source_ref, home=settings.home)
        assert parsed is not None
        if parsed.ignore_reason is not None:
            # Recorded, never answered; linked to its thread when known (a bounce of our reply is worth seeing there).
            ticket = _thread(db, parsed)
            events.settle(event, status=events.IGNORED, reason=parsed.ignore_reason, ticket_id=ticket.id if ticket else None)
            return IngestResult("ignored", ticket_id=ticket.id if ticket else None, reason=parsed.ignore_reason)
        assert ticket_in is not None
        meta = _meta(parsed, source_ref, truncated=ticket_in.body != parsed.cleaned.strip())
        meta["sender_proof"] = authresults.verify(
            parsed.authentication_results, sender=parsed.sender, single_from=parsed.single_from, authserv_id=settings.email_authserv_id
        ).as_meta(settings.email_authserv_id)
        placement = threading.place(db, parsed, tagged=_tagged(db, parsed))
        ticket = placement.ticket
        message: Message | None
        if ticket is not None:
            status: IngestStatus = "follow_up"
            if placement.adopting:  # a late parent of messages already here: history, it does not reopen an answered ticket
                message = tickets.add_message(
                    db=db, ticket=ticket, direction="inbound", author=parsed.sender, body=ticket_in.body, external_id=parsed.message_id, meta=meta
                )
                needs_run = False
            else:
                message, needs_run = tickets.follow_up(
                    db=db, ticket=ticket, body=ticket_in.body, author=parsed.sender, external_id=parsed.message_id, meta=meta
                )
        else:
            ticket, created = tickets.submit(db=db, ticket_in=ticket_in, message_external_id=parsed.message_id, message_meta=meta)
            if not created:  # the ticket exists (e.g. the same Message-ID arrived before events were recorded)
                placement.container.ticket_id = ticket.id
                events.settle(event, status=events.ACCEPTED, reason="ticket already existed", ticket_id=ticket.id)
                return IngestResult("duplicate", ticket_id=ticket.id, needs_run=ticket.status == TicketStatus.received, reason="ticket already existed")
            message = db.execute(select(Message).where(Message.ticket_id == ticket.id).order_by(Message.id).limit(1)).scalar_one_or_none()
            needs_run, status = True, "created"
            if placement.related is not None:  # a reply on another customer's thread: its own ticket, linked by join()
                _not_the_customer(db, ticket, placement.related)
        if message is not None:
            _store_attachments(db, message, parsed.attachments, settings.home)
        joined = threading.join(db, placement, ticket=ticket, message=message)
        ticket, needs_run = joined.ticket, needs_run or joined.needs_run
        events.settle(event, status=events.ACCEPTED, ticket_id=ticket.id, message_id=message.id if message else None)
        return IngestResult(status, ticket_id=ticket.id, message_id=message.id if message else None, needs_run=needs_run)


def _not_the_customer(db: Session, ticket: Ticket, related: Ticket) -> None:
    """The new ticket says which ticket's thread its mail answered (raw["related_ticket"], beside the link row), and
    the audit trail says why it is a ticket of its own."""
    ticket.raw = {**(ticket.raw or {}), "related_ticket": related.id}
    audit.record(
        db=db,
        ticket_id=ticket.id,
        kind="thread",
        name="not_the_customer",
        actor="email-intake",
        result={"related_ticket": related.id, "reason": f"a reply on ticket {related.id}'s thread from another address than its customer's"},
    )


def _ticket_in(parsed: ParsedEmail) -> TicketIn:
    body = parsed.cleaned.strip()
    if len(body) > MAX_BODY_CHARS:
        note = f"\n\n[crewdesk: message truncated from {len(body)} to {MAX_BODY_CHARS} characters]"
        body = body[: MAX_BODY_CHARS - len(note)].rstrip() + note
    return TicketIn(source=SOURCE, external_id=_ticket_external_id(parsed.message_id), customer=parsed.sender, subject=parsed.subject[:998], body=body)


def _ticket_external_id(message_id: str) -> str:
    # tickets.external_id holds 255 characters, Message-IDs up to 512: hash the rare long one instead of cutting it.
    if len(message_id) <= 255:
        return message_id
    return f"sha256-{hashlib.sha256(message_id.encode('utf-8', 'replace')).hexdigest()[:32]}@crewdesk.invalid"


def _thread(db: Session, parsed: ParsedEmail) -> Ticket | None:
    """The ticket an ignored mail belongs to, read only (it is recorded, never threaded): our subject tag, else
    In-Reply-To / References against stored Message-IDs."""
    tagged = _tagged(db, parsed)
    if tagged is not None:
        return tagged
    return tickets.find_by_message_ids(db=db, source=SOURCE, message_ids=threading.references(parsed))


def _tagged(db: Session, parsed: ParsedEmail) -> Ticket | None:
    """The ticket our subject tag `[crewdesk #N]` names, when it is this sender's (a tag alone is easy to forge or to
    forward); a ticket merged since is followed to the ticket that holds its messages now."""
    tagged = subject_tag(parsed.subject)
    if tagged is None or not parsed.sender:
        return None
    candidate = db.get(Ticket, tagged)
    if candidate is None or candidate.customer.strip().lower() != parsed.sender:
        return None
    holder = tickets.merged_into(db=db, ticket_id=candidate.id)
    return candidate if holder == candidate.id else db.get(Ticket, holder)


def _duplicate(db: Session, event) -> IngestResult:
    ticket = db.get(Ticket, event.ticket_id) if event.ticket_id else None
    # Still `received`: the earlier import committed but never queued it (a crash in between); offer it again.
    return IngestResult(
        "duplicate",
        ticket_id=event.ticket_id,
        message_id=event.message_id,
        needs_run=ticket is not None and ticket.status == TicketStatus.received,
        reason=f"already seen ({event.status}); seen {event.seen_count} times",
    )


def _store_attachments(db: Session, message: Message, attachments: list[ParsedAttachment], home: Path) -> None:
    for item in attachments:
        stored = item.data is not None
        if item.data is not None:
            _write_content_addressed(home / "attachments", item.sha256, item.data)
        db.add(
            Attachment(
                message_id=message.id,
                filename=item.filename[:255],
                content_type=item.content_type[:255],
                size=item.size,
                sha256=item.sha256,
                stored=stored,
                refused_reason=item.refused_reason,
            )
        )
    db.flush()


def _write_content_addressed(root: Path, sha256: str, data: bytes) -> Path:
    """Write once under root/ab/abcdef...; a file already there has these bytes by construction. Written before the
    transaction commits, so a committed row always has its file (an orphan file after a rollback is harmless)."""
    path = root / sha256[:2] / sha256
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # atomic: a reader never sees half a file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _attachments_summary(attachments: list[ParsedAttachment]) -> list[dict]:
    return [
        {
            "filename": a.filename,
            "content_type": a.content_type,
            "size": a.size,
            "sha256": a.sha256,
            "stored": a.data is not None,
            "refused_reason": a.refused_reason,
        }
        for a in attachments
    ]


def _meta(parsed: ParsedEmail, source_ref: str, *, truncated: bool) -> dict:
    """The headers worth keeping on the message: threading, who and when, what was odd, what came attached."""
    return {
        "message_id": parsed.message_id,
        "in_reply_to": parsed.in_reply_to,
        "references": parsed.references,
        "from": parsed.sender,
        "from_name": parsed.sender_name,
        "reply_to": parsed.reply_to,
        "to": parsed.to,
        "subject": parsed.subject,
        "date": parsed.date.isoformat() if parsed.date else None,
        "defects": parsed.defects,
        "attachments": _attachments_summary(parsed.attachments),
        "truncated": truncated,
        "source_ref": printable(source_ref)[:1000],
    }


def _detail(parsed: ParsedEmail | None, rejection: EmailRejected | None, source_ref: str) -> dict:
    """Evidence on the inbound event: a few headers and where the mail came from, never the whole mail."""
    if parsed is not None:
        detail = {"headers": parsed.evidence, "from": parsed.sender, "subject": parsed.subject[:300], "defects": parsed.defects[:10]}
    else:
        detail = {"headers": rejection.evidence if rejection else {}}
    detail["source_ref"] = printable(source_ref)[:1000]  # file names can hold undecodable bytes; JSONB refuses them
    return detail


# --- mail no crew can answer: kept whole, with the reason -----------------------------------------------------------

ORIGINAL_NAME = "original.eml"


def _record_rejection(db: Session, event, rejection: EmailRejected, *, raw: bytes, detail: dict, external_id: str, source_ref: str, home: Path) -> IngestResult:
    """Nothing is dropped. The raw mail is stored content-addressed under home/attachments, as attachments are, and
    named (sha256, size, path) on the event and the ticket. A mail that was read but has nobody to answer (NeedsPerson:
    no usable From) becomes an escalated ticket for a person, never queued, with its text, its attachments and the
    original as original.eml. Any other rejection (garbled headers, no text, broken MIME) is a failed ticket with the
    reason, as before."""
    sha256 = hashlib.sha256(raw).hexdigest()
    kept = {"sha256": sha256, "size": len(raw), "path": f"attachments/{sha256[:2]}/{sha256}"}
    event.detail = {**detail, "raw_mail": kept}
    if isinstance(rejection, NeedsPerson):
        original = ParsedAttachment(filename=ORIGINAL_NAME, content_type="message/rfc822", size=len(raw), sha256=sha256, data=raw)
        held = _escalated_for_a_person(db, rejection, original, kept=kept, source_ref=source_ref, home=home)
        if held is not None:
            ticket, message = held
            events.settle(event, status=events.ACCEPTED, reason=rejection.reason, ticket_id=ticket.id, message_id=message.id if message else None)
            return IngestResult("needs_person", ticket_id=ticket.id, message_id=message.id if message else None, reason=rejection.reason)
    _write_content_addressed(home / "attachments", sha256, raw)
    failed = tickets.record_rejected(
        db=db, source=SOURCE, external_id=_ticket_external_id(external_id), reason=f"e-mail rejected: {rejection.reason}", raw={**detail, "raw_mail": kept}
    )
    events.settle(event, status=events.REJECTED, reason=rejection.reason, ticket_id=failed.id)
    return IngestResult("rejected", ticket_id=failed.id, reason=rejection.reason)


def _escalated_for_a_person(
    db: Session, rejection: NeedsPerson, original: ParsedAttachment, *, kept: dict, source_ref: str, home: Path
) -> tuple[Ticket, Message | None] | None:
    """The ticket a person answers (or closes): escalated from the start, with the reason, so no run ever takes it.
    None when its text is not a valid ticket after all: the caller records a failed ticket instead."""
    parsed = rejection.parsed
    try:
        ticket_in = _ticket_in(parsed)
    except ValidationError:
        return None
    existing = tickets.find(db=db, source=SOURCE, external_id=ticket_in.external_id)
    if existing is not None:  # stored before inbound events were recorded
        return existing, None
    ticket = Ticket(
        source=SOURCE,
        external_id=ticket_in.external_id,
        customer="",
        subject=ticket_in.subject,
        body=ticket_in.body,
        status=TicketStatus.escalated,
        status_reason=rejection.reason,
        raw={**ticket_in.model_dump(mode="json"), "raw_mail": kept},
    )
    db.add(ticket)
    db.flush()
    meta = _meta(parsed, source_ref, truncated=ticket_in.body != parsed.cleaned.strip())
    message = tickets.add_message(db=db, ticket=ticket, direction="inbound", body=ticket_in.body, external_id=parsed.message_id, meta=meta)
    _store_attachments(db, message, [*parsed.attachments, original], home)
    return ticket, message
