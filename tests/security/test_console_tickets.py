"""A person acts on a ticket in the console (issue 22): after taking it, replies through the ticket's own channel (a real
SMTP message in the customer's thread from aiosmtpd, a public comment on a stand-in Jira, a message in an API ticket's
thread), adds internal notes that never reach the customer, hands it back to crewdesk (through the Enqueuer, once) or
closes it; each step is an audit row under their name, shown on the page. Every form needs its CSRF token; a person
who has not taken the ticket is refused. Real PostgreSQL; the delivery is crewdesk/delivery's own, run in place of
the Celery task."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from crewdesk.api import create_app
from crewdesk.audit.models import AuditEvent
from crewdesk.db import transaction
from crewdesk.delivery.channels import reply_channels
from crewdesk.delivery.service import deliver_pending
from crewdesk.intake.email.service import ingest_email
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket, TicketStatus
from crewdesk.tickets.schemas import TicketIn
from tests.helpers import api_client
from tests.integration.test_email_imap import MTA, SUPPORT, mail
from tests.integration.test_jira_webhook import fake_jira  # noqa: F401 - a fixture
from tests.mailservers import SmtpServer
from tests.security.test_console import console_settings, csrf, logged_in, people, resumed  # noqa: F401 - fixtures and helpers


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def desk(console_settings, session_factory, people, resumed, smtp, fake_jira):  # noqa: F811
    """The API with the console, e-mail replies to aiosmtpd and Jira comments to the stand-in; deliver() runs
    crewdesk/delivery's deliver_pending in place, as the Celery task would."""
    base, _seen, _responses = fake_jira
    settings = console_settings.model_copy(
        update={
            "smtp_host": smtp.host,
            "smtp_port": smtp.port,
            "smtp_tls": "none",
            "support_address": SUPPORT,
            "email_authserv_id": MTA,
            "jira_base_url": base,
            "jira_user": "bot@example.com",
            "jira_api_token": SecretStr("tok-123"),
        }
    )
    channels = reply_channels(settings)
    delivered: list[int] = []

    def deliver(ticket_id: int) -> None:
        delivered.append(ticket_id)
        deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=channels)

    return create_app(settings, session_factory=session_factory, send=resumed.extend, deliver=deliver), settings, delivered


def escalate(session_factory, ticket_id: int, resolution: dict | None = None) -> None:
    with transaction(session_factory) as db:
        ticket = tickets.get(db=db, ticket_id=ticket_id)
        ticket.status, ticket.status_reason, ticket.resolution = TicketStatus.escalated, "needs a person: the rules fired", resolution


def email_ticket(settings, session_factory) -> tuple[int, str]:
    """A customer's mail ingested as crewdesk ingests it, then escalated; its id and the mail's Message-ID."""
    raw, message_id = mail("Parcel lost", "My parcel never arrived. Order #W2378156.", sender="Ana Lima <ana@example.com>")
    result = ingest_email(session_factory=session_factory, raw=raw, settings=settings)
    assert result.ticket_id is not None
    escalate(session_factory, result.ticket_id, {"customer_reply": "We are looking into your parcel.", "status": "escalated"})
    return result.ticket_id, message_id


def trail(session_factory, ticket_id: int) -> list[tuple[str, str, str]]:
    with session_factory() as db:
        rows = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind.in_(("person", "status"))).order_by(AuditEvent.seq))
        return [(r.kind, r.name, r.actor) for r in rows.scalars()]


def test_an_agent_takes_an_email_ticket_and_the_reply_arrives_in_the_customers_thread(desk, session_factory, smtp):
    app, settings, delivered = desk
    ticket_id, customer_message_id = email_ticket(settings, session_factory)
    with transaction(session_factory) as db:  # crewdesk's holding reply went out when it escalated the ticket
        tickets.add_message(db=db, ticket=tickets.get(db=db, ticket_id=ticket_id), direction="outbound", author="crewdesk", body="A person will answer you.")
    deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=reply_channels(settings))
    holding = smtp.received[0].message["Message-ID"]
    arno, lena = logged_in(app, "arno"), logged_in(app, "lena")
    page = arno.get(f"/console/tickets/{ticket_id}")
    assert "Take the ticket to reply" in page.text and 'id="reply-body"' not in page.text
    refused = arno.post(f"/console/tickets/{ticket_id}/reply", data={"csrf_token": csrf(page), "body": "Hello"})
    assert refused.status_code == 403 and "take it first" in refused.text
    assert arno.post(f"/console/tickets/{ticket_id}/take", data={"csrf_token": csrf(page)}).status_code == 303

    page = arno.get(f"/console/tickets/{ticket_id}")
    assert 'id="reply-body"' in page.text and "Start from the reply crewdesk wrote" in page.text
    draft = arno.get(f"/console/tickets/{ticket_id}", params={"draft": 1}).text
    assert "required>We are looking into your parcel.</textarea>" in draft  # the draft, to edit
    assert arno.post(f"/console/tickets/{ticket_id}/reply", data={"body": "no token"}).status_code == 403
    other = lena.post(f"/console/tickets/{ticket_id}/reply", data={"csrf_token": csrf(lena.get("/console/queues")), "body": "Not mine"})
    assert other.status_code == 403 and "arno has it" in other.text
    assert len(smtp.received) == 1 and delivered == []

    body = "Hello Ana,\nthe carrier found your parcel; it arrives tomorrow.\nArno"
    sent = arno.post(f"/console/tickets/{ticket_id}/reply", data={"csrf_token": csrf(page), "body": body})
    assert sent.status_code == 303 and sent.headers["location"] == f"/console/tickets/{ticket_id}"
    assert len(smtp.received) == 2 and delivered == [ticket_id]
    got = smtp.received[1]
    mailed = got.message
    assert got.rcpt_tos == ["ana@example.com"] and mailed["To"] == "ana@example.com"
    # In the customer's thread: it answers their message (not our holding reply), and names the whole thread.
    assert mailed["In-Reply-To"] == f"<{customer_message_id}>" and mailed["References"] == f"<{customer_message_id}> {holding}"
    assert mailed["Subject"] == f"Re: Parcel lost [crewdesk #{ticket_id}]" and mailed.get_content().replace("\r\n", "\n").strip() == body

    shown = arno.get(f"/console/tickets/{ticket_id}").text
    assert "handed to email delivery" in shown and "outbound · arno" in shown and "· sent" in shown

    noted = arno.post(f"/console/tickets/{ticket_id}/note", data={"csrf_token": csrf(page), "body": "Carrier ref 123, call if it slips."})
    assert noted.status_code == 303 and len(smtp.received) == 2  # a note is never mailed
    assert "for the team only" in arno.get(f"/console/tickets/{ticket_id}").text
    with session_factory() as db:
        reply = db.execute(select(Message).where(Message.ticket_id == ticket_id, Message.direction == "outbound", Message.author == "arno")).scalar_one()
        assert reply.author == "arno" and reply.external_id == mailed["Message-ID"].strip("<>") and reply.delivered_at is not None
        assert db.get(Ticket, ticket_id).status == TicketStatus.escalated
    assert trail(session_factory, ticket_id) == [("person", "took", "arno"), ("person", "replied", "arno"), ("person", "noted", "arno")]
    shown = arno.get(f"/console/tickets/{ticket_id}").text
    assert shown.count('<td data-label="Who">arno</td>') >= 3  # the trail on the page names the person


def test_a_jira_reply_is_a_public_comment_and_a_note_an_internal_one(desk, session_factory, fake_jira):  # noqa: F811
    app, _settings, _delivered = desk
    _base, seen, _responses = fake_jira
    with transaction(session_factory) as db:
        ticket, _ = tickets.submit(db=db, ticket_in=TicketIn(external_id="SD-7", source="jira", customer="bo@example.com", subject="VPN", body="No VPN."))
        ticket_id = ticket.id
    escalate(session_factory, ticket_id)
    lena = logged_in(app, "lena")
    token = csrf(lena.get(f"/console/tickets/{ticket_id}"))
    lena.post(f"/console/tickets/{ticket_id}/take", data={"csrf_token": token})
    assert lena.post(f"/console/tickets/{ticket_id}/reply", data={"csrf_token": token, "body": "Please restart the client."}).status_code == 303
    assert lena.post(f"/console/tickets/{ticket_id}/note", data={"csrf_token": token, "body": "Known outage in EU-2."}).status_code == 303
    assert [(r["path"], r["json"]) for r in seen] == [
        ("/rest/servicedeskapi/request/SD-7/comment", {"body": "Please restart the client.", "public": True}),
        ("/rest/servicedeskapi/request/SD-7/comment", {"body": "Known outage in EU-2.", "public": False}),
    ]


def test_an_api_tickets_reply_stays_in_its_thread_and_the_note_is_left_out_of_the_customers_view(desk, session_factory):
    app, _settings, delivered = desk
    with transaction(session_factory) as db:
        ticket, _ = tickets.submit(db=db, ticket_in=TicketIn(external_id="api-1", source="api", customer="cy@example.com", subject="Hi", body="Help"))
        ticket_id = ticket.id
    escalate(session_factory, ticket_id)
    arno = logged_in(app, "arno")
    token = csrf(arno.get(f"/console/tickets/{ticket_id}"))
    arno.post(f"/console/tickets/{ticket_id}/take", data={"csrf_token": token})
    arno.post(f"/console/tickets/{ticket_id}/reply", data={"csrf_token": token, "body": "Here is how."})
    page = arno.get(f"/console/tickets/{ticket_id}").text
    assert "kept in the ticket&#39;s thread" in page and "in the thread (no reply channel)" in page
    arno.post(f"/console/tickets/{ticket_id}/note", data={"csrf_token": token, "body": "Internal only."})
    assert delivered == []  # no channel to hand it to
    seen = api_client(app, session_factory).get(f"/tickets/{ticket_id}/messages").json()
    assert [(m["direction"], m["author"], m["body"]) for m in seen] == [("inbound", "cy@example.com", "Help"), ("outbound", "arno", "Here is how.")]


def test_handing_back_queues_the_ticket_once_and_closing_resolves_it_under_the_persons_name(desk, session_factory, make_ticket, resumed):  # noqa: F811
    """Handed back, the ticket goes to the queue once and the worker runs it once (a second delivery of it is reused)."""
    from crewdesk.llm.factory import LLMFactory
    from crewdesk.runs.models import CrewRun
    from crews.pipeline import Pipeline

    app, settings, _delivered = desk
    back, done = make_ticket("Please call me."), make_ticket("Never mind, sorted.")
    for ticket_id in (back, done):
        escalate(session_factory, ticket_id)
    arno = logged_in(app, "arno")
    token = csrf(arno.get("/console/queues"))
    assert arno.post(f"/console/tickets/{back}/hand-back", data={"csrf_token": token}).status_code == 403  # not taken
    assert arno.post(f"/console/tickets/{back}/take", data={}).status_code == 403  # no token
    for ticket_id in (back, done):
        assert arno.post(f"/console/tickets/{ticket_id}/take", data={"csrf_token": token}).status_code == 303
    assert arno.post(f"/console/tickets/{back}/hand-back", data={"reason": "no token"}).status_code == 403
    assert arno.post(f"/console/tickets/{back}/close", data={}).status_code == 403
    assert resumed == []

    assert arno.post(f"/console/tickets/{back}/hand-back", data={"csrf_token": token, "reason": "routine"}).status_code == 303
    assert resumed == [back]
    again = arno.post(f"/console/tickets/{back}/hand-back", data={"csrf_token": token})
    assert again.status_code == 403 and resumed == [back]  # nobody holds it now: refused, not queued twice
    assert "Handed back to crewdesk" in arno.get(f"/console/tickets/{back}").text
    pipeline = Pipeline(settings=settings, session_factory=session_factory, llm_factory=LLMFactory(settings))
    first, second = pipeline.process(back), pipeline.process(back)  # what the worker does with it, and a duplicate delivery
    assert not first.reused and second.reused and first.status in ("resolved", "escalated", "waiting_on_customer")
    with session_factory() as db:
        assert len(db.execute(select(CrewRun).where(CrewRun.ticket_id == back)).scalars().all()) == 1

    assert arno.post(f"/console/tickets/{done}/close", data={"csrf_token": token, "reason": "sorted by the customer"}).status_code == 303
    assert arno.post(f"/console/tickets/{done}/close", data={"csrf_token": token}).status_code == 409  # closed once
    with session_factory() as db:
        handed, closed = db.get(Ticket, back), db.get(Ticket, done)
        assert handed.assigned_to is None and handed.status == first.status
        assert (closed.status, closed.status_reason) == (TicketStatus.resolved, "closed by arno: sorted by the customer")
    rows = trail(session_factory, back)
    assert rows[rows.index(("status", "handed_back", "arno")) + 1] == ("status", "triaging", "pipeline")  # then crewdesk's run
    assert trail(session_factory, done)[-1] == ("status", "closed", "arno")


def test_a_reply_whose_delivery_task_was_never_sent_gets_one_from_the_reconciler(settings, session_factory, redis_url, monkeypatch):
    """The broker was down when the console sent the reply's delivery task: the reply stays unsent and untried. The
    reconciler's beat task (workers/tasks.reconcile) sends its ticket a deliver_replies task on the delivery queue once the
    reply is older than CREWDESK_RECONCILE_AFTER_SECONDS; an API ticket's reply (no channel) is left alone."""
    import json
    from datetime import timedelta

    import redis
    from sqlalchemy import update

    from crewdesk.connectors.smtp import SmtpReplyChannel
    from crewdesk.db import utcnow
    from crewdesk.llm.factory import LLMFactory
    from crewdesk.tickets import handling
    from crews.pipeline import Pipeline
    from workers import runtime as worker_runtime
    from workers.app import configure
    from workers.tasks import reconcile

    ids = []
    for source, key in (("email", "mail-1"), ("api", "api-1")):
        with transaction(session_factory) as db:
            ticket, _ = tickets.submit(db=db, ticket_in=TicketIn(external_id=key, source=source, customer="ana@example.com", subject="Hi", body="Help"))
            ids.append(ticket.id)
        escalate(session_factory, ticket.id)
        with transaction(session_factory) as db:
            tickets.assign(db=db, ticket_id=ticket.id, to="arno", by="arno")
            handling.reply(db=db, ticket_id=ticket.id, body="Here is how.", by="arno")
    with transaction(session_factory) as db:
        db.execute(update(Message).where(Message.direction == "outbound").values(created_at=utcnow() - timedelta(hours=1)))

    settings = settings.model_copy(update={"broker_url": redis_url, "reconcile_after_seconds": 600})
    configure(settings)
    pipeline = Pipeline(settings=settings, session_factory=session_factory, llm_factory=LLMFactory(settings))
    channel = SmtpReplyChannel(host="127.0.0.1", port=1, tls="none", support_address=SUPPORT)
    monkeypatch.setattr(worker_runtime, "_runtime", worker_runtime.Runtime(settings=settings, pipeline=pipeline, channels={"email": channel}))
    queue = redis.Redis.from_url(redis_url)
    try:
        result = reconcile.apply()
        assert result.successful() and result.result["deliveries"] == [ids[0]]
        sent = [json.loads(raw)["headers"] for raw in queue.lrange("delivery", 0, -1)]
        assert [(h["task"], h["argsrepr"]) for h in sent] == [("crewdesk.deliver_replies", f"({ids[0]},)")]
    finally:
        queue.delete("delivery")


def test_a_reply_is_kept_when_its_delivery_task_cannot_be_sent(desk, session_factory, resumed):  # noqa: F811
    """The broker refuses the delivery task: the reply is stored (committed before the send), the person is told it is
    not sent yet, and the page shows it so (the reconciler sends it later: the test above)."""
    _app, settings, _delivered = desk

    def broker_down(_ticket_id: int) -> None:
        raise ConnectionRefusedError("redis:6379")

    app = create_app(settings, session_factory=session_factory, send=resumed.extend, deliver=broker_down)
    ticket_id, _ = email_ticket(settings, session_factory)
    arno = logged_in(app, "arno")
    token = csrf(arno.get(f"/console/tickets/{ticket_id}"))
    arno.post(f"/console/tickets/{ticket_id}/take", data={"csrf_token": token})
    assert arno.post(f"/console/tickets/{ticket_id}/reply", data={"csrf_token": token, "body": "On its way."}).status_code == 303
    page = arno.get(f"/console/tickets/{ticket_id}").text
    assert "not handed to delivery (ConnectionRefusedError)" in page and "· not sent yet" in page
    with session_factory() as db:
        reply = db.execute(select(Message).where(Message.ticket_id == ticket_id, Message.direction == "outbound")).scalar_one()
        assert (reply.body, reply.delivered_at, reply.delivery_attempts) == ("On its way.", None, 0)
