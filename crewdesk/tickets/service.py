"""Ticket operations: submit idempotently, move through the state machine, record failures; and read back what was
recorded (one ticket with its thread, runs and audit trail; a batch processed in this process)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crewdesk.audit import service as audit
from crewdesk.db import utcnow
from crewdesk.errors import IllegalTransition, TicketNotFound
from crewdesk.inbound.models import InboundEvent
from crewdesk.runs.models import CrewRun
from crewdesk.tickets.models import TERMINAL, TRANSITIONS, Message, Question, QuestionStatus, Ticket, TicketLink, TicketLinkKind, TicketStatus
from crewdesk.tickets.schemas import TicketIn

if TYPE_CHECKING:
    pass


def get(*, db: Session, ticket_id: int, lock: bool = False) -> Ticket:
    stmt = select(Ticket).where(Ticket.id == ticket_id)
    if lock:
        # NO KEY UPDATE: audit rows referencing this ticket (their FK takes KEY SHARE) are not blocked by it.
        stmt = stmt.with_for_update(key_share=True)  # renders FOR NO KEY UPDATE
    ticket = db.execute(stmt).scalar_one_or_none()
    if ticket is None:
        raise TicketNotFound(f"ticket {ticket_id} does not exist")
    return ticket


def find(*, db: Session, source: str, external_id: str) -> Ticket | None:
    return db.execute(select(Ticket).where(Ticket.source == source, Ticket.external_id == external_id)).scalar_one_or_none()


def lookup(*, db: Session, ref: str) -> Ticket:
    """A ticket named the way people name one: its id, or SOURCE:EXTERNAL_ID."""
    if ref.isdigit():
        return get(db=db, ticket_id=int(ref))
    source, _, external = ref.partition(":")
    found = find(db=db, source=source, external_id=external) if external else None
    if found is None:
        raise TicketNotFound(f"no ticket {ref!r} (use an id or SOURCE:EXTERNAL_ID)")
    return found


def submit(
    *,
    db: Session,
    ticket_in: TicketIn,
    message_external_id: str | None = None,
    message_meta: dict | None = None,
    backlog_id: int | None = None,
    submitted_by: str | None = None,
) -> tuple[Ticket, bool]:
    """Store a ticket and its first message unless (source, external_id) exists. Returns (ticket, created).
    message_external_id / message_meta: the channel's id and details for that first message (e.g. its Message-ID).
    submitted_by: the API key's holder who sent it (Ticket.submitted_by), kept beside what they sent."""
    existing = find(db=db, source=ticket_in.source, external_id=ticket_in.external_id)
    if existing is not None:
        return existing, False
    ticket = Ticket(
        source=ticket_in.source,
        external_id=ticket_in.external_id,
        customer=ticket_in.customer,
        subject=ticket_in.subject,
        body=ticket_in.body,
        priority=ticket_in.priority,
        status=TicketStatus.received,
        raw=ticket_in.model_dump(mode="json") | ({"submitted_by": submitted_by} if submitted_by else {}),
        backlog_id=backlog_id,
    )
    try:
        with db.begin_nested():
            db.add(ticket)
            db.flush()
    except IntegrityError:
        # A concurrent submit won the unique key: return its row.
        existing = find(db=db, source=ticket_in.source, external_id=ticket_in.external_id)
        if existing is None:
            raise
        return existing, False
    add_message(db=db, ticket=ticket, direction="inbound", author=ticket.customer, body=ticket.body, external_id=message_external_id, meta=message_meta)
    return ticket, True


def add_message(
    *, db: Session, ticket: Ticket, direction: str, body: str, author: str = "", external_id: str | None = None, meta: dict | None = None
) -> Message:
    message = Message(
        ticket_id=ticket.id, direction=direction, author=author[:320], body=body, external_id=external_id[:512] if external_id else None, meta=meta
    )
    db.add(message)
    db.flush()
    return message


def follow_up(*, db: Session, ticket: Ticket, body: str, author: str = "", external_id: str | None = None, meta: dict | None = None) -> tuple[Message, bool]:
    """The customer wrote again on a ticket. Returns (message, needs_run).

    A ticket waiting on the customer is resumed (queued): its run reads the answer against the question it asked. A
    resolved ticket is reopened (queued) so the crew answers the new message with the whole conversation. A ticket
    not yet worked (received, queued) needs nothing more: its run will read the new message. One a human owns
    (escalated, awaiting approval) or that is being worked right now keeps its state; the message waits for them."""
    message = add_message(db=db, ticket=ticket, direction="inbound", author=author, body=body, external_id=external_id, meta=meta)
    status = ticket.status
    if status in (TicketStatus.waiting_on_customer, TicketStatus.no_reply):
        transition(ticket=ticket, to=TicketStatus.queued, reason="resumed: the customer answered")
        return message, True
    if status in (TicketStatus.resolved, TicketStatus.failed):
        transition(ticket=ticket, to=TicketStatus.queued, reason="reopened: the customer wrote again")
        return message, True
    return message, False


def open_question(*, db: Session, ticket_id: int) -> Question | None:
    """The question the ticket waits on (the latest one asked and not yet answered), if any."""
    return (
        db.execute(select(Question).where(Question.ticket_id == ticket_id, Question.status == QuestionStatus.open).order_by(Question.id.desc()))
        .scalars()
        .first()
    )


def ask(*, db: Session, ticket_id: int, run_id: int | None, state: dict, after_message_id: int) -> Question:
    """Record the question a run ends with; an earlier one still open is closed as answered (this run read the thread)."""
    for earlier in db.execute(select(Question).where(Question.ticket_id == ticket_id, Question.status == QuestionStatus.open)).scalars():
        mark_answered(question=earlier, message_id=None)
    turn = 1 + db.execute(select(func.count(Question.id)).where(Question.ticket_id == ticket_id)).scalar_one()
    question = Question(ticket_id=ticket_id, run_id=run_id, turn=turn, state=state, after_message_id=after_message_id)
    db.add(question)
    db.flush()
    return question


def answers(*, db: Session, question: Question) -> list[Message]:
    """The customer's messages after the question was asked: their answer, in order."""
    return list(
        db.execute(
            select(Message)
            .where(Message.ticket_id == question.ticket_id, Message.direction == "inbound", Message.id > question.after_message_id)
            .order_by(Message.id)
        ).scalars()
    )


def without_our_words(*, db: Session, ticket_id: int, text: str) -> str:
    """The customer's answer without the sentences of our own replies on this ticket that it repeats (a reply that quotes
    us, a client that pasted our message back): our words are never read as the customer's. What is left may be empty."""
    ours = db.execute(select(Message.body).where(Message.ticket_id == ticket_id, Message.direction == "outbound")).scalars()
    ours_folded = [" ".join(body.split()).casefold() for body in ours]

    def repeated(part: str) -> bool:  # three words or more of it stand in one of our replies ("Yes." is the customer's)
        folded = " ".join(part.split()).casefold().strip("\"'> ")
        return len(folded.split()) >= 3 and any(folded in body for body in ours_folded)

    kept = [p for p in re.split(r"(?<=[.!?:])\s+|\n+", text) if p.strip() and not repeated(p)]
    return "\n".join(kept)


def mark_answered(*, question: Question, message_id: int | None) -> None:
    question.status, question.answer_message_id, question.answered_at = QuestionStatus.answered, message_id, utcnow()


def last_inbound_id(*, db: Session, ticket_id: int) -> int:
    from sqlalchemy import func

    return db.execute(select(func.coalesce(func.max(Message.id), 0)).where(Message.ticket_id == ticket_id, Message.direction == "inbound")).scalar_one()


def find_by_message_ids(*, db: Session, source: str, message_ids: list[str]) -> Ticket | None:
    """The ticket one of these channel message ids belongs to (email threading by In-Reply-To/References)."""
    ids = [m[:512] for m in message_ids if m]
    if not ids:
        return None
    row = db.execute(
        select(Ticket)
        .join(Message, Message.ticket_id == Ticket.id)
        .where(Ticket.source == source, Message.external_id.in_(ids))
        .order_by(Message.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return row


def written_at(message: Message) -> datetime:
    """When a message was written: an e-mail's Date header (mail imported or threaded out of order keeps its place),
    else when crewdesk stored it. A Date without a zone is taken as UTC."""
    stamped = (message.meta or {}).get("date") if message.direction == "inbound" else None
    if isinstance(stamped, str):
        try:
            when = datetime.fromisoformat(stamped)
        except ValueError:
            return message.created_at
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return message.created_at


def conversation(*, db: Session, ticket: Ticket) -> str:
    """What the crew reads: the ticket text, or with follow-ups the whole thread in order (customer and our replies)."""
    messages = list(db.execute(select(Message).where(Message.ticket_id == ticket.id, Message.direction != "internal").order_by(Message.id)).scalars())
    if sum(1 for m in messages if m.direction == "inbound") <= 1:
        return ticket.body
    parts = []
    for m in sorted(messages, key=lambda m: (written_at(m), m.id)):  # a late parent reads before its replies
        who = "Customer" if m.direction == "inbound" else "Support (our earlier reply)"
        parts.append(f"--- {who}, {written_at(m):%Y-%m-%d %H:%M} ---\n{m.body}")
    parts.append("--- Answer the customer's latest message, using the conversation above. ---")
    return "\n\n".join(parts)


def without_nul(value: object) -> object:
    """PostgreSQL text and JSONB refuse NUL; keep the rest of bad input as evidence."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {str(without_nul(k)): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def record_rejected(*, db: Session, source: str, external_id: str, reason: str, raw: dict | str | None) -> Ticket:
    """Keep bad input as a failed ticket with its reason, so nothing is silently dropped."""
    external_id = str(without_nul(external_id))
    existing = find(db=db, source=source, external_id=external_id)
    if existing is not None:
        return existing
    ticket = Ticket(
        source=source,
        external_id=external_id,
        status=TicketStatus.failed,
        status_reason=without_nul(reason),
        raw=without_nul(raw if isinstance(raw, dict) else {"text": str(raw)[:10_000]}),
    )
    db.add(ticket)
    db.flush()
    return ticket


def transition(*, ticket: Ticket, to: TicketStatus, reason: str | None = None) -> None:
    current = ticket.status
    if to not in TRANSITIONS[current]:
        raise IllegalTransition(f"ticket {ticket.id}: {current} -> {to} is not allowed")
    ticket.status = to
    if reason is not None:
        ticket.status_reason = reason


def is_terminal(ticket: Ticket) -> bool:
    return ticket.status in TERMINAL


def mark_queued(*, db: Session, ticket_ids: list[int]) -> int:
    """received -> queued in one conditional UPDATE. The ticket was sent to the broker before this runs, so a worker
    may already have moved it on (received -> triaging): the condition keeps that, where a read-then-write would
    overwrite it with `queued`. Returns how many moved."""
    if not ticket_ids:
        return 0
    assert TicketStatus.queued in TRANSITIONS[TicketStatus.received]
    stmt = (
        update(Ticket)
        .where(Ticket.id.in_(ticket_ids), Ticket.status == TicketStatus.received)
        .values(status=TicketStatus.queued)
        .execution_options(synchronize_session="fetch")
    )
    return cast(CursorResult, db.execute(stmt)).rowcount


def customer_history(*, db: Session, customer: str, exclude_ticket_id: int | None = None, limit: int = 5) -> list[Ticket]:
    if not customer:
        return []
    stmt = select(Ticket).where(Ticket.customer == customer).order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(limit)
    if exclude_ticket_id is not None:
        stmt = stmt.where(Ticket.id != exclude_ticket_id)
    return list(db.execute(stmt).scalars())


# Statuses a ticket may stall in: waiting for a worker or in a run. awaiting_approval stalls only once nothing is
# pending any more (a decision whose resume was lost); while an approval is pending it waits for a person, rightly.
STALLABLE = (TicketStatus.received, TicketStatus.queued, TicketStatus.triaging, TicketStatus.in_progress)


def stalled(*, db: Session, idle_for: timedelta, limit: int = 1000) -> list[Ticket]:
    """Tickets that are not terminal and have not moved for longer than `idle_for`, oldest first."""
    from crewdesk.approvals.models import Approval, ApprovalStatus

    cutoff = utcnow() - idle_for
    pending = select(Approval.id).where(Approval.ticket_id == Ticket.id, Approval.status == ApprovalStatus.pending).exists()
    stuck = or_(Ticket.status.in_(list(STALLABLE)), (Ticket.status == TicketStatus.awaiting_approval) & ~pending)
    return list(db.execute(select(Ticket).where(stuck, Ticket.updated_at < cutoff).order_by(Ticket.updated_at).limit(limit)).scalars())


def touch(*, db: Session, ticket: Ticket) -> None:
    """Mark the ticket as moved now (the reconciler's re-enqueue), and received -> queued."""
    if ticket.status == TicketStatus.received:
        transition(ticket=ticket, to=TicketStatus.queued)
    ticket.updated_at = utcnow()


# One conversation found in two tickets (e-mail that arrived out of order): merge the later into the thread's ticket
# when nobody has worked on it yet, else link the two.

BEING_WORKED = frozenset({TicketStatus.triaging, TicketStatus.in_progress, TicketStatus.awaiting_approval})
_UNTOUCHED = frozenset({TicketStatus.received, TicketStatus.queued})


@dataclass(frozen=True)
class Merged:
    moved: int  # messages moved into the target
    reopened: bool  # the target had ended (resolved, failed) and goes back to the queue to answer what it received


def locked(*, db: Session, ticket_id: int) -> Ticket:
    """The ticket locked for this transaction, read afresh (a worker may have moved it on since it was loaded)."""
    stmt = select(Ticket).where(Ticket.id == ticket_id).with_for_update(key_share=True).execution_options(populate_existing=True)
    ticket = db.execute(stmt).scalar_one_or_none()
    if ticket is None:
        raise TicketNotFound(f"ticket {ticket_id} does not exist")
    return ticket


def unmergeable(*, db: Session, ticket: Ticket) -> str | None:
    """Why `ticket` may not be emptied into another one, or None. Only a ticket nobody has worked on merges: received
    or queued, no crew run, nothing written to the customer or the team. Lock it first (`locked`)."""
    if ticket.status not in _UNTOUCHED:
        return f"ticket {ticket.id} is {ticket.status}"
    if db.scalar(select(CrewRun.id).where(CrewRun.ticket_id == ticket.id).limit(1)) is not None:
        return f"ticket {ticket.id} has a crew run"
    if db.scalar(select(Message.id).where(Message.ticket_id == ticket.id, Message.direction != "inbound").limit(1)) is not None:
        return f"ticket {ticket.id} has replies or notes"
    return None


def link_between(*, db: Session, a: int, b: int) -> TicketLink | None:
    """The merge or link recorded between two tickets, either way round."""
    pair = or_((TicketLink.ticket_id == a) & (TicketLink.other_id == b), (TicketLink.ticket_id == b) & (TicketLink.other_id == a))
    return db.execute(select(TicketLink).where(pair).limit(1)).scalar_one_or_none()


def merged_into(*, db: Session, ticket_id: int) -> int:
    """The ticket that holds `ticket_id`'s messages now: itself, or where it was merged (followed to the end)."""
    seen = {ticket_id}
    while True:
        target = db.scalar(select(TicketLink.other_id).where(TicketLink.ticket_id == ticket_id, TicketLink.kind == TicketLinkKind.merged).limit(1))
        if target is None or target in seen:
            return ticket_id
        seen.add(target)
        ticket_id = target


def merge(*, db: Session, source: Ticket, target: Ticket, reason: str, actor: str = "intake") -> Merged:
    """Move every message of `source` into `target` and close `source` (resolved, status_reason naming the target)
    so it is never answered: a worker that takes it from the queue finds it ended. Its inbound events follow the
    messages; a merge link and one audit row on each ticket record it. Lock both first (`locked`).

    Refused (IllegalTransition) when `source` is not mergeable (see `unmergeable`) or `target` is being worked on (a
    running crew would not see messages older than what it read): link them instead. A target that had ended is
    reopened (queued), so the crew answers the messages it never saw, with the whole thread."""
    if source.id == target.id:
        raise IllegalTransition(f"ticket {source.id} cannot be merged into itself")
    problem = unmergeable(db=db, ticket=source)
    if problem is None and target.status in BEING_WORKED:
        problem = f"ticket {target.id} is {target.status}"
    if problem is not None:
        raise IllegalTransition(f"ticket {source.id} cannot be merged into {target.id}: {problem}")
    count = select(func.count()).select_from(Message)
    before = db.scalar(count.where(Message.ticket_id.in_([source.id, target.id])))
    stmt = update(Message).where(Message.ticket_id == source.id).values(ticket_id=target.id).execution_options(synchronize_session="fetch")
    moved = cast(CursorResult, db.execute(stmt)).rowcount
    db.execute(update(InboundEvent).where(InboundEvent.ticket_id == source.id).values(ticket_id=target.id).execution_options(synchronize_session="fetch"))
    if db.scalar(count.where(Message.ticket_id == target.id)) != before:  # pragma: no cover - a guard: nothing is lost
        raise IllegalTransition(f"merging ticket {source.id} into {target.id} would lose messages")
    db.expire(source, ["messages"])
    db.expire(target, ["messages"])
    # Not a crew outcome, so not through TRANSITIONS (received/queued -> resolved is no step of a run): the ticket is
    # closed as a duplicate of the thread's ticket, with no status row in the audit trail (KPIs do not count it).
    source.status, source.status_reason = TicketStatus.resolved, f"merged into ticket {target.id}: {reason}"[:2000]
    reopened = target.status in (TicketStatus.resolved, TicketStatus.failed, TicketStatus.waiting_on_customer, TicketStatus.no_reply)
    if reopened:
        transition(ticket=target, to=TicketStatus.queued, reason=f"reopened: ticket {source.id}'s messages joined its thread")
    db.add(TicketLink(ticket_id=source.id, other_id=target.id, kind=TicketLinkKind.merged, reason=reason[:2000]))
    db.flush()
    audit.record(db=db, ticket_id=source.id, kind="thread", name="merged", actor=actor, result={"into_ticket": target.id, "messages": moved, "reason": reason})
    audit.record(
        db=db,
        ticket_id=target.id,
        kind="thread",
        name="merged_in",
        actor=actor,
        result={"from_ticket": source.id, "messages": moved, "reason": reason, "reopened": reopened},
    )
    return Merged(moved=moved, reopened=reopened)


def link(*, db: Session, ticket: Ticket, other: Ticket, reason: str, actor: str = "intake") -> bool:
    """Record that `ticket` (the later one) and `other` (the thread's ticket) are one conversation kept apart: one of
    them was already being worked on. Both keep their messages and status; an audit row on each says so. Returns
    False when the two were already merged or linked."""
    if ticket.id == other.id or link_between(db=db, a=ticket.id, b=other.id) is not None:
        return False
    db.add(TicketLink(ticket_id=ticket.id, other_id=other.id, kind=TicketLinkKind.linked, reason=reason[:2000]))
    db.flush()
    audit.record(db=db, ticket_id=ticket.id, kind="thread", name="linked", actor=actor, result={"other_ticket": other.id, "reason": reason})
    audit.record(db=db, ticket_id=other.id, kind="thread", name="linked", actor=actor, result={"other_ticket": ticket.id, "reason": reason})
    return True


def assign(*, db: Session, ticket_id: int, to: str | None, by: str) -> Ticket:
    """A person takes the ticket (`to` is their name) or lets it go (`to` None): recorded on the ticket and as an audit
    row under `by`'s name, with who held it before. Taking it over from someone else is allowed and audited as such."""
    ticket = get(db=db, ticket_id=ticket_id, lock=True)
    before = ticket.assigned_to
    ticket.assigned_to = to
    audit.record(db=db, ticket_id=ticket.id, kind="person", name="took" if to else "released", actor=by, arguments={"from": before, "to": to})
    return ticket
