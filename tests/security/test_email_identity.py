"""Proof of identity before a write (issue 20). A customer identified only by a claim (a name and zip or an e-mail
address written in the ticket, an e-mail From that our MTA did not vouch for) may have their orders read, but no write
is made for them: it waits for a person who can check who they are (an approval, rule identity_unverified). Only a
From with a DMARC pass in an Authentication-Results field of our own MTA (CREWDESK_EMAIL_AUTHSERV_ID) writes at once.

Over a real dovecot (IMAP) and real PostgreSQL with the demo store, through the real poller, pipeline, procedures and
gate; the model is the scripted one and the router a stand-in (tests/integration/test_procedures.py), because the
model cannot run here fast enough for a test and the routers have their own tests. The last test takes the crew path
on an API ticket, with a scripted model that obeys the ticket."""

from __future__ import annotations

from sqlalchemy import func, select

from crewdesk.approvals.models import Approval
from crewdesk.audit.models import AuditEvent
from crewdesk.db import transaction
from crewdesk.effects.models import ToolEffect
from crewdesk.llm.factory import LLMFactory
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Ticket, TicketStatus
from crews.pipeline import Pipeline
from tests.integration.test_customer_binding import obeying
from tests.integration.test_email_imap import MTA, append, dovecot, mail, mail_settings, poll  # noqa: F401  (fixtures: a real dovecot)
from tests.integration.test_procedures import EMAIL, PENDING, Planned, StandInRouter, order

STRANGER = "someone@unknown.example"  # passes DMARC for its own domain; the store has never seen it
CANCEL = f"Cancel order {PENDING}, I ordered it by mistake."


def by_mail(mailbox, store, *raws: bytes) -> int:
    append(mailbox, *raws)
    queued: list[int] = []
    poll(mailbox, store, queued)
    (ticket_id,) = set(queued)
    return ticket_id


def run(mailbox, store, ticket_id: int):
    """The ticket through the pipeline with procedures on and the refund threshold off: the only approval left is the
    identity's."""
    settings = mailbox.model_copy(update={"procedures": True, "approval_threshold_usd": -1.0})
    return Pipeline(
        settings=settings, session_factory=store, llm_factory=LLMFactory(settings, responder=Planned()), router=StandInRouter("cancel_order")
    ).process(ticket_id)


def awaits_a_person(store, ticket_id: int, outcome, *, proven_by: str) -> None:
    """Nothing was written; the write waits as an approval whose rule and reason say the identity is only claimed."""
    assert outcome.status == TicketStatus.awaiting_approval
    assert order(store, PENDING)["status"] == "pending"
    with store() as db:
        assert db.scalar(select(func.count()).select_from(ToolEffect)) == 0
        approval = db.execute(select(Approval).where(Approval.ticket_id == ticket_id)).scalar_one()
        requested = db.execute(
            select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.name == "approval_requested:cancel_pending_order")
        ).scalar_one()
    assert approval.status == "pending" and approval.action == "cancel_pending_order" and approval.arguments["order_id"] == PENDING
    assert "identity is not verified" in approval.reason and proven_by in approval.reason
    assert requested.result["rule"] == "identity_unverified"


def test_a_name_and_zip_claim_cannot_make_a_write(mail_settings, store):  # noqa: F811
    raw, _ = mail("Cancel my order", f"Hi, I am Ethan Sanchez, zip 78782. {CANCEL}", sender=STRANGER)
    ticket_id = by_mail(mail_settings, store, raw)

    outcome = run(mail_settings, store, ticket_id)

    awaits_a_person(store, ticket_id, outcome, proven_by="a name and zip written in the ticket")
    with store() as db:  # reads were allowed: the customer was found and their order read for the reply
        reply = db.get(Ticket, ticket_id).resolution["customer_reply"]
    assert PENDING in reply and "approval" in reply


def test_an_email_address_written_in_the_body_cannot_make_a_write(mail_settings, store):  # noqa: F811
    raw, _ = mail("Cancel my order", f"My account is {EMAIL}. {CANCEL}", sender=STRANGER)
    ticket_id = by_mail(mail_settings, store, raw)

    outcome = run(mail_settings, store, ticket_id)

    awaits_a_person(store, ticket_id, outcome, proven_by="an e-mail address written in the ticket")


def test_a_from_with_a_forged_authentication_results_from_another_authserv_id_is_still_unverified(mail_settings, store):  # noqa: F811
    """The sender wrote an Authentication-Results field of their own (any id but our MTA's counts for nothing); our MTA
    recorded that the From did not pass DMARC."""
    raw, _ = mail(CANCEL[:30], CANCEL, sender=EMAIL, authenticated=False, Authentication_Results="mx.attacker.example; dmarc=pass header.from=example.com")
    raw = f"Authentication-Results: {MTA}; dmarc=fail header.from=example.com\r\n".encode() + raw

    outcome = run(mail_settings, store, by_mail(mail_settings, store, raw))

    with store() as db:
        ticket_id = db.execute(select(Ticket.id).where(Ticket.source == "email")).scalar_one()
    awaits_a_person(store, ticket_id, outcome, proven_by="the channel's address, which the channel does not vouch for")


def test_a_from_with_our_mtas_dmarc_pass_makes_the_write(mail_settings, store):  # noqa: F811
    raw, _ = mail("Cancel my order", CANCEL, sender=f"Ethan Sanchez <{EMAIL}>")
    ticket_id = by_mail(mail_settings, store, raw)

    outcome = run(mail_settings, store, ticket_id)

    assert outcome.status == TicketStatus.resolved
    assert order(store, PENDING)["status"] == "cancelled"
    with store() as db:
        assert db.scalar(select(func.count()).select_from(Approval)) == 0
        assert [e.tool for e in db.execute(select(ToolEffect)).scalars()] == ["cancel_pending_order"]


def test_a_spoofed_reply_in_a_verified_thread_cannot_make_a_write(mail_settings, store):  # noqa: F811
    """The customer's verified mail asks a question; a reply in the thread with the customer's From, which our MTA did
    not vouch for, asks for the cancellation: the ticket's identity is only as good as its least proven message."""
    first, first_id = mail("My order", f"What is the status of order {PENDING}?", sender=EMAIL)
    ticket_id = by_mail(mail_settings, store, first)
    with transaction(store) as db:
        ticket = tickets.get(db=db, ticket_id=ticket_id, lock=True)
        for step in (TicketStatus.triaging, TicketStatus.in_progress, TicketStatus.resolved):  # polled: queued already
            tickets.transition(ticket=ticket, to=step)
    spoofed, _ = mail("Re: My order", CANCEL, sender=EMAIL, authenticated=False, In_Reply_To=f"<{first_id}>", References=f"<{first_id}>")
    assert by_mail(mail_settings, store, spoofed) == ticket_id  # the same From: it joins the thread

    outcome = run(mail_settings, store, ticket_id)

    awaits_a_person(store, ticket_id, outcome, proven_by="the channel's address, which the channel does not vouch for")


def test_a_name_and_zip_claim_on_an_api_ticket_cannot_make_a_write_on_the_crew_path(settings, store, make_ticket):
    """An API ticket naming no customer; the text gives a name and zip, and a model that obeys the ticket finds the
    customer by them and cancels: the gate, not the procedure, holds the write for a person."""
    settings = settings.model_copy(update={"procedures": False, "approval_threshold_usd": 100_000.0})
    ticket_id = make_ticket(f"I am Ethan Sanchez, zip 78782. {CANCEL}", customer="", source="api")
    plan = obeying(
        ("find_user_id_by_name_zip", {"first_name": "Ethan", "last_name": "Sanchez", "zip": "78782"}),
        ("get_order_details", {"order_id": PENDING}),
        ("cancel_pending_order", {"order_id": PENDING, "reason": "ordered by mistake"}),
    )

    outcome = Pipeline(settings=settings, session_factory=store, llm_factory=LLMFactory(settings, responder=plan)).process(ticket_id)

    awaits_a_person(store, ticket_id, outcome, proven_by="a name and zip written in the ticket")
