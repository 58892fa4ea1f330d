"""E-mail end to end against a real dovecot (IMAP), a real aiosmtpd (SMTP) and real PostgreSQL: polling, crash
safety of the poller (SIGKILL), replies with threading headers, and loop protection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, update

from crewdesk.connectors.imap import ImapMailbox, MailboxError
from crewdesk.connectors.smtp import SmtpReplyChannel
from crewdesk.db import transaction
from crewdesk.delivery.service import deliver_pending
from crewdesk.errors import TransientError
from crewdesk.intake.email.poller import poll_mailbox
from crewdesk.intake.enqueue import Enqueuer
from crewdesk.intake.models import InboundEvent, MailboxCursor
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket
from crewdesk.tickets.schemas import TicketIn
from tests.mailservers import PASSWORD, Dovecot, SmtpServer, dovecot_missing

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = "support@crewdesk.test"
MTA = "mx.crewdesk.test"  # the authserv-id of the MTA in front of the test mailbox (CREWDESK_EMAIL_AUTHSERV_ID)


@pytest.fixture(scope="module")
def dovecot():
    missing = dovecot_missing()
    if missing:
        pytest.skip(missing)
    server = Dovecot().start()
    yield server
    server.stop()


@pytest.fixture
def mail_settings(settings, dovecot):
    """Settings for a fresh mailbox of our own on the private dovecot."""
    return settings.model_copy(
        update={
            "imap_host": dovecot.host,
            "imap_port": dovecot.port,
            "imap_tls": "none",
            "imap_user": dovecot.new_user(),
            "imap_password": SecretStr(PASSWORD),
            "imap_folder": "INBOX",
            "support_address": SUPPORT,
            "email_authserv_id": MTA,
        }
    )


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


def mail(
    subject: str = "Refund please",
    body: str = "I was charged twice for invoice 2291, please refund one charge.",
    *,
    sender: str = "ana@example.com",
    message_id: str | None = None,
    authenticated: bool = True,
    **headers: str,
) -> tuple[bytes, str]:
    """A customer's mail and its Message-ID (without <>). `authenticated`: it carries what the MTA in front of the
    mailbox adds for mail whose From passed DMARC (an Authentication-Results field with the MTA's authserv-id)."""
    msg = EmailMessage()
    if authenticated:
        msg["Authentication-Results"] = f"{MTA}; dmarc=pass header.from={parseaddr(sender)[1].rpartition('@')[2]}"
    msg["From"], msg["To"], msg["Subject"] = sender, SUPPORT, subject
    msg["Message-ID"] = f"<{message_id}>" if message_id else make_msgid(domain="example.com")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes(), msg["Message-ID"].strip("<>")


def append(settings, *raws: bytes, folder: str | None = None) -> None:
    with Dovecot.client_for(settings) as client:
        for raw in raws:
            client.append(raw, folder or settings.imap_folder)


def into(session_factory, queued: list[int] | None = None) -> Enqueuer:
    """The real Enqueuer (send, then mark queued) over a list standing in for the broker."""
    return Enqueuer(session_factory=session_factory, send=(queued if queued is not None else []).extend)


def poll(settings, session_factory, queued: list[int] | None = None):
    return poll_mailbox(session_factory=session_factory, settings=settings, enqueue=into(session_factory, queued))


def email_tickets(session_factory) -> list[Ticket]:
    with session_factory() as db:
        return list(db.execute(select(Ticket).where(Ticket.source == "email").order_by(Ticket.id)).scalars())


def flags(settings, folder: str | None = None) -> dict[int, set[str]]:
    with Dovecot.client_for(settings) as client:
        return client.flags(folder or settings.imap_folder)


# --- polling ------------------------------------------------------------------------------------------------------


def test_poll_creates_tickets_marks_them_seen_and_a_second_poll_fetches_nothing(mail_settings, session_factory):
    raws = [mail(f"Question {n}", f"My order {n} has not arrived yet, where is it?")[0] for n in range(3)]
    append(mail_settings, *raws)
    queued: list[int] = []

    report = poll(mail_settings, session_factory, queued)

    made = email_tickets(session_factory)
    assert report.fetched == 3 and report.outcomes == {"created": 3}
    assert sorted(queued) == [t.id for t in made] and len(made) == 3
    assert {t.status for t in made} == {"queued"}
    assert all("\\Seen" in f for f in flags(mail_settings).values())
    with session_factory() as db:
        cursor = db.get(MailboxCursor, report.mailbox)
    assert cursor.last_uid == 3 and report.mailbox == f"{mail_settings.imap_user}@127.0.0.1:{mail_settings.imap_port}/INBOX"

    again: list[int] = []
    second = poll(mail_settings, session_factory, again)
    assert second.fetched == 0 and again == [] and len(email_tickets(session_factory)) == 3


@pytest.mark.parametrize("server_moves", [True, False], ids=["UID MOVE", "COPY+EXPUNGE"])
def test_committed_mail_is_moved_to_the_processed_folder(mail_settings, session_factory, server_moves):
    from crewdesk.intake.email.poller import poll_once

    settings = mail_settings.model_copy(update={"imap_processed_folder": "Support/Done"})
    append(settings, *(mail(f"Move me {n}")[0] for n in range(2)))

    with ImapMailbox.from_settings(settings) as mailbox:
        if not server_moves:
            mailbox.capabilities -= {"MOVE"}  # as on a server without RFC 6851
        report = poll_once(session_factory=session_factory, settings=settings, mailbox=mailbox, enqueue=into(session_factory))

    assert report.outcomes == {"created": 2} and report.acknowledged == [1, 2]
    assert flags(settings) == {} and len(flags(settings, "Support/Done")) == 2
    assert poll(settings, session_factory).fetched == 0


def test_new_mail_is_picked_up_old_mail_is_not_and_a_uidvalidity_change_duplicates_nothing(mail_settings, session_factory):
    settings = mail_settings.model_copy(update={"imap_folder": "Support"})
    with Dovecot.client_for(settings) as client:
        client.create("Support")
    first = [mail(f"First {n}")[0] for n in range(2)]
    append(settings, *first)
    assert poll(settings, session_factory).outcomes == {"created": 2}

    late = mail("Arrived later")[0]
    append(settings, late)
    queued: list[int] = []
    report = poll(settings, session_factory, queued)
    assert report.fetched == 1 and report.outcomes == {"created": 1} and len(queued) == 1
    assert len(email_tickets(session_factory)) == 3

    with transaction(session_factory) as db:  # the crew answered them meanwhile
        db.execute(update(Ticket).values(status="resolved"))
    # The folder is recreated (a restore, a migration): the server hands out a new UIDVALIDITY and UIDs from 1 again.
    with Dovecot.client_for(settings) as client:
        old_validity = client.uidvalidity("Support")
        client.delete("Support")
        client.create("Support")
        assert client.uidvalidity("Support") != old_validity
    brand_new = mail("Brand new after the restore")[0]
    append(settings, *first, late, brand_new)

    queued = []
    report = poll(settings, session_factory, queued)

    assert report.reset and report.fetched == 4
    assert report.outcomes == {"duplicate": 3, "created": 1}
    made = email_tickets(session_factory)
    assert len(made) == 4 and queued == [made[-1].id]  # only the new mail goes to the crew
    assert all("\\Seen" in f for f in flags(settings).values())


def test_a_reply_by_mail_joins_its_ticket(mail_settings, session_factory):
    raw, first_id = mail("Printer offline", "The printer shows offline since the update.")
    append(mail_settings, raw)
    poll(mail_settings, session_factory)
    reply, _ = mail("Re: Printer offline", "Still offline after a restart.", In_Reply_To=f"<{first_id}>", References=f"<{first_id}>")
    append(mail_settings, reply)

    report = poll(mail_settings, session_factory)

    assert report.outcomes == {"follow_up": 1}
    (ticket,) = email_tickets(session_factory)
    with session_factory() as db:
        assert db.scalar(select(func.count()).select_from(Message).where(Message.ticket_id == ticket.id, Message.direction == "inbound")) == 2


def test_a_mail_that_breaks_ingest_is_recorded_and_the_poller_goes_on(mail_settings, session_factory):
    from crewdesk.intake.email.service import ingest_email

    bad, bad_id = mail("Breaks the parser")
    append(mail_settings, bad, mail("Fine one")[0])

    def flaky(**kwargs):
        if b"Breaks the parser" in kwargs["raw"]:
            raise ValueError("a bug in a parser")
        return ingest_email(**kwargs)

    with ImapMailbox.from_settings(mail_settings) as mailbox:
        from crewdesk.intake.email.poller import poll_once

        report = poll_once(session_factory=session_factory, settings=mail_settings, mailbox=mailbox, enqueue=into(session_factory), ingest=flaky)

    assert report.outcomes == {"failed": 1, "created": 1}
    with session_factory() as db:
        event = db.execute(select(InboundEvent).where(InboundEvent.external_id == bad_id)).scalar_one()
    assert event.status == "rejected" and "ValueError: a bug in a parser" in event.reason
    assert all("\\Seen" in f for f in flags(mail_settings).values())
    assert poll(mail_settings, session_factory).fetched == 0  # recorded, not retried forever


def test_a_second_poller_of_the_same_mailbox_waits_its_turn(mail_settings, session_factory):
    """Beat can fire while a slow poll runs (or two workers run beat): the second poll of a mailbox does nothing."""
    import threading

    from crewdesk.intake.email.poller import poll_once
    from crewdesk.intake.email.service import ingest_email

    append(mail_settings, mail("Slow one")[0])
    inside, release = threading.Event(), threading.Event()
    first: dict = {}

    def slow(**kwargs):
        inside.set()
        release.wait(30)
        return ingest_email(**kwargs)

    def run_first() -> None:
        with ImapMailbox.from_settings(mail_settings) as mailbox:
            first["report"] = poll_once(session_factory=session_factory, settings=mail_settings, mailbox=mailbox, enqueue=into(session_factory), ingest=slow)

    thread = threading.Thread(target=run_first)
    thread.start()
    try:
        assert inside.wait(30)
        second = poll(mail_settings, session_factory)
    finally:
        release.set()
        thread.join(30)
    assert second.busy and second.fetched == 0
    assert first["report"].outcomes == {"created": 1} and len(email_tickets(session_factory)) == 1


def test_imap_errors_are_typed(mail_settings, dovecot):
    with pytest.raises(TransientError):
        ImapMailbox(host="127.0.0.1", port=_closed_port(), user="x", password="y", tls="none", timeout=5).connect()
    with ImapMailbox.from_settings(mail_settings.model_copy(update={"imap_folder": "Nowhere"})) as mailbox, pytest.raises(MailboxError):
        mailbox.select()
    # a user of its own: dovecot delays that user's next login after a failure
    with pytest.raises(MailboxError):
        ImapMailbox.from_settings(mail_settings.model_copy(update={"imap_user": dovecot.new_user(), "imap_password": SecretStr("wrong")})).connect()


def _closed_port() -> int:
    from tests.mailservers import free_port

    return free_port()


def test_every_fixture_goes_through_the_poller_without_stopping_it(mail_settings, session_factory):
    """tests/fixtures/email through a real IMAP server: each mail becomes a ticket, a follow-up, a duplicate, or an
    ignored/rejected record with its reason; none makes the poll fail, and every one is marked read."""
    import imaplib

    from tests.unit.test_email_parse import fixture_messages

    appended = 0
    with Dovecot.client_for(mail_settings) as client:
        for ref, raw in fixture_messages():
            try:
                client.append(raw)
                appended += 1
            except (AssertionError, imaplib.IMAP4.error):  # what IMAP itself cannot carry: empty or NUL-bearing data
                assert not raw.strip() or b"\0" in raw, ref
    assert appended > 250

    report = poll(mail_settings, session_factory)

    assert report.fetched == appended and sum(report.outcomes.values()) == appended and "failed" not in report.outcomes
    assert report.outcomes["created"] > 100 and report.outcomes["ignored"] and report.outcomes["rejected"]
    marked = flags(mail_settings)
    assert len(marked) == appended and all("\\Seen" in f for f in marked.values())
    with session_factory() as db:
        unexplained = db.scalar(
            select(func.count()).select_from(InboundEvent).where(InboundEvent.status.in_(["ignored", "rejected"]), InboundEvent.reason.is_(None))
        )
    assert unexplained == 0


# --- crash safety: SIGKILL the poller --------------------------------------------------------------------------


def _child_env(settings, queue_file: Path, kill_at: str, nth: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CREWDESK_DATABASE_URL=settings.database_url,
        CREWDESK_IMAP_HOST=settings.imap_host,
        CREWDESK_IMAP_PORT=str(settings.imap_port),
        CREWDESK_IMAP_TLS="none",
        CREWDESK_IMAP_USER=settings.imap_user,
        CREWDESK_IMAP_PASSWORD=PASSWORD,
        CREWDESK_SUPPORT_ADDRESS=SUPPORT,
        CREWDESK_LOG_LEVEL="ERROR",
        KILL_AT=kill_at,
        KILL_NTH=str(nth),
        QUEUE_FILE=str(queue_file),
    )
    return env


@pytest.mark.parametrize("kill_at", ["after_fetch", "after_commit", "before_mark"])
def test_sigkill_of_the_poller_loses_nothing_and_duplicates_nothing(mail_settings, session_factory, tmp_path, kill_at):
    """The acceptance point: the poller dies (SIGKILL) right after fetching the 3rd of 5 mails, before its ticket is
    committed; or after the commit, before queueing and the cursor; or after the cursor, before marking it \\Seen.
    A normal poll afterwards leaves exactly one ticket per mail, every ticket queued, every mail marked."""
    ids = []
    for n in range(5):
        raw, message_id = mail(f"Crash test {n}", f"Mail number {n}: my package {n} is late.")
        ids.append(message_id)
        append(mail_settings, raw)
    queue_file = tmp_path / "queued.txt"

    child = subprocess.run(
        [sys.executable, "-m", "tests.integration.test_email_imap"],
        env=_child_env(mail_settings, queue_file, kill_at, 3),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr

    queued = [int(line) for line in queue_file.read_text().split()] if queue_file.exists() else []
    with session_factory() as db:
        committed_before = db.scalar(select(func.count()).select_from(Ticket).where(Ticket.source == "email"))
    assert committed_before == {"after_fetch": 2, "after_commit": 3, "before_mark": 3}[kill_at]

    report = poll(mail_settings, session_factory, queued)

    made = email_tickets(session_factory)
    assert sorted(t.external_id for t in made) == sorted(ids)  # one ticket per mail: none lost, none doubled
    assert set(queued) == {t.id for t in made}  # every ticket reached the queue (one may be offered twice: harmless)
    assert {t.status for t in made} == {"queued"}
    assert all("\\Seen" in f for f in flags(mail_settings).values()) and len(flags(mail_settings)) == 5
    expected_fetch = {"after_fetch": 3, "after_commit": 3, "before_mark": 2}[kill_at]
    assert report.fetched == expected_fetch
    assert poll(mail_settings, session_factory).fetched == 0


def _killing_child() -> None:
    """Runs in the subprocess of the kill test: one poll that SIGKILLs itself at KILL_AT on the KILL_NTH message."""
    from crewdesk.db import make_engine, make_session_factory
    from crewdesk.intake.email import poller
    from crewdesk.intake.email.service import ingest_email
    from crewdesk.settings import load_settings

    settings = load_settings()
    kill_at, nth, queue_file = os.environ["KILL_AT"], int(os.environ["KILL_NTH"]), Path(os.environ["QUEUE_FILE"])
    seen = {"ingest": 0, "mark": 0}

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def ingest(**kwargs):
        seen["ingest"] += 1
        if kill_at == "after_fetch" and seen["ingest"] == nth:
            die()  # fetched, nothing committed
        result = ingest_email(**kwargs)
        if kill_at == "after_commit" and seen["ingest"] == nth:
            die()  # ticket committed; not queued, cursor not advanced, not marked
        return result

    class Mailbox(ImapMailbox):
        def mark_seen(self, uids):
            seen["mark"] += 1
            if kill_at == "before_mark" and seen["mark"] == nth:
                die()  # committed, queued and the cursor advanced; the server was never told
            super().mark_seen(uids)

    def send(ticket_ids) -> None:  # the broker: must survive the kill, so a file written through
        with queue_file.open("a") as handle:
            handle.writelines(f"{ticket_id}\n" for ticket_id in ticket_ids)

    factory = make_session_factory(make_engine(settings.database_url))
    with Mailbox.from_settings(settings) as mailbox:
        poller.poll_once(session_factory=factory, settings=settings, mailbox=mailbox, enqueue=Enqueuer(session_factory=factory, send=send), ingest=ingest)


# --- replies by SMTP ------------------------------------------------------------------------------------------------


def _channel(smtp: SmtpServer) -> dict[str, SmtpReplyChannel]:
    return {"email": SmtpReplyChannel(host=smtp.host, port=smtp.port, tls="none", support_address=SUPPORT, timeout=5)}


def test_crew_reply_goes_out_once_threaded_and_our_reply_coming_back_is_ignored(mail_settings, session_factory, smtp):
    from crews.pipeline import Pipeline
    from tests.helpers import RecordingFactory

    raw, first_id = mail(
        "Charged twice", "I was charged twice for invoice 2291 this month. Please refund the duplicate payment.", sender="Ana Lima <ana@example.com>"
    )
    append(mail_settings, raw)
    queued: list[int] = []
    poll(mail_settings, session_factory, queued)
    (ticket_id,) = queued
    outcome = Pipeline(settings=mail_settings, session_factory=session_factory, llm_factory=RecordingFactory(mail_settings)).process(ticket_id)
    assert outcome.status == "resolved"

    report = deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=_channel(smtp))

    assert len(report.sent) == 1 and len(smtp.received) == 1
    sent = smtp.received[0]
    reply = sent.message
    assert sent.rcpt_tos == ["ana@example.com"] and reply["To"] == "ana@example.com" and reply["From"] == SUPPORT
    assert reply["Subject"] == f"Re: Charged twice [crewdesk #{ticket_id}]"
    assert reply["In-Reply-To"] == f"<{first_id}>" and reply["References"] == f"<{first_id}>"
    assert reply["Auto-Submitted"] == "auto-replied" and reply["X-Crewdesk-Ticket"] == str(ticket_id)
    with session_factory() as db:
        out = db.get(Message, report.sent[0])
    assert out.delivered_at is not None and reply["Message-ID"] == f"<{out.external_id}>"
    assert "Thanks for reaching out" in reply.get_content()

    # Delivering again sends nothing more; the crew's internal note was never e-mailed.
    again = deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=_channel(smtp))
    assert again.sent == again.skipped == [] and len(smtp.received) == 1
    assert len(report.skipped) == 1 and _internal_notes(session_factory, ticket_id) == 1
    assert "Handled by" not in reply.get_content()

    # Our reply lands back in the support inbox (a CC, a forward rule, a customer's auto-forward): recorded, not answered.
    append(mail_settings, sent.raw)
    queued = []
    looped = poll(mail_settings, session_factory, queued)
    assert looped.outcomes == {"ignored": 1} and queued == []
    assert len(email_tickets(session_factory)) == 1
    with session_factory() as db:
        ignored = db.execute(select(InboundEvent).where(InboundEvent.external_id == out.external_id)).scalar_one()
        assert db.get(Ticket, ticket_id).status == "resolved"
    assert ignored.status == "ignored" and "loop protection" in ignored.reason


def _internal_notes(session_factory, ticket_id: int) -> int:
    with session_factory() as db:
        return db.scalar(select(func.count()).select_from(Message).where(Message.ticket_id == ticket_id, Message.direction == "internal"))


def _email_ticket(session_factory, *, customer: str = "bo@example.com", outbound: str = "Here is your answer.", internal: str | None = None) -> int:
    with transaction(session_factory) as db:
        mid = f"{uuid.uuid4().hex}@example.com"
        ticket, _ = tickets.submit(
            db=db, ticket_in=TicketIn(source="email", external_id=mid, customer=customer, subject="Help", body="Help me"), message_external_id=mid
        )
        if internal:
            tickets.add_message(db=db, ticket=ticket, direction="internal", body=internal)
        tickets.add_message(db=db, ticket=ticket, direction="outbound", body=outbound)
        return ticket.id


def test_an_internal_note_is_not_mailed(session_factory, smtp):
    ticket_id = _email_ticket(session_factory, internal="Customer is on the legacy plan; check with finance.")
    report = deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=_channel(smtp))
    assert len(report.skipped) == 1 and len(report.sent) == 1 and len(smtp.received) == 1
    assert "legacy plan" not in smtp.received[0].raw.decode()
    with session_factory() as db:
        note = db.execute(select(Message).where(Message.ticket_id == ticket_id, Message.direction == "internal")).scalar_one()
    assert note.delivered_at is not None and note.external_id is None  # done with, and nothing was sent


def test_a_refused_recipient_marks_the_message_refused(session_factory, smtp):
    smtp.refuse.add("gone@example.com")
    ticket_id = _email_ticket(session_factory, customer="gone@example.com")
    report = deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=_channel(smtp))
    assert report.refused and not report.sent and smtp.received == []
    with session_factory() as db:
        message = db.get(Message, report.refused[0])
    assert "550" in message.delivery_error and message.delivered_at is None
    assert deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=_channel(smtp)).refused == []  # given up for good


def test_a_down_smtp_server_is_transient_and_a_later_retry_succeeds(session_factory, smtp):
    ticket_id = _email_ticket(session_factory)
    smtp.stop()
    with pytest.raises(TransientError):
        deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=_channel(smtp))
    with session_factory() as db:
        message = db.execute(select(Message).where(Message.ticket_id == ticket_id, Message.direction == "outbound")).scalar_one()
    assert message.delivered_at is None and message.delivery_error is None and message.delivery_attempts == 1

    smtp.start()
    report = deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=_channel(smtp))
    assert report.sent == [message.id] and len(smtp.received) == 1


# --- the faces: `crewdesk email poll` and a worker polling on its own (Celery beat) ------------------------------


def _mail_env(worker_env: dict[str, str], settings, **extra: str) -> dict[str, str]:
    return {
        **worker_env,
        "CREWDESK_IMAP_HOST": settings.imap_host,
        "CREWDESK_IMAP_PORT": str(settings.imap_port),
        "CREWDESK_IMAP_TLS": "none",
        "CREWDESK_IMAP_USER": settings.imap_user,
        "CREWDESK_IMAP_PASSWORD": PASSWORD,
        "CREWDESK_SUPPORT_ADDRESS": SUPPORT,
        **extra,
    }


def test_cli_email_poll_once_queues_new_tickets(mail_settings, session_factory, worker_env, redis_url):
    import redis

    from tests.helpers import CREWDESK

    append(mail_settings, *(mail(f"CLI {n}")[0] for n in range(2)))
    env = _mail_env(worker_env, mail_settings)

    first = subprocess.run([CREWDESK, "email", "poll", "--once"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    second = subprocess.run([CREWDESK, "email", "poll", "--once"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert first.returncode == 0, first.stdout + first.stderr
    assert "fetched 2 (created 2); queued 2" in first.stdout and "fetched 0 (nothing new); queued 0" in second.stdout
    assert redis.Redis.from_url(redis_url).llen("tickets") == 2  # on the broker for the workers
    assert {t.status for t in email_tickets(session_factory)} == {"queued"}
    down = subprocess.run(
        [CREWDESK, "email", "poll", "--once"], env={**env, "CREWDESK_IMAP_PORT": str(_closed_port())}, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert down.returncode == 2 and down.stderr.startswith("error: IMAP 127.0.0.1:") and "Traceback" not in down.stderr


def test_idle_wakes_on_new_mail_and_leaves_the_session_usable(mail_settings):
    import threading

    with ImapMailbox.from_settings(mail_settings) as mailbox:
        mailbox.select()
        assert "IDLE" in mailbox.capabilities
        assert mailbox.wait_for_mail(1.0) is False and mailbox.imap is None  # nothing came: the timeout closes the session
    with ImapMailbox.from_settings(mail_settings) as mailbox:
        mailbox.select()
        later = threading.Timer(1.0, lambda: append(mail_settings, mail("While idling")[0]))
        later.start()
        woke = mailbox.wait_for_mail(120.0)  # dovecot announces the new mail long before this
        later.join()
        assert woke is True
        assert mailbox.uids_after(0) == [1]  # IDLE ended cleanly: the next command in sequence works


def test_waiting_between_polls_counts_mail_that_came_since_the_last_poll(mail_settings, session_factory):
    from crewdesk.intake.email.poller import wait_for_mail

    poll(mail_settings, session_factory)  # the cursor, at an empty mailbox
    append(mail_settings, mail("Arrived between polls")[0])
    assert wait_for_mail(session_factory=session_factory, settings=mail_settings, timeout=120.0) is True  # at once, no IDLE needed
    poll(mail_settings, session_factory)
    assert wait_for_mail(session_factory=session_factory, settings=mail_settings, timeout=0.5) is False


def test_the_long_running_poller_reads_new_mail_as_it_arrives(mail_settings, session_factory, worker_env):
    from tests.helpers import CREWDESK, wait_for

    env = _mail_env(worker_env, mail_settings, CREWDESK_IMAP_POLL_SECONDS="900")  # without IDLE the next poll is 15 min away
    poller = subprocess.Popen(
        [CREWDESK, "email", "poll"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        assert "fetched 0 (nothing new)" in poller.stdout.readline()  # the first poll, then IDLE
        append(mail_settings, mail("Instant", "Hello, my parcel is late.")[0])
        ticket = wait_for(
            session_factory,
            # stored as `received`, sent to the broker, then marked `queued` (crewdesk/intake/enqueue.py)
            lambda db: db.execute(select(Ticket).where(Ticket.subject == "Instant", Ticket.status == "queued")).scalar_one_or_none(),
            timeout=120,
            what="the mail, read and queued as it arrived",
        )
        assert ticket.status == "queued"
    finally:
        os.killpg(poller.pid, signal.SIGTERM)
        poller.wait(30)


def test_worker_polls_the_mailbox_by_itself_and_mails_the_reply(mail_settings, session_factory, start_worker, worker_env, smtp):
    """Mail in, reply out, nothing else running: beat in `crewdesk worker` polls dovecot, the crew answers, SMTP sends."""
    from tests.helpers import terminal, wait_for

    raw, first_id = mail("Export broken", "The CSV export button does nothing since yesterday.", sender="cy@example.com")
    append(mail_settings, raw)
    start_worker(
        **_mail_env(
            worker_env, mail_settings, CREWDESK_IMAP_POLL_SECONDS="1", CREWDESK_SMTP_HOST=smtp.host, CREWDESK_SMTP_PORT=str(smtp.port), CREWDESK_SMTP_TLS="none"
        )
    )

    ticket = wait_for(
        session_factory, lambda db: db.execute(select(Ticket).where(Ticket.source == "email")).scalar_one_or_none(), what="a ticket from the mailbox"
    )
    done = wait_for(session_factory, terminal(ticket.id), what="the crew's answer")
    deadline = time.monotonic() + 30
    while not smtp.received and time.monotonic() < deadline:
        time.sleep(0.2)

    assert done.status == "resolved" and ticket.external_id == first_id
    assert len(smtp.received) == 1 and smtp.received[0].message["In-Reply-To"] == f"<{first_id}>"
    assert all("\\Seen" in f for f in flags(mail_settings).values())


if __name__ == "__main__":
    _killing_child()
