"""Right to erasure in PostgreSQL: what a customer wrote and what was written to them leaves every ticket of theirs.

Erased: the ticket's customer, subject, body, raw import record, triage and resolution; every message's text, author
and channel details; attachments (rows, and files no other ticket shares); the PII token vault of those tickets; the
evidence kept on their inbound events; the arguments and results kept for replaying tool calls and approvals; run
errors. Kept: ids, statuses, categories, timings, token counts, the channel's ticket id (so the same mail or issue
arriving again is still recognised, not made a new ticket) and the hash-chained audit trail, which is append-only by
design: its rows still hold the runs' prompts and tool calls, with PII as vault tokens whose values are erased here,
but with the rest of the customer's words. The erasure itself is audited, under the customer's key (a hash), never
the address.

Tickets still being worked on (queued, running, awaiting approval) are left alone and reported: erase them once they
end, by running the same command again."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from crewdesk.approvals.models import Approval
from crewdesk.audit import service as audit
from crewdesk.effects.models import ToolEffect
from crewdesk.inbound.models import InboundEvent
from crewdesk.pii import PIIToken
from crewdesk.runs.models import CrewRun
from crewdesk.tickets.models import TERMINAL, Attachment, Message, Question, Ticket, TicketStatus

ERASED = "(erased)"
# received: stored but never queued (an interrupted import); nothing is working on it either.
ERASABLE = frozenset(set(TERMINAL) | {TicketStatus.received})


@dataclass
class Erasure:
    tickets: list[int] = field(default_factory=list)
    messages: int = 0
    attachments: int = 0
    files: int = 0
    still_open: list[int] = field(default_factory=list)  # not erased: a run may still read or write them
    files_to_remove: list[Path] = field(default_factory=list, repr=False)  # attachment files no remaining row shares

    def summary(self) -> str:
        text = f"tickets: {len(self.tickets)} erased ({self.messages} messages, {self.attachments} attachments, {self.files} files)"
        if self.still_open:
            text += f"; {len(self.still_open)} still open, not erased: " + ", ".join(f"#{t}" for t in self.still_open)
        return text


def normalise(customer: str) -> str:
    return " ".join(customer.split()).casefold()


def erase_customer(*, db: Session, customer: str, customer_key: str, attachments_dir: Path) -> Erasure:
    """Erase the customer's ended tickets (see the module). Runs in the caller's transaction; the files of erased
    attachments are removed only when the caller's commit has succeeded: call remove_files(result) after it."""
    wanted = normalise(customer)
    if not wanted:
        raise ValueError("no customer given")
    rows = db.execute(select(Ticket.id, Ticket.status).where(func.lower(func.trim(Ticket.customer)) == wanted).order_by(Ticket.id).with_for_update()).all()
    result = Erasure(tickets=[t for t, status in rows if status in ERASABLE], still_open=[t for t, status in rows if status not in ERASABLE])
    ids = result.tickets
    if ids:
        theirs = select(Message.id).where(Message.ticket_id.in_(ids))
        hashes = set(db.execute(select(Attachment.sha256).where(Attachment.message_id.in_(theirs), Attachment.stored)).scalars())
        result.attachments = cast(CursorResult, db.execute(delete(Attachment).where(Attachment.message_id.in_(theirs)))).rowcount
        shared = set(db.execute(select(Attachment.sha256).where(Attachment.sha256.in_(hashes))).scalars())
        result.files_to_remove = [attachments_dir / h[:2] / h for h in sorted(hashes - shared)]
        result.messages = cast(CursorResult, db.execute(update(Message).where(Message.ticket_id.in_(ids)).values(body=ERASED, author="", meta=None))).rowcount
        db.execute(
            update(Ticket)
            .where(Ticket.id.in_(ids))
            .values(customer=ERASED, subject=ERASED, body=ERASED, raw=None, triage=None, resolution=None, status_reason=None)
        )
        db.execute(delete(PIIToken).where(PIIToken.ticket_id.in_(ids)))
        db.execute(delete(Question).where(Question.ticket_id.in_(ids)))  # the request and the candidates a waiting ticket kept
        db.execute(update(InboundEvent).where(InboundEvent.ticket_id.in_(ids)).values(detail=None))
        db.execute(update(ToolEffect).where(ToolEffect.ticket_id.in_(ids)).values(arguments={"erased": True}, result=None))
        db.execute(update(Approval).where(Approval.ticket_id.in_(ids)).values(arguments={"erased": True}, reason=None))
        db.execute(update(CrewRun).where(CrewRun.ticket_id.in_(ids), CrewRun.error.is_not(None)).values(error=ERASED))
    audit.record(
        db=db,
        kind="erasure",
        name="customer",
        actor="crewdesk memory forget",
        arguments={"customer_key": customer_key},
        result={"tickets": ids, "messages": result.messages, "attachments": result.attachments, "still_open": result.still_open},
    )
    return result


def remove_files(result: Erasure) -> Erasure:
    """After the commit: delete attachment files that no remaining row refers to."""
    for path in result.files_to_remove:
        if path.exists():
            path.unlink()
            result.files += 1
    return result
