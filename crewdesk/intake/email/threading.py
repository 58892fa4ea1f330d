"""E-mail threading after JWZ (Jamie Zawinski's algorithm, the one mail clients use: https://www.jwz.org/doc/threading.html),
over an index that persists across imports and polls, so the result does not depend on the order mail arrives in.

The index (crewdesk.inbound.models.EmailContainer) holds one container per Message-ID seen: a message we stored, or
only a name in another mail's References / In-Reply-To (a placeholder for a parent not yet arrived, or never to).
For each mail, in the ingest's own transaction (serialised by one advisory lock on PostgreSQL):

1. The containers of the mail and of every id it names are found or made. Consecutive ids of References are linked
   parent -> child where the child has no parent yet and no loop forms; the mail's own container goes under the last
   id it names (its own word beats what other mails presumed). Linked containers share a thread.
2. Its ticket: the subject tag `[crewdesk #N]` of the sender's ticket wins (the mail is threaded under that ticket);
   else the ticket of the nearest id it names or ancestor that has one; else the ticket of its replies that came
   before it (a late parent adopts them); else that of its siblings under a missing parent; else a new ticket.
   Only a ticket whose customer is the mail's sender counts (same_customer): a stranger's reply with the right
   References gets a new ticket of its own, linked to the thread's (step 3), and the old ticket is not touched.
3. When the mail joins threads that had tickets of their own, they become one: the messages of the tickets nobody
   has worked on move into the thread's ticket (one already answered, else the oldest; never one a crew is working
   on right now) and the emptied tickets are closed, never answered; a ticket already being worked on, or answered,
   or another customer's, is linked instead (crewdesk.tickets.service: merge, link). Audit rows say which.

JWZ's last steps (pruning empty containers, grouping roots by subject) are left out: placeholders are what let a
late parent find its replies, and two customers writing "Refund" are not one conversation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from crewdesk.audit import service as audit
from crewdesk.inbound.models import EmailContainer
from crewdesk.intake.email.parse import ParsedEmail
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket

SOURCE = "email"
MAX_ID = 512  # messages.external_id and email_containers.external_id
_LOCK_KEY = 0x7468_7264 << 32  # "thrd": apart from the poller's ("mail" << 32 | hash) and the pipeline's ("crew" << 32 | id)


def references(parsed: ParsedEmail) -> list[str]:
    """The ids this mail names as its ancestors, oldest first: References, then In-Reply-To when References lacks it."""
    ids = list(parsed.references)
    if parsed.in_reply_to and parsed.in_reply_to not in ids:
        ids.append(parsed.in_reply_to)
    own = parsed.message_id[:MAX_ID]
    return [i for i in dict.fromkeys(i[:MAX_ID] for i in ids if i) if i != own]


class _Index:
    """The containers of the threads this mail touches, whole threads at a time (a thread is one query: thread_key)."""

    def __init__(self, db: Session) -> None:
        self.db = db
        self.by_key: dict[str, EmailContainer] = {}
        self.by_id: dict[int, EmailContainer] = {}
        self.threads: set[str] = set()

    def load(self, *, external_ids: list[str] | None = None, ticket_id: int | None = None) -> None:
        stmt = select(EmailContainer.thread_key).distinct()
        if external_ids is not None:
            wanted = [i for i in external_ids if i not in self.by_key]
            if not wanted:
                return
            stmt = stmt.where(EmailContainer.external_id.in_(wanted))
        else:
            stmt = stmt.where(EmailContainer.ticket_id == ticket_id)
        keys = set(self.db.execute(stmt).scalars()) - self.threads
        if keys:
            for container in self.db.execute(select(EmailContainer).where(EmailContainer.thread_key.in_(keys))).scalars():
                self._add(container)
            self.threads |= keys

    def _add(self, container: EmailContainer) -> None:
        self.by_key[container.external_id] = container
        self.by_id[container.id] = container

    def get(self, external_id: str) -> EmailContainer:
        found = self.by_key.get(external_id)
        if found is None:  # never seen: a thread of its own, keyed by its id
            found = EmailContainer(external_id=external_id, thread_key=external_id)
            self.db.add(found)
            self.db.flush()
            self._add(found)
            self.threads.add(external_id)
        return found

    def parent(self, container: EmailContainer) -> EmailContainer | None:
        return self.by_id.get(container.parent_id) if container.parent_id is not None else None

    def ancestors(self, container: EmailContainer) -> list[EmailContainer]:
        chain, seen, node = [], {container.id}, self.parent(container)
        while node is not None and node.id not in seen:
            chain.append(node)
            seen.add(node.id)
            node = self.parent(node)
        return chain

    def is_ancestor_or_self(self, a: EmailContainer, b: EmailContainer) -> bool:
        return a is b or any(node is a for node in self.ancestors(b))

    def set_parent(self, child: EmailContainer, parent: EmailContainer) -> None:
        """Put `child` (and what hangs under it) under `parent`: they take the parent's thread key. A child moved
        from a presumed parent leaves the rest of that thread where it was."""
        moving = [child, *self.descendants(child)]
        child.parent_id = parent.id
        for node in moving:
            node.thread_key = parent.thread_key

    def thread(self, container: EmailContainer) -> list[EmailContainer]:
        return [node for node in self.by_id.values() if node.thread_key == container.thread_key]

    def descendants(self, container: EmailContainer) -> list[EmailContainer]:
        children: dict[int, list[EmailContainer]] = {}
        for node in self.thread(container):
            if node.parent_id is not None:
                children.setdefault(node.parent_id, []).append(node)
        found, todo, seen = [], list(children.get(container.id, [])), {container.id}
        while todo:
            node = todo.pop()
            if node.id in seen:
                continue
            seen.add(node.id)
            found.append(node)
            todo.extend(children.get(node.id, []))
        return found


@dataclass
class Placement:
    """Where a mail goes: an existing ticket, or a new one (ticket None). `how` says why, for the record."""

    index: _Index = field(repr=False)
    container: EmailContainer
    ticket: Ticket | None
    how: str  # tag | reference | adopted | sibling | new
    adopting: bool = False  # the mail is an ancestor of messages already on that ticket: it came late
    related: Ticket | None = None  # a new ticket's thread already has this ticket of another customer: linked, never joined


@dataclass(frozen=True)
class Joined:
    ticket: Ticket  # where the mail's message is now (the thread's ticket, when its own was merged into it)
    needs_run: bool  # a merge reopened that ticket: queue it
    merged: list[int] = field(default_factory=list)  # tickets emptied into it
    linked: list[int] = field(default_factory=list)  # tickets of the same thread kept apart (being worked on)


def lock(db: Session) -> None:
    """One threading ingest at a time (until the transaction ends): two mails of one thread arriving together must
    not both miss each other. SQLite has one writer anyway."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})


def place(db: Session, parsed: ParsedEmail, *, tagged: Ticket | None) -> Placement:
    """Thread the mail into the index (step 1) and choose its ticket (step 2). Call `join` once its message is stored."""
    lock(db)
    index = _Index(db)
    own = parsed.message_id[:MAX_ID]
    refs = references(parsed)
    index.load(external_ids=[own, *refs])
    chain = [index.get(r) for r in refs]
    me = index.get(own)
    _known_messages(db, [c for c in chain if c.ticket_id is None and c.message_id is None])
    for parent, child in pairwise(chain):
        if child.parent_id is None and not index.is_ancestor_or_self(child, parent):
            index.set_parent(child, parent)
    anchor: EmailContainer | None = chain[-1] if chain else None
    if tagged is not None:  # the tag wins: under the tagged ticket's latest message, whatever References say
        index.load(ticket_id=tagged.id)
        anchor = max((c for c in index.by_id.values() if c.ticket_id == tagged.id and c is not me), key=lambda c: c.id, default=None)
    if anchor is not None and not index.is_ancestor_or_self(me, anchor):
        index.set_parent(me, anchor)
    db.flush()

    later = [c for c in index.descendants(me) if c.ticket_id is not None]
    if tagged is not None:
        return Placement(index, me, tagged, "tag", adopting=any(c.ticket_id == tagged.id for c in later))
    related: Ticket | None = None
    for how, candidates in (("reference", [*reversed(chain), *index.ancestors(me)]), ("adopted", later), ("sibling", index.thread(me))):
        found = [tickets.get(db=db, ticket_id=i) for i in dict.fromkeys(c.ticket_id for c in candidates if c.ticket_id is not None and c is not me)]
        senders = [t for t in found if same_customer(t, parsed.sender)]
        related = related or (found[0] if found else None)
        if senders:
            ticket = senders[0] if how == "reference" else _threads_ticket(db, [t.id for t in senders])
            return Placement(index, me, ticket, how, adopting=any(c.ticket_id == ticket.id for c in later))
    return Placement(index, me, None, "new", related=related)


def same_customer(ticket: Ticket, sender: str) -> bool:
    """A mail joins a ticket only when its From is the ticket's customer (case-insensitive): naming a ticket's
    Message-IDs in References is no proof of anything (our ids are random, but a customer can forward our mail, and a
    thread can be Cc'd). Tickets record no Cc'd collaborators, so there is no list of others who may join."""
    return bool(sender) and ticket.customer.strip().lower() == sender.strip().lower()


def join(db: Session, placement: Placement, *, ticket: Ticket, message: Message | None, actor: str = "email-intake") -> Joined:
    """Record the stored message in the index (step 1's container gets its ticket and row), then make the thread one
    ticket (step 3). Returns where the message is now and whether that ticket must go on the queue."""
    me = placement.container
    me.ticket_id = ticket.id
    if message is not None:
        me.message_id = message.id
    db.flush()
    if placement.adopting:
        replies = sorted(c.external_id for c in placement.index.descendants(me) if c.ticket_id == ticket.id)
        audit.record(db=db, ticket_id=ticket.id, kind="thread", name="adopted", actor=actor, result={"parent": me.external_id, "replies": replies[:50]})
    ids = sorted({c.ticket_id for c in placement.index.thread(me) if c.ticket_id is not None})
    if len(ids) < 2:
        return Joined(ticket=ticket, needs_run=False)
    locked = {i: tickets.locked(db=db, ticket_id=i) for i in ids}  # in id order: no deadlock between two ingests
    # Only tickets of this mail's customer become one; another customer's ticket of the same thread is linked, never
    # merged: its messages (and its customer's binding) stay its own.
    mine = [i for i in ids if i == ticket.id or same_customer(locked[i], ticket.customer)]
    target = _threads_ticket(db, mine, locked)
    reason = f"one e-mail thread: <{me.external_id}> joined it"
    merged, linked, reopened = [], [], False
    for other in (locked[i] for i in ids if i != target.id):
        if tickets.link_between(db=db, a=other.id, b=target.id) is not None:
            continue
        if other.id not in mine:
            if tickets.link(db=db, ticket=other, other=target, reason=f"{reason}, from another sender than ticket {other.id}'s customer", actor=actor):
                linked.append(other.id)
        elif tickets.unmergeable(db=db, ticket=other) is None and target.status not in tickets.BEING_WORKED:
            reopened |= tickets.merge(db=db, source=other, target=target, reason=reason, actor=actor).reopened
            db.execute(
                update(EmailContainer).where(EmailContainer.ticket_id == other.id).values(ticket_id=target.id).execution_options(synchronize_session="fetch")
            )
            merged.append(other.id)
        elif tickets.link(db=db, ticket=other, other=target, reason=reason, actor=actor):
            linked.append(other.id)
    db.flush()
    final = target if ticket.id in merged else ticket
    return Joined(ticket=final, needs_run=reopened, merged=merged, linked=linked)


def _threads_ticket(db: Session, ids: list[int], locked: dict[int, Ticket] | None = None) -> Ticket:
    """The thread's ticket among several, the one the others' messages move into: a ticket being worked on right now
    cannot take them (its run would not see them); of the rest, one already worked on (answered: it cannot be merged
    away, and the customer knows it), else the oldest; when every one is being worked on, the oldest."""
    rows = [locked[i] if locked else tickets.get(db=db, ticket_id=i) for i in sorted(set(ids))]
    free = [t for t in rows if t.status not in tickets.BEING_WORKED]
    worked = [t for t in free if tickets.unmergeable(db=db, ticket=t) is not None]
    return (worked or free or rows)[0]


def _known_messages(db: Session, containers: list[EmailContainer]) -> None:
    """Ids named in References that the index does not hold but a stored message does: our own replies (sent by the
    delivery channel, never ingested) and mail stored before the index. They count as present, in their ticket."""
    if not containers:
        return
    wanted = {c.external_id: c for c in containers}
    newest = (
        select(Message.external_id, func.max(Message.id))
        .join(Ticket, Ticket.id == Message.ticket_id)
        .where(Ticket.source == SOURCE, Message.external_id.in_(list(wanted)))
        .group_by(Message.external_id)
    )
    for external_id, message_id in db.execute(newest).all():
        container = wanted[str(external_id)]
        container.message_id = message_id
        container.ticket_id = db.scalar(select(Message.ticket_id).where(Message.id == message_id))
