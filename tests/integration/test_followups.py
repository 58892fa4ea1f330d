"""Follow-ups: a customer writing again on a ticket reopens it, and the crew answers with the whole thread in view."""

from __future__ import annotations

from sqlalchemy import select

from crewdesk.db import transaction
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket
from tests.integration.test_pipeline import make_pipeline


def _outbound(session_factory, ticket_id):
    with session_factory() as db:
        return db.execute(select(Message).where(Message.ticket_id == ticket_id, Message.direction == "outbound")).scalars().all()


def test_a_follow_up_on_a_resolved_ticket_reopens_it_and_the_crew_reads_the_thread(settings, session_factory, make_ticket):
    ticket_id = make_ticket("I was charged twice for invoice 2291. Please refund the duplicate payment.")
    pipeline, factory = make_pipeline(settings, session_factory)
    assert pipeline.process(ticket_id).status == "resolved"

    with transaction(session_factory) as db:
        ticket = tickets.get(db=db, ticket_id=ticket_id, lock=True)
        _, needs_run = tickets.follow_up(db=db, ticket=ticket, body="Thanks. Also, invoice 2291 shows the wrong VAT number.", author="c@example.com")
        assert needs_run and ticket.status == "queued"
    factory.built.clear()
    outcome = pipeline.process(ticket_id)

    assert outcome.status == "resolved" and not outcome.reused
    prompts = factory.prompts_text()
    assert "wrong VAT number" in prompts and "charged twice" in prompts and "our earlier reply" in prompts
    assert len(_outbound(session_factory, ticket_id)) == 2


def test_follow_up_on_an_escalated_ticket_waits_for_the_human(settings, session_factory, make_ticket):
    ticket_id = make_ticket("Someone hacked my account and changed the email address.")
    pipeline, _ = make_pipeline(settings, session_factory)
    assert pipeline.process(ticket_id).status == "escalated"
    with transaction(session_factory) as db:
        ticket = tickets.get(db=db, ticket_id=ticket_id, lock=True)
        _, needs_run = tickets.follow_up(db=db, ticket=ticket, body="Any news?", author="c@example.com")
    assert not needs_run
    with session_factory() as db:
        assert db.get(Ticket, ticket_id).status == "escalated"


def test_a_message_that_arrives_during_the_run_reopens_the_ticket_when_it_finishes(settings, session_factory, make_ticket):
    ticket_id = make_ticket("I was charged twice for invoice 2291. Please refund the duplicate payment.")
    pipeline, _ = make_pipeline(settings, session_factory)
    run_phase = pipeline.builder.run_phase

    def customer_writes_mid_run(**kwargs):
        if kwargs.get("task_key") == "resolve":
            with transaction(session_factory) as db:
                ticket = tickets.get(db=db, ticket_id=ticket_id, lock=True)
                _, needs_run = tickets.follow_up(db=db, ticket=ticket, body="Sorry, it was invoice 2292, not 2291.", author="c@example.com")
                assert not needs_run  # in progress: the running crew's finish decides
        return run_phase(**kwargs)

    pipeline.builder.run_phase = customer_writes_mid_run
    first = pipeline.process(ticket_id)
    assert first.status == "resolved" and first.requeue
    with session_factory() as db:
        assert db.get(Ticket, ticket_id).status == "queued"

    pipeline.builder.run_phase = run_phase
    second = pipeline.process(ticket_id)
    assert second.status == "resolved" and not second.requeue
    assert len(_outbound(session_factory, ticket_id)) == 2
