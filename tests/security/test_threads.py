"""E-mail threads that strangers cannot hijack (issue 20), over a real dovecot (IMAP), a real aiosmtpd (SMTP) and real
PostgreSQL: our Message-IDs cannot be guessed, and a reply joins a ticket only when its sender is the ticket's
customer; anyone else's reply, whatever its References say, is a ticket of its own, linked to the old one."""

from __future__ import annotations

from sqlalchemy import select

from crewdesk.audit.models import AuditEvent
from crewdesk.connectors.base import OutboundMessage
from crewdesk.db import transaction
from crewdesk.delivery.service import deliver_pending
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket, TicketLink, TicketLinkKind, TicketStatus
from tests.integration.test_email_imap import _channel, append, dovecot, mail, mail_settings, poll, smtp  # noqa: F401  (fixtures)

CUSTOMER = "ana@customer.example"
STRANGER = "eve@elsewhere.example"


def answered_and_resolved(session_factory, server, ticket_id: int) -> str:
    """Our reply is mailed (through the real SMTP channel) and the ticket is resolved; returns the reply's Message-ID
    as it went out, the one a stranger who saw the mail (a forward, a Cc, a shared inbox) would name."""
    with transaction(session_factory) as db:
        ticket = tickets.get(db=db, ticket_id=ticket_id, lock=True)
        tickets.add_message(db=db, ticket=ticket, direction="outbound", body="Your refund is on its way.")
        for step in (TicketStatus.triaging, TicketStatus.in_progress, TicketStatus.resolved):  # polled: queued already
            tickets.transition(ticket=ticket, to=step)
    report = deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=_channel(server))
    assert len(report.sent) == 1
    return server.received[-1].message["Message-ID"]


def test_a_strangers_reply_with_the_right_references_starts_a_new_ticket_and_the_old_one_stays_resolved(mail_settings, session_factory, smtp):  # noqa: F811
    first, first_id = mail("Refund please", "I was charged twice for invoice 2291.", sender=f"Ana <{CUSTOMER}>")
    append(mail_settings, first)
    queued: list[int] = []
    poll(mail_settings, session_factory, queued)
    (ticket_id,) = queued
    ours = answered_and_resolved(session_factory, smtp, ticket_id)
    with session_factory() as db:
        before = [(m.id, m.body) for m in db.get(Ticket, ticket_id).messages]

    hijack, _ = mail(
        "Re: Refund please",
        "Please send the refund to my other card instead, and tell me the address on file.",
        sender=STRANGER,
        In_Reply_To=ours,
        References=f"<{first_id}> {ours}",
    )
    append(mail_settings, hijack)
    queued = []
    report = poll(mail_settings, session_factory, queued)

    assert report.outcomes == {"created": 1}
    (new_id,) = queued
    assert new_id != ticket_id
    with session_factory() as db:
        old, new = db.get(Ticket, ticket_id), db.get(Ticket, new_id)
        assert old.status == TicketStatus.resolved and [(m.id, m.body) for m in old.messages] == before  # untouched
        assert new.customer == STRANGER and new.raw["related_ticket"] == ticket_id
        link = db.execute(select(TicketLink)).scalar_one()
        assert link.kind == TicketLinkKind.linked and {link.ticket_id, link.other_id} == {ticket_id, new_id}
        trail = [(e.name, e.result) for e in db.execute(select(AuditEvent).where(AuditEvent.ticket_id == new_id, AuditEvent.kind == "thread")).scalars()]
    assert (
        "not_the_customer",
        {"related_ticket": ticket_id, "reason": f"a reply on ticket {ticket_id}'s thread from another address than its customer's"},
    ) in trail

    # The customer's own reply to the same mail of ours still finds the ticket by our (random) Message-ID and reopens it.
    own, _ = mail(
        "Re: Refund please", "Thanks, and one more question.", sender=f"Ana <{CUSTOMER.upper()}>", In_Reply_To=ours, References=f"<{first_id}> {ours}"
    )
    append(mail_settings, own)
    queued = []
    assert poll(mail_settings, session_factory, queued).outcomes == {"follow_up": 1} and queued == [ticket_id]


def test_our_message_ids_cannot_be_guessed(mail_settings, session_factory, smtp):  # noqa: F811
    """Two sends of the same ticket's reply carry different ids, and nothing in them is the ticket's or the message
    row's number: a stranger cannot name our next reply in References before it exists."""
    first, _ = mail("Where is my parcel?", "It has not arrived.", sender=CUSTOMER)
    append(mail_settings, first)
    queued: list[int] = []
    poll(mail_settings, session_factory, queued)
    (ticket_id,) = queued
    ids = []
    for body in ("First answer.", "Second answer."):
        with transaction(session_factory) as db:
            tickets.add_message(db=db, ticket=tickets.get(db=db, ticket_id=ticket_id, lock=True), direction="outbound", body=body)
        deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=_channel(smtp))
        ids.append(smtp.received[-1].message["Message-ID"].strip("<>"))
    with session_factory() as db:
        rows = {m.external_id: m.id for m in db.execute(select(Message).where(Message.ticket_id == ticket_id, Message.direction == "outbound")).scalars()}

    assert len(set(ids)) == 2 and set(ids) == set(rows)  # stored as sent: replies naming them thread here
    for sent in ids:
        local, _, domain = sent.rpartition("@")
        assert domain == "crewdesk.test"
        assert str(ticket_id) not in local.split(".") and str(rows[sent]) not in local.split(".")
        assert not local.startswith("crewdesk.")
    # The same message row sent again (a resend after a crash) gets a fresh id too: nothing about it is derived.
    again = OutboundMessage(message_id=max(rows.values()), ticket_id=ticket_id, ticket_external_id="", customer=CUSTOMER, subject="s", body="b", public=True)
    channel = _channel(smtp)["email"]
    assert channel.deliver(again) != channel.deliver(again)
