"""E-mail ingest against real PostgreSQL: tickets, threading, duplicates, ignored and rejected mail, attachments,
and `crewdesk email import` on a Maildir and an mbox.

Fixtures are in tests/fixtures/email; where each comes from (CPython's email tests, the Ruby mail
gem, MimeKit, mailgun/talon, zapier/email-reply-parser) and its licence are in tests/unit/test_email_parse.py's docstring
and that folder's SOURCES.md.
"""

from __future__ import annotations

import hashlib
import mailbox
import os
import subprocess
from collections import Counter

from sqlalchemy import func, select

from crewdesk.db import transaction
from crewdesk.intake import events
from crewdesk.intake.email.parse import synthetic_message_id
from crewdesk.intake.email.service import ingest_email
from crewdesk.intake.models import InboundEvent
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Attachment, Message, Ticket, TicketStatus
from crewdesk.tickets.schemas import MAX_BODY_CHARS
from tests.helpers import CREWDESK, ROOT
from tests.unit.test_email_parse import FIXTURES, fixture_messages, mail

# What the whole fixture corpus becomes: 369 messages once the mbox files are split (and files that start with an
# mbox envelope line are read as one-message mboxes): the 363 of the shared corpora and the 6 of recovery/ (the
# project's own, each a MIME defect recovered from: all 6 tickets). Rejected: 88 files that are not mail at all (reply
# bodies without headers, HTML snippets, TNEF and its extracted files), 54 without any text part (one of them without
# a From either), 7 with a multipart boundary that never appears, 1 empty. needs_person: 12 read but without a usable
# From, escalated tickets for a person. Duplicates: fixtures reusing another's Message-ID. Of the two replies, one is
# from another sender than its thread's customer: a ticket of its own (RFC 2822's Mary, below).
FIXTURE_OUTCOMES = {"created": 155, "follow_up": 1, "duplicate": 46, "ignored": 28, "rejected": 127, "needs_person": 12}  # 23 attachment-only mails are tickets


def ingest(session_factory, settings, raw: bytes, ref: str = ""):
    return ingest_email(session_factory=session_factory, raw=raw, settings=settings, source_ref=ref)


def ticket_count(session_factory) -> int:
    with session_factory() as db:
        return db.scalar(select(func.count()).select_from(Ticket).where(Ticket.status != TicketStatus.failed.value))


def test_every_fixture_becomes_a_ticket_or_a_recorded_outcome(session_factory, settings):
    messages = fixture_messages()
    results = {ref: ingest(session_factory, settings, raw, ref) for ref, raw in messages}
    counts = Counter(r.status for r in results.values())
    assert dict(counts) == FIXTURE_OUTCOMES
    assert sum(counts.values()) == len(messages) == 369

    with session_factory() as db:
        assert events.counts(db=db, channel="email") == {"accepted": 168, "ignored": 28, "rejected": 127}
        assert db.scalar(select(func.sum(InboundEvent.seen_count)).where(InboundEvent.channel == "email")) == len(messages)
        for event in db.execute(select(InboundEvent).where(InboundEvent.status.in_([events.IGNORED, events.REJECTED]))).scalars():
            assert event.reason and "\n" not in event.reason and event.detail["source_ref"], event.external_id
        rejected = [r for r in results.values() if r.status == "rejected"]
        for result in rejected:  # findable as a failed ticket too, with the reason and the raw mail kept
            failed = db.get(Ticket, result.ticket_id)
            assert failed.status == TicketStatus.failed.value and result.reason in failed.status_reason
            assert (settings.home / failed.raw["raw_mail"]["path"]).stat().st_size == failed.raw["raw_mail"]["size"]
        for result in (r for r in results.values() if r.status == "needs_person"):  # a ticket for a person, never queued
            held = db.get(Ticket, result.ticket_id)
            assert held.status == TicketStatus.escalated and held.status_reason == result.reason and not result.needs_run
            assert result.reason.startswith("no usable From address (") and result.reason.endswith("): nobody can be answered")

        # RFC 2822 appendix A.1.3: 06 (Mary) answers 05 (John), 07 (John) answers 06. A reply joins a ticket only from
        # that ticket's customer: Mary's is a ticket of her own, linked to John's; John's answer to it joins his.
        thread = [results[f"ruby-mail-gem/rfc2822/example0{n}.eml"] for n in (5, 6, 7)]
        assert [r.status for r in thread[1:]] == ["created", "follow_up"]
        ticket_id = thread[2].ticket_id
        assert thread[0].ticket_id in (ticket_id, None) and db.get(Ticket, thread[1].ticket_id).raw["related_ticket"] == ticket_id
        bodies = [m.body for m in db.execute(select(Message).where(Message.ticket_id == ticket_id).order_by(Message.id)).scalars()]
        assert bodies[-1:] == ["This is a reply to your reply."] and db.get(Ticket, thread[1].ticket_id).body == "This is a reply to your hello."

        for name in sorted((FIXTURES / "ruby-mail-gem/multipart_report_emails").iterdir()):
            assert results[f"ruby-mail-gem/multipart_report_emails/{name.name}"].status in ("ignored", "duplicate"), name
        assert results["mimekit/messages/bounce.txt"].status == "ignored"  # Auto-Submitted: auto-replied
        assert "auto-submitted" in results["ruby-mail-gem/multipart_report_emails/report_530.eml"].reason
        shift_jis = results["ruby-mail-gem/multi_charset/japanese_shift_jis.eml"]
        assert "あいうえお" in db.get(Ticket, shift_jis.ticket_id).body
        assert results["mimekit/tnef/winmail.tnef"].reason.startswith("not an RFC 5322 message: no header fields (first line: ")
        assert results["cpython-test_email/msg_12.txt"].reason == "no text: no text/plain or text/html body"
    assert ticket_count(session_factory) == counts["created"] + counts["needs_person"]


def test_a_reply_thread_of_three_becomes_one_ticket_then_the_subject_tag_joins_it(session_factory, settings):
    first = mail("My order 1001 never arrived.", Message_ID="<t1@customer.example>", Subject="Order 1001 missing")
    second = mail(
        "Any news on this?\n\nOn Mon, Support wrote:\n> We are looking into it.",
        Message_ID="<t2@customer.example>",
        In_Reply_To="<t1@customer.example>",
        References="<t1@customer.example>",
        Subject="Re: Order 1001 missing",
    )
    third = mail(
        "Still nothing.",
        Message_ID="<t3@customer.example>",
        In_Reply_To="<t2@customer.example>",
        References="<t1@customer.example> <t2@customer.example>",
        Subject="Re: Order 1001 missing",
    )
    created = ingest(session_factory, settings, first)
    assert created.status == "created" and created.needs_run
    replies = [ingest(session_factory, settings, raw) for raw in (second, third)]
    assert [r.status for r in replies] == ["follow_up", "follow_up"]
    assert {r.ticket_id for r in replies} == {created.ticket_id}
    assert not any(r.needs_run for r in replies)  # not yet worked: its run will read the whole thread
    with session_factory() as db:
        ticket = db.get(Ticket, created.ticket_id)
        assert [m.body for m in ticket.messages] == ["My order 1001 never arrived.", "Any news on this?", "Still nothing."]
        assert [m.external_id for m in ticket.messages] == ["t1@customer.example", "t2@customer.example", "t3@customer.example"]
        assert ticket.messages[2].meta["references"] == ["t1@customer.example", "t2@customer.example"]
        assert ticket.customer == "ana@example.com" and ticket.subject == "Order 1001 missing"

    with transaction(session_factory) as db:  # answered and resolved: the next mail reopens it
        ticket = db.get(Ticket, created.ticket_id)
        ticket.status = TicketStatus.resolved.value
    tagged = mail("Thanks, it arrived!", Message_ID="<t4@customer.example>", Subject=f"Re: Order 1001 missing [crewdesk #{created.ticket_id}]")
    result = ingest(session_factory, settings, tagged)
    assert result.status == "follow_up" and result.ticket_id == created.ticket_id and result.needs_run
    with session_factory() as db:
        ticket = db.get(Ticket, created.ticket_id)
        assert len(ticket.messages) == 4 and ticket.status == TicketStatus.queued.value

    # The tag alone does not let someone else write into this customer's ticket.
    stranger = mail("Give me their address", From="eve@example.net", Message_ID="<e1@example.net>", Subject=f"Re: [crewdesk #{created.ticket_id}]")
    other = ingest(session_factory, settings, stranger)
    assert other.status == "created" and other.ticket_id != created.ticket_id


def test_the_same_mail_twice_is_one_ticket(session_factory, settings):
    raw = mail("Please cancel order 2002.", Message_ID="<dup@example.com>")
    first, second = ingest(session_factory, settings, raw, "a.eml"), ingest(session_factory, settings, raw, "b.eml")
    assert first.status == "created" and second.status == "duplicate"
    assert second.ticket_id == first.ticket_id and second.message_id == first.message_id
    assert second.needs_run  # still `received`: the first import never queued it, so a re-import offers it again
    with session_factory() as db:
        event = events.find(db=db, channel="email", external_id="dup@example.com")
        assert event.seen_count == 2 and event.status == events.ACCEPTED and event.ticket_id == first.ticket_id
        assert db.scalar(select(func.count()).select_from(Ticket)) == 1
        assert db.scalar(select(func.count()).select_from(Message)) == 1
    with transaction(session_factory) as db:
        tickets.mark_queued(db=db, ticket_ids=[first.ticket_id])
    assert ingest(session_factory, settings, raw).needs_run is False  # queued once: a re-fetch does not queue it again


def test_our_own_mail_is_ignored(session_factory, settings):
    made = ingest(session_factory, settings, mail("Where is my refund?", Message_ID="<c1@example.com>"))
    with transaction(session_factory) as db:  # our reply, as the SMTP channel stores it
        ticket = db.get(Ticket, made.ticket_id)
        tickets.add_message(db=db, ticket=ticket, direction="outbound", body="We refunded you.", external_id="r1@support.example.com")
    ours = mail("We refunded you.", From=f"Support <{settings.support_address}>", Message_ID="<r1-copy@support.example.com>")
    tagged = mail("We refunded you.", From="helpdesk@other.example", X_Crewdesk_Ticket=str(made.ticket_id), Message_ID="<r2@x>")
    auto = mail("I am out of office.", Auto_Submitted="auto-replied", Message_ID="<ooo@example.com>", In_Reply_To="<r1@support.example.com>")
    results = [ingest(session_factory, settings, raw) for raw in (ours, tagged, auto)]
    assert [r.status for r in results] == ["ignored", "ignored", "ignored"]
    assert "loop protection" in results[0].reason and "X-Crewdesk-Ticket" in results[1].reason and "auto-submitted" in results[2].reason
    assert results[2].ticket_id == made.ticket_id  # recorded against the thread it answers, not answered
    with session_factory() as db:
        assert db.scalar(select(func.count()).select_from(Ticket)) == 1
        assert db.scalar(select(func.count()).select_from(Message).where(Message.direction == "inbound")) == 1
        assert events.counts(db=db, channel="email") == {"accepted": 1, "ignored": 3}


def test_attachments_are_stored_by_hash_or_recorded_as_refused(session_factory, settings, tmp_path):
    from email.message import EmailMessage

    settings = settings.model_copy(update={"home": tmp_path, "attachment_max_bytes": 1000})
    message = EmailMessage()
    message["From"], message["Subject"], message["Message-ID"] = "ana@example.com", "Broken screen", "<att@example.com>"
    message.set_content("Photo attached.")
    message.add_attachment(b"\x89PNG" + b"p" * 100, maintype="image", subtype="png", filename="screen.png")
    message.add_attachment(b"%PDF" + b"x" * 5000, maintype="application", subtype="pdf", filename="manual.pdf")
    message.add_attachment(b"MZ", maintype="application", subtype="x-msdownload", filename="fix.exe")
    result = ingest(session_factory, settings, message.as_bytes())
    assert result.status == "created"
    with session_factory() as db:
        rows = {a.filename: a for a in db.execute(select(Attachment).where(Attachment.message_id == result.message_id)).scalars()}
        meta = db.get(Message, result.message_id).meta
    assert set(rows) == {"screen.png", "manual.pdf", "fix.exe"}
    png = rows["screen.png"]
    stored = tmp_path / "attachments" / png.sha256[:2] / png.sha256
    assert png.stored and png.refused_reason is None and stored.read_bytes() == b"\x89PNG" + b"p" * 100
    assert not rows["manual.pdf"].stored and "over the size limit" in rows["manual.pdf"].refused_reason
    assert not rows["fix.exe"].stored and rows["fix.exe"].refused_reason == "type application/x-msdownload is not allowed"
    for refused in ("manual.pdf", "fix.exe"):
        assert not (tmp_path / "attachments" / rows[refused].sha256[:2] / rows[refused].sha256).exists()
    assert [a["filename"] for a in meta["attachments"]] == ["screen.png", "manual.pdf", "fix.exe"]


def test_a_very_long_mail_is_truncated_with_a_note(session_factory, settings):
    result = ingest(session_factory, settings, mail("word " * 20_000, Message_ID="<long@example.com>"))
    assert result.status == "created"
    with session_factory() as db:
        ticket = db.get(Ticket, result.ticket_id)
        assert len(ticket.body) <= MAX_BODY_CHARS and ticket.body.endswith("characters]") and "truncated" in ticket.body
        assert ticket.messages[0].meta["truncated"] is True


def test_a_rejected_mail_is_findable_with_its_reason_and_its_raw_bytes(session_factory, settings):
    raw = mail("", From="Ana <ana@example.com>")
    result = ingest(session_factory, settings, raw, "inbox/17.eml")
    assert result.status == "rejected" and result.reason == "no text: no text/plain or text/html body"
    again = ingest(session_factory, settings, raw, "inbox/17.eml")
    assert again.status == "duplicate" and not again.needs_run
    with session_factory() as db:
        event = events.find(db=db, channel="email", external_id="m1@example.com")
        assert event.status == events.REJECTED and event.reason == result.reason and event.seen_count == 2
        assert event.detail["source_ref"] == "inbox/17.eml" and event.detail["headers"]["From"] == "Ana <ana@example.com>"
        failed = tickets.find(db=db, source="email", external_id="m1@example.com")
        assert failed.id == result.ticket_id and failed.status == TicketStatus.failed.value and result.reason in failed.status_reason
        assert failed.raw["raw_mail"] == event.detail["raw_mail"]
    assert (settings.home / failed.raw["raw_mail"]["path"]).read_bytes() == raw


def test_a_mail_with_garbled_headers_is_kept_raw_with_the_reason(session_factory, settings):
    raw = b"\x00\x01binary junk\r\nFrom ana@example.com\r\n\r\nhello"
    result = ingest(session_factory, settings, raw, "junk.bin")
    assert result.status == "rejected" and result.reason == "not an RFC 5322 message: no header fields (first line: '\ufffd\\x01binary junk')"
    with session_factory() as db:
        failed = db.get(Ticket, result.ticket_id)
        event = events.find(db=db, channel="email", external_id=synthetic_message_id(raw))
        assert failed.status == TicketStatus.failed and failed.status_reason == f"e-mail rejected: {result.reason}"
        assert event.status == events.REJECTED and event.reason == result.reason and event.ticket_id == failed.id
        kept = event.detail["raw_mail"]
    assert kept == {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw), "path": f"attachments/{kept['sha256'][:2]}/{kept['sha256']}"}
    assert (settings.home / kept["path"]).read_bytes() == raw
    recovered = ingest(session_factory, settings, (FIXTURES / "recovery/garbled-first-header-line.eml").read_bytes())
    assert recovered.status == "created" and recovered.needs_run  # one garbled line above real header fields: read


def test_a_mail_without_a_usable_from_is_an_escalated_ticket_for_a_person(session_factory, settings):
    raw = mail("My order 1234 never came.", From="Ana Lima", Message_ID="<nofrom@example.com>")
    result = ingest(session_factory, settings, raw, "inbox/18.eml")
    reason = "no usable From address (From: Ana Lima): nobody can be answered"
    assert (result.status, result.reason, result.needs_run) == ("needs_person", reason, False)
    again = ingest(session_factory, settings, raw, "inbox/18.eml")
    assert again.status == "duplicate" and not again.needs_run  # never offered to the queue, however often it arrives
    with session_factory() as db:
        ticket = db.get(Ticket, result.ticket_id)
        assert (ticket.status, ticket.status_reason, ticket.customer, ticket.body) == (TicketStatus.escalated, reason, "", "My order 1234 never came.")
        [message] = ticket.messages
        assert message.id == result.message_id and message.external_id == "nofrom@example.com" and message.meta["source_ref"] == "inbox/18.eml"
        [original] = db.execute(select(Attachment).where(Attachment.message_id == message.id)).scalars()
        assert (original.filename, original.content_type, original.stored) == ("original.eml", "message/rfc822", True)
        event = events.find(db=db, channel="email", external_id="nofrom@example.com")
        assert (event.status, event.reason, event.ticket_id) == (events.ACCEPTED, reason, ticket.id)
        assert ticket.raw["raw_mail"]["sha256"] == original.sha256 == event.detail["raw_mail"]["sha256"]
    assert (settings.home / "attachments" / original.sha256[:2] / original.sha256).read_bytes() == raw


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([CREWDESK, *args], env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_email_import_reads_a_maildir_and_an_mbox(session_factory, pg_url, redis_url, tmp_path):
    env = {"CREWDESK_DATABASE_URL": pg_url, "CREWDESK_BROKER_URL": redis_url, "CREWDESK_HOME": str(tmp_path / "home"), "CREWDESK_LOG_LEVEL": "WARNING"}
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(mail("Order 1 is late.", Message_ID="<i1@example.com>", Subject="Late order"))
    box.add(mail("Any update?", Message_ID="<i2@example.com>", In_Reply_To="<i1@example.com>", Subject="Re: Late order"))
    box.add(mail("Auto reply", Message_ID="<i3@example.com>", Auto_Submitted="auto-replied"))
    box.add(mail("no sender", Message_ID="<i4@example.com>", From="nobody"))  # an escalated ticket for a person: not queued
    box.add(b"not a mail at all\n")
    first = cli("email", "import", str(tmp_path / "Maildir"), env=env)
    assert first.returncode == 1, first.stderr  # a rejection is reported, and the rest imported
    assert "created 1, follow-ups 1, duplicates 0, ignored 1, for a person 1, rejected 1; queued 1" in first.stdout, first.stdout + first.stderr
    assert "rejected " in first.stderr and "not an RFC 5322 message: no header fields (first line: 'not a mail at all')" in first.stderr

    mbox = mailbox.mbox(tmp_path / "archive.mbox")
    mbox.add(mail("Order 1 is late.", Message_ID="<i1@example.com>", Subject="Late order"))  # already imported
    mbox.add(mail("Refund please.", Message_ID="<i5@example.com>", From="bob@example.com", Subject="Refund"))
    mbox.add(
        mail("Also: From the start it was broken.\nFrom here on too.", Message_ID="<i6@example.com>", From="bob@example.com", In_Reply_To="<i5@example.com>")
    )
    mbox.flush()
    second = cli("email", "import", str(tmp_path / "archive.mbox"), env=env)
    assert second.returncode == 0, second.stderr
    assert "created 1, follow-ups 1, duplicates 1, ignored 0, for a person 0, rejected 0; queued 1" in second.stdout, second.stdout
    with session_factory() as db:
        live = list(db.execute(select(Ticket).where(Ticket.status.not_in([TicketStatus.failed, TicketStatus.escalated])).order_by(Ticket.id)).scalars())
        assert [t.status for t in live] == ["queued", "queued"]
        assert db.scalar(select(func.count()).select_from(Ticket).where(Ticket.status == TicketStatus.escalated)) == 1
        assert [len(t.messages) for t in live] == [2, 2]
        assert live[1].messages[1].body == "Also: From the start it was broken.\nFrom here on too."  # mbox escaping undone
        assert live[1].messages[1].meta["source_ref"].endswith("archive.mbox#3")
    import redis

    assert redis.Redis.from_url(redis_url).llen("tickets") == 2  # one task per ticket, not per message
