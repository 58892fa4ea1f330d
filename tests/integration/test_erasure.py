"""Right to erasure reaches PostgreSQL: after `memory forget`, nothing a customer wrote or was written remains in any
table, while ids, statuses and the audit chain stay intact. Real PostgreSQL, the real pipeline with the scripted
model (so the PII vault, tool effects, runs and audit rows are the ones a real run writes)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

from sqlalchemy import select, text, update

from crewdesk.audit import service as audit
from crewdesk.audit.models import AuditEvent
from crewdesk.db import transaction
from crewdesk.intake.models import InboundEvent
from crewdesk.llm.scripted import PlanResponder
from crewdesk.memory.service import customer_key
from crewdesk.tickets import service as tickets
from crewdesk.tickets.erasure import ERASED, erase_customer, remove_files
from crewdesk.tickets.models import Attachment, Message, Ticket
from crews.pipeline import Pipeline
from tests.helpers import CREWDESK, ROOT, RecordingFactory

EMAIL = "noah.brown7922@example.com"  # a real customer of the demo store
PHONE = "+1 (415) 555-0134"
WORDS = "my blue kettle from the spring sale leaks"  # what the customer wrote, in no other record
SCREENSHOT, SHARED = b"\x89PNG only noah's screenshot", b"%PDF the shop's own price list"


def _resolved_ticket(settings, session_factory, make_ticket) -> int:
    plan = PlanResponder(
        triage={"category": "billing", "priority": "normal", "summary": "order status", "confidence": 0.9},
        plans={"billing": [("find_user_id_by_email", {"email": "<EMAIL_1>"}), ("get_user_details", {"user_id": "noah_brown_6181"})]},
        finals={"billing": {"customer_reply": "Hi! We found your account for <EMAIL_1>; your order #W7678072 is on its way.", "needs_human": False}},
    )
    ticket_id = make_ticket(f"Hello, {WORDS}. Mail me at {EMAIL} or call {PHONE}.", customer=EMAIL, subject="Kettle leaks")
    outcome = Pipeline(settings=settings, session_factory=session_factory, llm_factory=RecordingFactory(settings, responder=plan)).process(ticket_id)
    assert outcome.status == "resolved"
    return ticket_id


def _attach(session_factory, ticket_id: int, data: bytes, home, *, sender: str = EMAIL, subject: str = "Kettle leaks") -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = home / "attachments" / digest[:2] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with transaction(session_factory) as db:
        message = db.execute(select(Message).where(Message.ticket_id == ticket_id).order_by(Message.id)).scalars().first()
        db.add(Attachment(message_id=message.id, filename="shot.png", content_type="image/png", size=len(data), sha256=digest, stored=True))
        db.add(
            InboundEvent(
                channel="email",
                external_id=f"<m{ticket_id}.{digest[:8]}@example.com>",
                kind="message",
                status="accepted",
                ticket_id=ticket_id,
                detail={"headers": {"From": sender, "Subject": subject}},
            )
        )
    return digest


def _everything_but_the_audit(session_factory) -> str:
    """Every row of every table of ours except audit_events, as text (store_* is the demo's system of record, the
    company's customer database, which erasure in crewdesk does not reach)."""
    with session_factory() as db:
        tables = [
            t
            for t in db.execute(text("select tablename from pg_tables where schemaname = 'public'")).scalars()
            if t not in ("audit_events", "alembic_version") and not t.startswith("store_")
        ]
        return json.dumps({t: [list(r) for r in db.execute(text(f'select * from "{t}"')).all()] for t in tables}, default=str)


def test_forget_erases_the_customers_ended_tickets_and_nothing_else(settings, store, make_ticket, tmp_path):
    session_factory, home = store, tmp_path / "home"
    erased_id = _resolved_ticket(settings, session_factory, make_ticket)
    only_theirs = _attach(session_factory, erased_id, SCREENSHOT, home)
    shared = _attach(session_factory, erased_id, SHARED, home)
    open_id = make_ticket("And another thing: the lid is cracked too", customer=f"  {EMAIL.upper()} ")  # still being worked on
    with transaction(session_factory) as db:
        db.get(Ticket, open_id).status = "in_progress"
    other_id = make_ticket("Where is my parcel?", customer="bo@example.com")
    _attach(session_factory, other_id, SHARED, home, sender="bo@example.com", subject="Parcel")
    before = _everything_but_the_audit(session_factory)
    assert EMAIL in before and WORDS in before and "<EMAIL_1>" in before  # the vault holds the customer's tokens

    with transaction(session_factory) as db:
        result = erase_customer(db=db, customer=EMAIL, customer_key=customer_key(customer=EMAIL), attachments_dir=home / "attachments")
    remove_files(result)

    assert (result.tickets, result.still_open, result.attachments, result.files) == ([erased_id], [open_id], 2, 1)
    assert result.messages >= 2  # the customer's message and the crew's reply
    after = _everything_but_the_audit(session_factory)
    assert WORDS not in after and "the lid is cracked too" in after  # the open ticket is left alone
    assert EMAIL.upper() in after and EMAIL not in after  # that open ticket's own spelling; the erased one is gone
    assert "Kettle leaks" not in after and PHONE not in after
    with session_factory() as db:
        erased = db.get(Ticket, erased_id)
        assert (erased.customer, erased.subject, erased.body, erased.status, erased.category) == (ERASED, ERASED, ERASED, "resolved", "billing")
        assert {m.body for m in erased.messages} == {ERASED} and all(m.meta is None and m.author == "" for m in erased.messages)
        assert tickets.find(db=db, source="test", external_id=erased.external_id).id == erased_id  # a repeat is still recognised
        assert db.get(Ticket, other_id).body == "Where is my parcel?" and db.get(Ticket, open_id).status == "in_progress"
        assert [e.detail for e in db.execute(select(InboundEvent).where(InboundEvent.ticket_id == erased_id)).scalars()] == [None, None]
        assert audit.verify(db=db).ok  # the chain is untouched
        trail = json.dumps([[e.arguments, e.result] for e in db.execute(select(AuditEvent)).scalars()], default=str)
        [event] = db.execute(select(AuditEvent).where(AuditEvent.kind == "erasure")).scalars()
    assert EMAIL not in trail and event.arguments == {"customer_key": customer_key(customer=EMAIL)}  # tokens, never the address
    assert not (home / "attachments" / only_theirs[:2] / only_theirs).exists()
    assert (home / "attachments" / shared[:2] / shared).exists()  # bo's ticket still has that file


def test_cli_forget_reports_open_tickets_and_erases_them_once_they_end(settings, session_factory, make_ticket, tmp_path):
    env = {**os.environ, "CREWDESK_DATABASE_URL": settings.database_url, "CREWDESK_HOME": str(tmp_path), "CREWDESK_MEMORY_BACKEND": "off"}
    ticket_id = make_ticket(f"Please help: {WORDS}", customer="ana@example.com")

    def forget() -> subprocess.CompletedProcess:
        return subprocess.run([CREWDESK, "memory", "forget", "--customer", "Ana@Example.com"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)

    with transaction(session_factory) as db:
        db.execute(update(Ticket).where(Ticket.id == ticket_id).values(status="queued"))
    first = forget()
    assert first.returncode == 1 and f"tickets: 0 erased (0 messages, 0 attachments, 0 files); 1 still open, not erased: #{ticket_id}" in first.stdout
    with transaction(session_factory) as db:
        db.execute(update(Ticket).where(Ticket.id == ticket_id).values(status="escalated"))
    second = forget()
    assert second.returncode == 0 and "tickets: 1 erased (1 messages, 0 attachments, 0 files)" in second.stdout, second.stdout + second.stderr
    with session_factory() as db:
        assert db.get(Ticket, ticket_id).body == ERASED
