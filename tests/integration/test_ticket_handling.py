"""What a person does with a ticket (crewdesk/tickets/handling.py, the console's ticket page): reply, note, hand back,
close, each an audit row under their name with the chain intact, under the rules the module states. On a real
PostgreSQL and on the quickstart's SQLite file (migrated as `crewdesk init` does): the console runs on both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.audit import service as audit
from crewdesk.audit.models import AuditEvent
from crewdesk.db import make_engine, make_session_factory, transaction
from crewdesk.delivery.service import pending
from crewdesk.errors import Conflict
from crewdesk.intake.enqueue import Enqueuer
from crewdesk.migrate import upgrade
from crewdesk.tickets import handling
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket, TicketStatus
from crewdesk.tickets.schemas import TicketIn


@pytest.fixture(params=["postgresql", "sqlite"])
def sessions(request, tmp_path) -> Iterator[sessionmaker[Session]]:
    if request.param == "postgresql":
        yield request.getfixturevalue("session_factory")
        return
    url = f"sqlite:///{tmp_path / 'crewdesk.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def escalated(sessions: sessionmaker[Session], *, source: str = "email", taken_by: str | None = "arno", status: TicketStatus = TicketStatus.escalated) -> int:
    with transaction(sessions) as db:
        ticket, _ = tickets.submit(
            db=db, ticket_in=TicketIn(external_id=f"t-{source}-{status}", source=source, customer="ana@example.com", subject="Parcel", body="Where is it?")
        )
        ticket.status, ticket.status_reason = status, "needs a person: the rules fired"
        if taken_by:
            tickets.assign(db=db, ticket_id=ticket.id, to=taken_by, by=taken_by)
        return ticket.id


def person_rows(sessions: sessionmaker[Session], ticket_id: int) -> list[tuple[str, str, str]]:
    with sessions() as db:
        rows = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind.in_(("person", "status"))).order_by(AuditEvent.seq))
        return [(r.kind, r.name, r.actor) for r in rows.scalars()]


def test_a_reply_and_a_note_are_stored_for_their_channel_and_audited_under_the_persons_name(sessions):
    ticket_id = escalated(sessions)
    with transaction(sessions) as db:
        sent = handling.reply(db=db, ticket_id=ticket_id, body="  Hello Ana,\r\nit left our warehouse today.  ", by="arno")
        noted = handling.note(db=db, ticket_id=ticket_id, body="Called the carrier.", by="lena")  # a note needs no taking
    with sessions() as db:
        reply, note = db.get(Message, sent.id), db.get(Message, noted.id)
        assert (reply.direction, reply.author, reply.body) == ("outbound", "arno", "Hello Ana,\nit left our warehouse today.")
        assert (note.direction, note.author) == ("internal", "lena")
        assert [m.id for m in pending(db=db, ticket_id=ticket_id)] == [sent.id, noted.id]  # what the delivery service sends (a note: not by e-mail)
        assert db.get(Ticket, ticket_id).status == TicketStatus.escalated  # a reply leaves the ticket with the person
        row = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.name == "replied")).scalar_one()
        assert row.actor == "arno" and row.arguments["message_id"] == sent.id and row.arguments["channel"] == "email" and len(row.arguments["sha256"]) == 64
        assert audit.verify_ticket(db=db, ticket_id=ticket_id).ok
    assert person_rows(sessions, ticket_id)[-2:] == [("person", "replied", "arno"), ("person", "noted", "lena")]


def test_replying_handing_back_and_closing_need_the_ticket_taken_by_that_person(sessions):
    nobodys = escalated(sessions, taken_by=None)
    arnos = escalated(sessions, source="api", taken_by="arno")
    for ticket_id, who in ((nobodys, "arno"), (arnos, "lena")):
        for step, extra in ((handling.reply, {"body": "hi"}), (handling.hand_back, {}), (handling.close, {})):
            with pytest.raises(handling.NotTaken), transaction(sessions) as db:
                step(db=db, ticket_id=ticket_id, by=who, **extra)
    with pytest.raises(handling.EmptyOrTooLong), transaction(sessions) as db:
        handling.reply(db=db, ticket_id=arnos, body=" \n ", by="arno")
    with pytest.raises(handling.EmptyOrTooLong), transaction(sessions) as db:
        handling.note(db=db, ticket_id=arnos, body="x" * (handling.MAX_TEXT + 1), by="arno")
    with sessions() as db:
        assert db.execute(select(Message).where(Message.direction != "inbound")).scalars().all() == []
        assert db.get(Ticket, arnos).status == db.get(Ticket, nobodys).status == TicketStatus.escalated
    assert person_rows(sessions, arnos) == [("person", "took", "arno")]  # nothing refused left a row


def test_no_reply_while_crewdesk_works_on_the_ticket_and_only_a_put_down_ticket_is_handed_back_or_closed(sessions):
    running = escalated(sessions, status=TicketStatus.triaging)
    waiting = escalated(sessions, source="api", status=TicketStatus.waiting_on_customer)
    with pytest.raises(Conflict, match="crewdesk is working on it"), transaction(sessions) as db:
        handling.reply(db=db, ticket_id=running, body="hello", by="arno")
    for step in (handling.hand_back, handling.close):
        for ticket_id in (running, waiting):
            with pytest.raises(Conflict, match="only an escalated or failed ticket"), transaction(sessions) as db:
                step(db=db, ticket_id=ticket_id, by="arno")
    with transaction(sessions) as db:  # waiting on the customer: a person may still write to them
        handling.reply(db=db, ticket_id=waiting, body="Any news?", by="arno")
    with sessions() as db:
        assert (db.get(Ticket, running).status, db.get(Ticket, waiting).status) == (TicketStatus.triaging, TicketStatus.waiting_on_customer)


def test_handed_back_a_ticket_goes_through_the_enqueuer_once_and_a_second_hand_back_is_refused(sessions):
    ticket_id = escalated(sessions)
    sent: list[int] = []
    with transaction(sessions) as db:
        handling.hand_back(db=db, ticket_id=ticket_id, by="arno", reason="the customer sent the order number")
    Enqueuer(session_factory=sessions, send=sent.extend)([ticket_id])  # what the console does after the commit
    with pytest.raises((Conflict, handling.NotTaken)), transaction(sessions) as db:  # a double click: nobody holds it, nothing moves
        handling.hand_back(db=db, ticket_id=ticket_id, by="arno")
    with sessions() as db:
        ticket = db.get(Ticket, ticket_id)
        assert (ticket.status, ticket.assigned_to) == (TicketStatus.queued, None)
        assert ticket.status_reason == "handed back to crewdesk by arno: the customer sent the order number"
        row = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.name == "handed_back")).scalar_one()
        assert (row.kind, row.actor, row.arguments["from"], row.arguments["to"]) == ("status", "arno", "escalated", "received")
        assert audit.verify_ticket(db=db, ticket_id=ticket_id).ok
    assert sent == [ticket_id]


def test_a_person_closes_an_escalated_or_failed_ticket_as_resolved(sessions):
    escalated_id = escalated(sessions)
    failed_id = escalated(sessions, source="api", status=TicketStatus.failed)
    with transaction(sessions) as db:
        handling.close(db=db, ticket_id=escalated_id, by="arno", reason="answered by phone")
        handling.close(db=db, ticket_id=failed_id, by="arno")
    with pytest.raises(Conflict), transaction(sessions) as db:  # closed once
        handling.close(db=db, ticket_id=escalated_id, by="arno")
    with sessions() as db:
        closed = db.get(Ticket, escalated_id)
        assert (closed.status, closed.status_reason, closed.assigned_to) == (TicketStatus.resolved, "closed by arno: answered by phone", "arno")
        assert db.get(Ticket, failed_id).status_reason == "closed by arno"
    assert person_rows(sessions, escalated_id)[-1] == ("status", "closed", "arno")


def test_the_kpis_count_a_closed_ticket_as_crewdesk_left_it_and_a_persons_reply_as_no_automated_resolution(sessions):
    """KPIs measure crewdesk: a ticket a person closed stays an escalation with crewdesk's reason; a resolution after a
    person's reply is not automated; one crewdesk resolved alone is."""
    from datetime import UTC, datetime, timedelta

    from crewdesk.metrics import kpi

    closed_id, replied_id, alone_id = escalated(sessions), escalated(sessions, source="api"), escalated(sessions, source="test", taken_by=None)
    with transaction(sessions) as db:
        handling.close(db=db, ticket_id=closed_id, by="arno", reason="answered by phone")
        handling.reply(db=db, ticket_id=replied_id, body="Done for you.", by="arno")
        for ticket_id in (replied_id, alone_id):  # then crewdesk resolved them (a run's status row)
            tickets.get(db=db, ticket_id=ticket_id).status = TicketStatus.resolved
            audit.record(db=db, ticket_id=ticket_id, kind="status", name="resolved", actor="pipeline")
    now = datetime.now(UTC)
    with sessions() as db:
        facts = {f.ticket_id: f for f in kpi.ticket_facts(db=db, since=now - timedelta(days=1), until=now + timedelta(minutes=1))}
    assert (facts[closed_id].status, facts[closed_id].reason, facts[closed_id].automated) == ("escalated", "needs a person: the rules fired", False)
    assert (facts[replied_id].status, facts[replied_id].automated) == ("resolved", False)
    assert (facts[alone_id].status, facts[alone_id].automated) == ("resolved", True)


def test_a_reply_whose_delivery_task_never_ran_is_found_for_the_reconciler(sessions):
    """The console stores a reply, then sends its delivery task; a broker down at that moment leaves it unsent and
    untried. The reconciler's sweep (workers/tasks.reconcile) finds it once it is older than the bound, for the sources
    with a reply channel only; a message its task has tried (retrying or given up) is left to that task."""
    from datetime import timedelta

    from sqlalchemy import update

    from crewdesk.db import utcnow
    from crewdesk.delivery.service import never_tried

    email_id, api_id = escalated(sessions), escalated(sessions, source="api")
    with transaction(sessions) as db:
        first = handling.reply(db=db, ticket_id=email_id, body="Hello", by="arno")
        handling.reply(db=db, ticket_id=api_id, body="Hello", by="arno")
    hour = timedelta(hours=1)
    with sessions() as db:
        assert never_tried(db=db, sources={"email", "jira"}, older_than=hour) == []  # too recent: its task may be on its way
    with transaction(sessions) as db:
        db.execute(update(Message).where(Message.direction != "inbound").values(created_at=utcnow() - 2 * hour))
    with sessions() as db:
        assert never_tried(db=db, sources={"email", "jira"}, older_than=hour) == [email_id]  # an API ticket has no channel
    with transaction(sessions) as db:
        db.get_one(Message, first.id).delivery_attempts = 1  # its task ran and is retrying
    with sessions() as db:
        assert never_tried(db=db, sources={"email", "jira"}, older_than=hour) == []
