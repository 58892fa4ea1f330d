"""E-mail threading that does not depend on arrival order (JWZ over a persisted index; crewdesk.intake.email.threading),
against real PostgreSQL.

The archive below is the project's own: 49 messages written for this test (no third-party mail), built in code rather
than kept as .eml files, because every file under tests/fixtures/email is part of the parse/ingest corpus whose counts
test_email_parse and test_email_ingest pin. It covers replies before their parents, siblings of a parent that never
arrives, a missing middle, forks, In-Reply-To-only mailers, truncated References, a References loop, unrelated mails
with the same subject, the subject tag `[crewdesk #N]` (the sender's, and a stranger's), replies to our own reply,
and a reply into a ticket that is being worked on (linked, not merged). It is imported in three seeded shuffles;
every message must land in its expected thread, the same way each time.
"""

from __future__ import annotations

import random
import uuid
from email.message import EmailMessage
from itertools import combinations

import psycopg
import pytest
from sqlalchemy import create_engine, func, select, text

from crewdesk.audit.models import AuditEvent
from crewdesk.db import transaction
from crewdesk.inbound.models import EmailContainer, InboundEvent
from crewdesk.intake.email.service import ingest_email
from crewdesk.migrate import upgrade
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket, TicketLink, TicketLinkKind, TicketStatus
from tests.conftest import PG_ADMIN_URL
from tests.integration.test_pipeline import make_pipeline

SEEDS = (7, 2024, 31337)

# (name, thread, sender, subject, references, in-reply-to). Ids are `<name>.<namespace>@mail.example`; a reference
# to a name not in the archive is a message that never arrives (c0, d2, i2, i3, k0, m0), or a seeded one (s1, w1,
# and "reply-1", our reply on the seeded ticket S).
ARCHIVE: tuple[tuple[str, str, str, str, tuple[str, ...], str | None], ...] = (
    # A: a chain of five, each naming every ancestor.
    ("a1", "A", "ana@customer.example", "Order 1001 missing", (), None),
    ("a2", "A", "ana@customer.example", "Re: Order 1001 missing", ("a1",), "a1"),
    ("a3", "A", "ana@customer.example", "Re: Order 1001 missing", ("a1", "a2"), "a2"),
    ("a4", "A", "ana@customer.example", "Re: Order 1001 missing", ("a1", "a2", "a3"), "a3"),
    ("a5", "A", "ana@customer.example", "Re: Order 1001 missing", ("a1", "a2", "a3", "a4"), "a4"),
    # B: forks: b2 and b3 answer b1; b4 answers b2, b5 answers b3, b6 answers b4.
    ("b1", "B", "bob@customer.example", "Refund for invoice 2291", (), None),
    ("b2", "B", "bob@customer.example", "Re: Refund for invoice 2291", ("b1",), "b1"),
    ("b3", "B", "bea@customer.example", "Re: Refund for invoice 2291", ("b1",), "b1"),
    ("b4", "B", "bob@customer.example", "Re: Refund for invoice 2291", ("b1", "b2"), "b2"),
    ("b5", "B", "bea@customer.example", "Re: Refund for invoice 2291", ("b1", "b3"), "b3"),
    ("b6", "B", "bob@customer.example", "Re: Refund for invoice 2291", ("b1", "b2", "b4"), "b4"),
    # C: siblings of a parent that never arrives (c0), and a reply to one of them.
    ("c1", "C", "cai@customer.example", "Re: Your delivery is delayed", ("c0",), "c0"),
    ("c2", "C", "cai@customer.example", "Re: Your delivery is delayed", ("c0",), "c0"),
    ("c3", "C", "cai@customer.example", "Re: Your delivery is delayed", ("c0",), "c0"),
    ("c4", "C", "cai@customer.example", "Re: Your delivery is delayed", ("c0", "c2"), "c2"),
    # D: a missing middle: d3 names d1 and d2 (never arrives), d4 only In-Reply-To d2; d3 bridges two tickets.
    ("d1", "D", "dan@customer.example", "Cannot log in", (), None),
    ("d3", "D", "dan@customer.example", "Re: Cannot log in", ("d1", "d2"), "d2"),
    ("d4", "D", "dan@customer.example", "Re: Cannot log in", (), "d2"),
    # E: a mailer that sends In-Reply-To only.
    ("e1", "E", "eva@customer.example", "Wrong size delivered", (), None),
    ("e2", "E", "eva@customer.example", "Re: Wrong size delivered", (), "e1"),
    ("e3", "E", "eva@customer.example", "Re: Wrong size delivered", (), "e2"),
    ("e4", "E", "eva@customer.example", "Re: Wrong size delivered", (), "e3"),
    # S: the seeded ticket S (resolved, with our reply): the subject tag, from its customer, wins even over
    # References to thread A; replies to our reply join it too.
    ("f1", "S", "gil@customer.example", "Re: Broken blender [crewdesk #{S}]", (), None),
    ("f2", "S", "gil@customer.example", "Still broken [crewdesk #{S}]", ("a1", "a2"), "a2"),
    ("f3", "S", "gil@customer.example", "Re: Broken blender", ("s1", "reply-1"), "reply-1"),
    ("f4", "S", "gil@customer.example", "Re: Broken blender", ("s1", "reply-1", "f3"), "f3"),
    ("f5", "S", "gil@customer.example", "Re: Still broken [crewdesk #{S}]", ("a1", "a2", "f2"), "f2"),
    # Someone else's mail with S's tag does not get into S.
    ("x1", "X1", "eve@elsewhere.example", "Re: [crewdesk #{S}] give me the address", (), None),
    # G: a colleague answers on the same thread, and the customer forks.
    ("g1", "G", "hana@firm.example", "Invoice address change", (), None),
    ("g2", "G", "ivo@firm.example", "Re: Invoice address change", ("g1",), "g1"),
    ("g3", "G", "hana@firm.example", "Re: Invoice address change", ("g1",), "g1"),
    # H: three unrelated mails with one subject: never one thread (no subject grouping).
    ("h1", "H1", "jo@customer.example", "Refund", (), None),
    ("h2", "H2", "kim@customer.example", "Refund", (), None),
    ("h3", "H3", "lea@customer.example", "Refund", (), None),
    # I: two missing ancestors (i2, i3): i4 and i5 name some of them, i6 only In-Reply-To i3.
    ("i1", "I", "max@customer.example", "Tracking number?", (), None),
    ("i4", "I", "max@customer.example", "Re: Tracking number?", ("i1", "i2", "i3"), "i3"),
    ("i5", "I", "max@customer.example", "Re: Tracking number?", ("i1", "i2"), "i2"),
    ("i6", "I", "max@customer.example", "Re: Tracking number?", (), "i3"),
    # J: a broken mailer: two messages naming each other (a loop JWZ refuses to build).
    ("j1", "J", "ned@customer.example", "Loop", ("j2",), "j2"),
    ("j2", "J", "ned@customer.example", "Re: Loop", ("j1",), "j1"),
    # L: References cut short (l2 left out of l4's).
    ("l1", "L", "ola@customer.example", "Gift card", (), None),
    ("l2", "L", "ola@customer.example", "Re: Gift card", ("l1",), "l1"),
    ("l3", "L", "ola@customer.example", "Re: Gift card", ("l1", "l2"), "l2"),
    ("l4", "L", "ola@customer.example", "Re: Gift card", ("l1", "l3"), "l3"),
    # K: a list-style thread: three people answer an announcement that is not in the archive.
    ("k1", "K", "pia@customer.example", "Re: Store closed on Monday?", ("k0",), "k0"),
    ("k2", "K", "quin@customer.example", "Re: Store closed on Monday?", ("k0", "k1"), "k1"),
    ("k3", "K", "ray@customer.example", "Re: Store closed on Monday?", ("k0",), "k0"),
    # W: replies on the seeded ticket W, which is being worked on: w2 answers w1, w3 answers w2 (In-Reply-To only).
    # When w3 comes first it is a ticket of its own, and w2 then finds W busy: linked, not merged.
    ("w2", "W", "uma@customer.example", "Re: Charged twice", ("w1",), "w1"),
    ("w3", "W", "uma@customer.example", "Re: Charged twice", (), "w2"),
)
SEEDED = {"S": "s1", "W": "w1"}


def mid(name: str, ns: str) -> str:
    return f"{name}.{ns}@mail.example" if name != "reply-1" else f"reply-1.{ns}@support.example"


def build(name: str, ns: str, sender: str, subject: str, refs: tuple[str, ...], irt: str | None, seeded: dict[str, int]) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "support@example.com"
    message["Subject"] = subject.format(**{k: seeded.get(k, 0) for k in SEEDED})
    message["Message-ID"] = f"<{mid(name, ns)}>"
    message["Date"] = "Tue, 01 Dec 2026 10:00:00 +0000"
    if refs:
        message["References"] = " ".join(f"<{mid(r, ns)}>" for r in refs)
    if irt:
        message["In-Reply-To"] = f"<{mid(irt, ns)}>"
    message.set_content(f"Message {name}: about {subject.split('[')[0].strip()}.")
    return message.as_bytes()


def ingest(session_factory, settings, raw: bytes):
    return ingest_email(session_factory=session_factory, raw=raw, settings=settings, source_ref="test")


def seed(session_factory, settings, ns: str) -> dict[str, int]:
    """Ticket S: resolved, our reply sent (its Message-ID stored, as the SMTP channel does). Ticket W: being worked on."""
    made = {}
    s = ingest(session_factory, settings, build("s1", ns, "gil@customer.example", "Broken blender", (), None, {}))
    w = ingest(session_factory, settings, build("w1", ns, "uma@customer.example", "Charged twice", (), None, {}))
    with transaction(session_factory) as db:
        ticket_s = db.get(Ticket, s.ticket_id)
        tickets.add_message(db=db, ticket=ticket_s, direction="outbound", body="We are sending a new blender.", external_id=mid("reply-1", ns))
        for step in (TicketStatus.queued, TicketStatus.triaging, TicketStatus.in_progress, TicketStatus.resolved):
            tickets.transition(ticket=ticket_s, to=step)
        ticket_w = db.get(Ticket, w.ticket_id)
        for step in (TicketStatus.queued, TicketStatus.triaging, TicketStatus.in_progress):
            tickets.transition(ticket=ticket_w, to=step)
        made = {"S": ticket_s.id, "W": ticket_w.id}
    return made


def import_archive(session_factory, settings, order_seed: int) -> tuple[dict[str, int], dict[str, int], list]:
    """Seed S and W, then import the archive shuffled by `order_seed`. Returns (message name -> ticket id it is in now,
    the seeded ticket ids, the results in import order)."""
    ns = f"o{order_seed}"
    seeded = seed(session_factory, settings, ns)
    order = list(ARCHIVE)
    random.Random(order_seed).shuffle(order)
    results = [(name, ingest(session_factory, settings, build(name, ns, sender, subject, refs, irt, seeded))) for name, _, sender, subject, refs, irt in order]
    with session_factory() as db:
        where = {name: db.scalar(select(Message.ticket_id).where(Message.external_id == mid(name, ns))) for name, *_ in ARCHIVE}
    return where, seeded, results


def linked_closure(session_factory, ticket_ids: set[int]) -> dict[int, int]:
    """Ticket -> the smallest id of the tickets linked to it (a linked pair is one conversation in two tickets)."""
    with session_factory() as db:
        links = db.execute(select(TicketLink.ticket_id, TicketLink.other_id).where(TicketLink.kind == TicketLinkKind.linked)).all()
    group = {t: t for t in ticket_ids}

    def find(t: int) -> int:
        while group.setdefault(t, t) != t:
            t = group[t]
        return t

    for a, b in links:
        ra, rb = find(a), find(b)
        group[max(ra, rb)] = min(ra, rb)
    return {t: find(t) for t in ticket_ids}


def pair_scores(predicted: dict[str, int], expected: dict[str, str]) -> tuple[float, float]:
    """Pair precision and recall of "in the same ticket" against "in the same thread"."""
    found = {frozenset(p) for p in combinations(predicted, 2) if predicted[p[0]] == predicted[p[1]]}
    wanted = {frozenset(p) for p in combinations(expected, 2) if expected[p[0]] == expected[p[1]]}
    right = found & wanted
    return (len(right) / len(found) if found else 1.0), (len(right) / len(wanted) if wanted else 1.0)


def partition(where: dict[str, int]) -> set[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for name, ticket_id in where.items():
        groups.setdefault(ticket_id, set()).add(name)
    return {frozenset(g) for g in groups.values()}


def test_the_archive_lands_in_its_threads_in_any_order(session_factory, settings):
    assert len(ARCHIVE) >= 40
    expected = {name: thread for name, thread, *_ in ARCHIVE}
    partitions, figures = [], []
    for order_seed in SEEDS:
        where, seeded, results = import_archive(session_factory, settings, order_seed)
        assert None not in where.values(), "every message is stored"
        assert all(r.status in ("created", "follow_up") for _, r in results), [(n, r) for n, r in results if r.status not in ("created", "follow_up")]
        threads = linked_closure(session_factory, set(where.values()))
        by_thread = {name: threads[ticket_id] for name, ticket_id in where.items()}
        precision, recall = pair_scores(by_thread, expected)
        strict_precision, strict_recall = pair_scores(where, expected)
        figures.append((order_seed, precision, recall, strict_precision, strict_recall))
        assert precision == 1.0 and recall >= 0.95, figures[-1]
        assert strict_precision == 1.0, figures[-1]
        # The tag and replies to our reply land in the seeded ticket S; the stranger's tagged mail does not.
        assert {where[n] for n in ("f1", "f2", "f3", "f4", "f5")} == {seeded["S"]}
        assert where["x1"] != seeded["S"]
        # W's replies are W's thread: in W, or in a ticket linked to it (never merged into W, which is busy).
        assert {by_thread[n] for n in ("w2", "w3")} == {threads[seeded["W"]]} and where["w2"] == seeded["W"]
        partitions.append(partition(by_thread))
        with session_factory() as db:
            assert db.get(Ticket, seeded["W"]).status == TicketStatus.in_progress  # being worked on: untouched
            merged = db.execute(select(TicketLink).where(TicketLink.kind == TicketLinkKind.merged)).scalars().all()
            for link in merged:  # an emptied ticket: closed, never answered, nothing left in it
                source = db.get(Ticket, link.ticket_id)
                assert source.status == TicketStatus.resolved and source.status_reason.startswith(f"merged into ticket {link.other_id}")
                assert db.scalar(select(func.count()).select_from(Message).where(Message.ticket_id == source.id)) == 0
    assert partitions[0] == partitions[1] == partitions[2]
    expected_partition = {frozenset(n for n, t in expected.items() if t == thread) for thread in set(expected.values())}
    assert partitions[0] == expected_partition
    print("\narchive of", len(ARCHIVE), "messages; (order seed, precision, recall, by-ticket precision, by-ticket recall):", figures)


def test_importing_the_archive_again_changes_nothing(session_factory, settings):
    where, seeded, _ = import_archive(session_factory, settings, SEEDS[0])
    ns = f"o{SEEDS[0]}"
    with session_factory() as db:
        before = (db.scalar(select(func.count()).select_from(Message)), db.scalar(select(func.count()).select_from(Ticket)))
    again = [ingest(session_factory, settings, build(name, ns, sender, subject, refs, irt, seeded)) for name, _, sender, subject, refs, irt in ARCHIVE]
    assert {r.status for r in again} == {"duplicate"}
    assert {name: r.ticket_id for (name, *_), r in zip(ARCHIVE, again, strict=True)} == where  # events follow merged messages
    with session_factory() as db:
        assert (db.scalar(select(func.count()).select_from(Message)), db.scalar(select(func.count()).select_from(Ticket))) == before


def mail(name: str, subject: str = "Lost parcel", refs: tuple[str, ...] = (), irt: str | None = None, sender: str = "zoe@customer.example") -> bytes:
    return build(name, "t", sender, subject, refs, irt, {})


def ticket_of(session_factory, name: str) -> int:
    with session_factory() as db:
        return db.scalar(select(Message.ticket_id).where(Message.external_id == mid(name, "t")))


def trail(session_factory, ticket_id: int) -> list[tuple[str, dict]]:
    with session_factory() as db:
        rows = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "thread").order_by(AuditEvent.id)).scalars()
        return [(row.name, row.result) for row in rows]


def count_messages(session_factory) -> int:
    with session_factory() as db:
        return db.scalar(select(func.count()).select_from(Message))


def test_a_late_parent_adopts_its_replies_without_reopening_an_answered_ticket(session_factory, settings):
    r1 = ingest(session_factory, settings, mail("r1", "Re: Lost parcel", ("p",), "p"))
    r2 = ingest(session_factory, settings, mail("r2", "Re: Lost parcel", ("p",), "p"))  # a sibling: the missing parent joins them
    assert (r1.status, r2.status) == ("created", "follow_up") and r2.ticket_id == r1.ticket_id and not r2.needs_run
    with transaction(session_factory) as db:  # answered and resolved before the original mail turns up
        ticket = db.get(Ticket, r1.ticket_id)
        tickets.add_message(db=db, ticket=ticket, direction="outbound", body="It is on its way.", external_id="our-1@support.example")
        ticket.status = TicketStatus.resolved
    parent = ingest(session_factory, settings, mail("p"))
    assert parent.status == "follow_up" and parent.ticket_id == r1.ticket_id
    assert not parent.needs_run  # history arriving late: not a new question, not answered again
    with session_factory() as db:
        ticket = db.get(Ticket, r1.ticket_id)
        assert ticket.status == TicketStatus.resolved
        assert sorted(m.external_id for m in ticket.messages if m.direction == "inbound") == sorted(mid(n, "t") for n in ("r1", "r2", "p"))
        assert db.scalar(select(func.count()).select_from(Ticket)) == 1
    assert trail(session_factory, r1.ticket_id) == [("adopted", {"parent": mid("p", "t"), "replies": sorted([mid("r1", "t"), mid("r2", "t")])})]


def test_a_bridging_mail_merges_two_tickets_into_one_and_the_emptied_one_is_never_answered(session_factory, settings):
    # An In-Reply-To-only mailer: e3 answers e2, e2 answers e1. e3 and e1 come first: two tickets.
    first = ingest(session_factory, settings, mail("e3", "Re: Lost parcel", (), "e2"))
    root = ingest(session_factory, settings, mail("e1"))
    assert (first.status, root.status) == ("created", "created") and first.ticket_id != root.ticket_id
    with transaction(session_factory) as db:  # both were handed to the queue, as the importer does
        tickets.mark_queued(db=db, ticket_ids=[first.ticket_id, root.ticket_id])
    before = count_messages(session_factory)

    bridge = ingest(session_factory, settings, mail("e2", "Re: Lost parcel", (), "e1"))

    assert count_messages(session_factory) == before + 1  # nothing lost
    assert bridge.status == "follow_up" and bridge.ticket_id == first.ticket_id  # the older ticket is the thread's
    with session_factory() as db:
        thread = db.get(Ticket, first.ticket_id)
        emptied = db.get(Ticket, root.ticket_id)
        assert sorted(m.external_id for m in thread.messages) == sorted(mid(n, "t") for n in ("e1", "e2", "e3"))
        assert thread.status == TicketStatus.queued
        assert emptied.messages == [] and emptied.status == TicketStatus.resolved
        assert emptied.status_reason == f"merged into ticket {thread.id}: one e-mail thread: <{mid('e2', 't')}> joined it"
        link = db.execute(select(TicketLink)).scalar_one()
        assert (link.ticket_id, link.other_id, link.kind) == (emptied.id, thread.id, TicketLinkKind.merged)
        assert tickets.merged_into(db=db, ticket_id=emptied.id) == thread.id
        event = db.execute(select(InboundEvent).where(InboundEvent.external_id == mid("e1", "t"))).scalar_one()
        assert event.ticket_id == thread.id  # the record of e1 follows its message
        assert {c.ticket_id for c in db.execute(select(EmailContainer)).scalars() if c.ticket_id} == {thread.id}
    assert trail(session_factory, root.ticket_id) == [
        ("merged", {"into_ticket": first.ticket_id, "messages": 2, "reason": link.reason})
    ]  # e1, and e2 that answered it
    assert trail(session_factory, first.ticket_id) == [("merged_in", {"from_ticket": root.ticket_id, "messages": 2, "reason": link.reason, "reopened": False})]
    # Re-fetching e1 points at the thread's ticket; the subject tag of the emptied ticket leads there too.
    again = ingest(session_factory, settings, mail("e1"))
    assert again.status == "duplicate" and again.ticket_id == first.ticket_id
    tagged = ingest(session_factory, settings, mail("e5", f"Re: Lost parcel [crewdesk #{root.ticket_id}]"))
    assert tagged.status == "follow_up" and tagged.ticket_id == first.ticket_id

    # The worker takes both from the queue: the emptied ticket is over, the thread's ticket is answered once.
    pipeline, _ = make_pipeline(settings, session_factory)
    assert pipeline.process(root.ticket_id).reused
    assert pipeline.process(first.ticket_id).status in ("resolved", "escalated")
    with session_factory() as db:
        outbound = db.execute(select(Message.ticket_id).where(Message.direction == "outbound")).scalars().all()
    assert outbound.count(root.ticket_id) == 0 and outbound.count(first.ticket_id) <= 1


def answered(session_factory, ticket_id: int, reply_id: str) -> None:
    with transaction(session_factory) as db:
        ticket = db.get(Ticket, ticket_id)
        tickets.add_message(db=db, ticket=ticket, direction="outbound", body="Refunded.", external_id=reply_id)
        ticket.status = TicketStatus.resolved


def working(session_factory, ticket_id: int) -> None:
    with transaction(session_factory) as db:
        ticket = db.get(Ticket, ticket_id)
        for step in (TicketStatus.queued, TicketStatus.triaging, TicketStatus.in_progress):
            tickets.transition(ticket=ticket, to=step)


@pytest.mark.parametrize("answered_first", [True, False])
def test_a_ticket_nobody_worked_on_merges_into_the_answered_one_which_reopens(session_factory, settings, answered_first):
    """e1 was answered; e3 (answering e2, not here yet) made a ticket nobody has worked on, before or after e1. The
    mail that shows they are one thread moves e3 into e1's ticket, the one the customer knows, and queues it."""
    if answered_first:
        known = ingest(session_factory, settings, mail("e1"))
        answered(session_factory, known.ticket_id, "our-2@support.example")
        fresh = ingest(session_factory, settings, mail("e3", "Re: Lost parcel", (), "e2"))
    else:
        fresh = ingest(session_factory, settings, mail("e3", "Re: Lost parcel", (), "e2"))
        known = ingest(session_factory, settings, mail("e1"))
        answered(session_factory, known.ticket_id, "our-2@support.example")
    assert fresh.status == "created" and fresh.ticket_id != known.ticket_id
    # e4 names the whole chain (References e1 e2 e3): e2 goes under e1, so e3's ticket joins e1's. e4 itself answers
    # e3 and goes to e3's ticket first: the merge moves it on and reopens the answered ticket.
    bridge = ingest(session_factory, settings, mail("e4", "Re: Lost parcel", ("e1", "e2", "e3"), "e3"))
    assert bridge.status == "follow_up" and bridge.ticket_id == known.ticket_id and bridge.needs_run
    with session_factory() as db:
        thread = db.get(Ticket, known.ticket_id)
        assert thread.status == TicketStatus.queued
        assert {m.external_id for m in thread.messages if m.direction == "inbound"} == {mid(n, "t") for n in ("e1", "e3", "e4")}
        emptied = db.get(Ticket, fresh.ticket_id)
        assert emptied.status == TicketStatus.resolved and emptied.messages == []
    assert trail(session_factory, known.ticket_id)[-1][0] == "merged_in" and trail(session_factory, known.ticket_id)[-1][1]["reopened"] is True
    assert [name for name, _ in trail(session_factory, fresh.ticket_id)] == ["merged"]


@pytest.mark.parametrize("busy", ["older", "newer"])
def test_a_ticket_being_worked_on_is_linked_not_merged(session_factory, settings, busy):
    first = ingest(session_factory, settings, mail("e3", "Re: Lost parcel", (), "e2"))
    root = ingest(session_factory, settings, mail("e1"))
    worked = first.ticket_id if busy == "older" else root.ticket_id
    working(session_factory, worked)  # a crew is on it right now
    before = count_messages(session_factory)
    bridge = ingest(session_factory, settings, mail("e2", "Re: Lost parcel", (), "e1"))
    assert count_messages(session_factory) == before + 1
    assert bridge.ticket_id == root.ticket_id and not bridge.needs_run  # e2 answers e1: it goes where e1 is
    with session_factory() as db:
        assert [m.external_id for m in db.get(Ticket, first.ticket_id).messages] == [mid("e3", "t")]
        assert [m.external_id for m in db.get(Ticket, root.ticket_id).messages] == [mid("e1", "t"), mid("e2", "t")]
        link = db.execute(select(TicketLink)).scalar_one()
        assert link.kind == TicketLinkKind.linked and {link.ticket_id, link.other_id} == {first.ticket_id, root.ticket_id}
        assert db.get(Ticket, worked).status == TicketStatus.in_progress
        assert db.get(Ticket, ({first.ticket_id, root.ticket_id} - {worked}).pop()).status == TicketStatus.received
    for ticket_id in (first.ticket_id, root.ticket_id):
        assert trail(session_factory, ticket_id) == [
            ("linked", {"other_ticket": ({first.ticket_id, root.ticket_id} - {ticket_id}).pop(), "reason": link.reason})
        ]
    # Linked once: the next mail of the thread links nothing more and merges nothing.
    ingest(session_factory, settings, mail("e5", "Re: Lost parcel", (), "e3"))
    with session_factory() as db:
        assert db.scalar(select(func.count()).select_from(TicketLink)) == 1


def test_two_answered_tickets_of_one_thread_are_linked(session_factory, settings):
    first = ingest(session_factory, settings, mail("e3", "Re: Lost parcel", (), "e2"))
    root = ingest(session_factory, settings, mail("e1"))
    answered(session_factory, first.ticket_id, "our-4@support.example")
    answered(session_factory, root.ticket_id, "our-5@support.example")
    bridge = ingest(session_factory, settings, mail("e2", "Re: Lost parcel", (), "e1"))
    assert bridge.ticket_id == root.ticket_id and bridge.needs_run  # e2 is new: its ticket reopens to answer it
    with session_factory() as db:
        link = db.execute(select(TicketLink)).scalar_one()
        assert link.kind == TicketLinkKind.linked
        assert db.get(Ticket, first.ticket_id).status == TicketStatus.resolved and len(db.get(Ticket, first.ticket_id).messages) == 2


def test_mail_stored_before_the_index_is_indexed_by_the_migration():
    """A database at 0009 with mail in it: upgrading indexes that mail, so a parent arriving after the upgrade still
    adopts the reply stored before it."""
    name = f"crewdesk_thr_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rpartition("/")[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    try:
        upgrade(url, "0009")
        engine = create_engine(url)
        with engine.begin() as conn:
            tid = conn.execute(
                text(
                    "INSERT INTO tickets (source, external_id, customer, subject, body, status, created_at, updated_at) "
                    "VALUES ('email', 'old-reply@x', 'zoe@customer.example', 'Re: Lost', 'Where is it?', 'resolved', now(), now()) RETURNING id"
                )
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO messages (ticket_id, direction, author, body, external_id, meta, delivery_attempts, created_at) VALUES "
                    "(:t, 'inbound', 'zoe@customer.example', 'Where is it?', 'old-reply@x', "
                    """CAST('{"references": ["old-root@x", "old-middle@x"], "in_reply_to": "old-middle@x"}' AS JSONB), 0, now())"""
                ),
                {"t": tid},
            )
        upgrade(url)
        with engine.connect() as conn:
            rows = {r.external_id: r for r in conn.execute(text("SELECT * FROM email_containers"))}
        assert set(rows) == {"old-reply@x", "old-root@x", "old-middle@x"}
        assert rows["old-reply@x"].ticket_id == tid and rows["old-root@x"].ticket_id is None
        assert rows["old-reply@x"].parent_id == rows["old-middle@x"].id and rows["old-middle@x"].parent_id == rows["old-root@x"].id
        assert {r.thread_key for r in rows.values()} == {"old-root@x"}
        from crewdesk.db import make_session_factory
        from crewdesk.settings import load_settings

        factory = make_session_factory(engine)
        late = ingest_email(
            session_factory=factory,
            raw=build("old-root", "x", "zoe@customer.example", "Lost", (), None, {}).replace(b"old-root.x@mail.example", b"old-root@x"),
            settings=load_settings(database_url=url, llm_provider="scripted"),
            source_ref="test",
        )
        assert late.status == "follow_up" and late.ticket_id == tid and not late.needs_run
        engine.dispose()
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_crew_reads_a_late_parent_before_its_replies(session_factory, settings):
    """Mail threaded out of order is read in the order it was written (its Date), not the order it arrived."""

    def dated(name: str, date: str, refs: tuple[str, ...] = (), body: str = "") -> bytes:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "ina@customer.example", "support@example.com", "Broken kettle"
        message["Message-ID"], message["Date"] = f"<{mid(name, 'o')}>", date
        if refs:
            message["References"] = message["In-Reply-To"] = f"<{mid(refs[0], 'o')}>"
        message.set_content(body)
        return message.as_bytes()

    reply = ingest(session_factory, settings, dated("k2", "Wed, 02 Dec 2026 09:00:00 +0000", ("k1",), "Any news about the kettle?"))
    parent = ingest(session_factory, settings, dated("k1", "Tue, 01 Dec 2026 09:00:00 +0000", body="My kettle arrived broken."))
    assert parent.ticket_id == reply.ticket_id
    with session_factory() as db:
        text = tickets.conversation(db=db, ticket=db.get(Ticket, reply.ticket_id))
    assert text.index("My kettle arrived broken.") < text.index("Any news about the kettle?")
    assert "2026-12-01 09:00" in text and "2026-12-02 09:00" in text
