"""Poll an IMAP folder into tickets: every message is fetched until its ticket is committed, and is marked \\Seen
or moved only after that, so a crash at any point loses nothing and (with Message-ID de-duplication) doubles nothing."""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser

from sqlalchemy import select, text, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.connectors.imap import ImapMailbox
from crewdesk.db import transaction, utcnow
from crewdesk.errors import TransientError
from crewdesk.intake import events
from crewdesk.intake.admit import Stored, admit
from crewdesk.intake.email.parse import synthetic_message_id
from crewdesk.intake.email.service import IngestResult, ingest_email
from crewdesk.intake.enqueue import Enqueuer
from crewdesk.intake.models import MailboxCursor
from crewdesk.logging import get_logger
from crewdesk.settings import MailSettings
from crewdesk.tickets.models import Ticket, TicketStatus

log = get_logger(__name__)
_LOCK_NAMESPACE = 0x6D61_696C  # "mail": keeps the poller's advisory locks apart from the pipeline's per-ticket ones
_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
# A ticket in one of these states may never have reached the queue (the poller died between commit and enqueue).
_MAYBE_UNQUEUED = (TicketStatus.received, TicketStatus.queued)

Ingest = Callable[..., IngestResult]


@dataclass
class PollReport:
    mailbox: str
    uidvalidity: int | None = None
    reset: bool = False  # UIDVALIDITY changed: the folder was read again from its first message
    busy: bool = False  # another poller holds this mailbox; nothing was done
    fetched: int = 0
    outcomes: Counter = field(default_factory=Counter)  # IngestResult.status -> count, plus "failed" for ingest errors
    enqueued: list[int] = field(default_factory=list)  # ticket ids handed to the queue
    acknowledged: list[int] = field(default_factory=list)  # UIDs marked \Seen or moved, leftovers of a crash included

    def summary(self) -> str:
        if self.busy:
            return f"{self.mailbox}: another poller is reading this mailbox"
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())) or "nothing new"
        return f"{self.mailbox}: fetched {self.fetched} ({counts}); queued {len(self.enqueued)}" + (
            "; UIDVALIDITY changed, re-read the folder" if self.reset else ""
        )


def poll_mailbox(*, session_factory: sessionmaker[Session], settings: MailSettings, enqueue: Enqueuer) -> PollReport:
    """One poll of the configured mailbox (settings.imap_*)."""
    with ImapMailbox.from_settings(settings) as mailbox:
        return poll_once(session_factory=session_factory, settings=settings, mailbox=mailbox, enqueue=enqueue)


def wait_for_mail(*, session_factory: sessionmaker[Session], settings: MailSettings, timeout: float) -> bool:
    """Between polls: True as soon as there is mail to read, False after `timeout` seconds. Mail that arrived since the
    last poll (above the cursor) counts at once; then IMAP IDLE waits for the server's word (or, with imap_idle off or
    a server without IDLE, a plain sleep). Raises TransientError when the server is away."""
    if not settings.imap_idle:
        time.sleep(timeout)
        return False
    with ImapMailbox.from_settings(settings) as mailbox:
        validity = mailbox.select()
        with session_factory() as db:
            cursor = db.get(MailboxCursor, mailbox.key)
        if cursor is None or cursor.uidvalidity != validity or mailbox.uids_after(cursor.last_uid):
            return True
        return mailbox.wait_for_mail(timeout)


def poll_once(
    *, session_factory: sessionmaker[Session], settings: MailSettings, mailbox: ImapMailbox, enqueue: Enqueuer, ingest: Ingest = ingest_email
) -> PollReport:
    """Read every message above the cursor, in UID order: fetch, ingest (commits the ticket), queue it, advance the
    cursor (commits), then acknowledge it on the server. Raises TransientError when the server or database is away;
    the next poll resumes from the cursor."""
    try:
        return _poll(session_factory, settings, mailbox, enqueue, ingest)
    except (OperationalError, InterfaceError) as exc:  # the database went away: the next poll resumes from the cursor
        raise TransientError(f"database unavailable while polling {mailbox.key}: {str(exc.orig or exc).strip().splitlines()[0]}") from exc


def _poll(session_factory: sessionmaker[Session], settings: MailSettings, mailbox: ImapMailbox, enqueue: Enqueuer, ingest: Ingest) -> PollReport:
    report = PollReport(mailbox=mailbox.key)
    with _exclusive(session_factory, mailbox.key) as mine:
        if not mine:
            report.busy = True
            return report
        report.uidvalidity = mailbox.select()
        last_uid = _open_cursor(session_factory, mailbox.key, report.uidvalidity, report)
        processed = settings.imap_processed_folder
        if processed:
            mailbox.ensure_folder(processed)
        # Committed before a crash but never acknowledged: finish the job (marking and moving are idempotent).
        _acknowledge(mailbox, mailbox.uids_upto(last_uid, unseen_only=not processed), processed, report)
        for uid in mailbox.uids_after(last_uid):
            raw = mailbox.fetch(uid)
            if raw is not None:  # None: another client expunged it since the search; nothing to read
                report.fetched += 1
                ticket_id = _ingest(session_factory, settings, ingest, raw, f"imap:{mailbox.key};uidvalidity={report.uidvalidity};uid={uid}", uid, report)
                if ticket_id is not None:  # queued before the cursor moves past it: a crash here re-reads the mail
                    report.enqueued += admit([Stored(ticket_id, needs_run=True)], enqueuer=enqueue).queued
            _advance(session_factory, mailbox.key, report.uidvalidity, uid)
            if raw is not None:
                _acknowledge(mailbox, [uid], processed, report)
    if report.fetched or report.reset:
        log.info("mailbox.polled", mailbox=mailbox.key, fetched=report.fetched, outcomes=dict(report.outcomes), enqueued=len(report.enqueued))
    return report


def _ingest(
    session_factory: sessionmaker[Session], settings: MailSettings, ingest: Ingest, raw: bytes, source_ref: str, uid: int, report: PollReport
) -> int | None:
    """Ingest one message; returns the ticket to queue, if any. An unexpected error is recorded
    as a rejected inbound event, so one bad mail cannot stop the mailbox; a database or network outage is raised."""
    try:
        result = ingest(session_factory=session_factory, raw=raw, settings=settings, source_ref=source_ref)
    except TransientError:
        raise
    except (OperationalError, InterfaceError) as exc:  # the database went away: retry this mail on the next poll
        raise TransientError(f"database unavailable while ingesting UID {uid}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - recorded with its reason; the poller goes on
        _record_failure(session_factory, raw, source_ref, exc)
        report.outcomes["failed"] += 1
        return None
    report.outcomes[result.status] += 1
    if result.ticket_id is None or result.status in ("ignored", "rejected"):
        return None
    with session_factory() as db:
        ticket = db.get(Ticket, result.ticket_id)
        if ticket is None:
            return None
        # A duplicate is a re-fetch: after a crash its ticket may be committed but not queued. Queueing it again is
        # harmless (the pipeline runs a ticket once and drops a concurrent duplicate), losing it is not.
        wanted = result.needs_run or result.status == "created" or (result.status == "duplicate" and ticket.status in _MAYBE_UNQUEUED)
    return result.ticket_id if wanted else None


def _record_failure(session_factory: sessionmaker[Session], raw: bytes, source_ref: str, exc: Exception) -> None:
    reason = f"ingest failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}".rstrip(": ")
    log.error("mailbox.ingest_failed", source_ref=source_ref, error=reason, exc_info=exc)
    with transaction(session_factory) as db:
        event, _ = events.claim(db=db, channel="email", external_id=_message_id(raw), kind="message", detail={"source_ref": source_ref})
        if event.status != events.ACCEPTED:  # never downgrade a mail that did become a ticket
            events.settle(event, status=events.REJECTED, reason=reason)


def _message_id(raw: bytes) -> str:
    """The id ingest would record the mail under (without <>), read with the most lenient parser there is."""
    try:
        header = str(BytesHeaderParser().parsebytes(raw).get("Message-ID") or "")
    except Exception:  # noqa: BLE001 - the mail just broke the real parser; fall back to its bytes
        header = ""
    found = _MESSAGE_ID.search(header)
    return found.group(1) if found else synthetic_message_id(raw)


def _acknowledge(mailbox: ImapMailbox, uids: list[int], processed: str, report: PollReport) -> None:
    if not uids:
        return
    if processed:
        mailbox.move(uids, processed)
    else:
        mailbox.mark_seen(uids)
    report.acknowledged.extend(uids)


def _open_cursor(session_factory: sessionmaker[Session], key: str, validity: int, report: PollReport) -> int:
    """The cursor's last UID, created at 0 for a new mailbox and reset to 0 when the server says UIDVALIDITY changed
    (the old UIDs mean nothing now; de-duplication by Message-ID keeps re-read mail from becoming new tickets)."""
    with transaction(session_factory) as db:
        cursor = db.execute(select(MailboxCursor).where(MailboxCursor.mailbox == key).with_for_update()).scalar_one_or_none()
        if cursor is None:
            db.add(MailboxCursor(mailbox=key, uidvalidity=validity, last_uid=0))
            return 0
        if cursor.uidvalidity != validity:
            log.warning("mailbox.uidvalidity_changed", mailbox=key, old=cursor.uidvalidity, new=validity, last_uid=cursor.last_uid)
            report.reset = True
            cursor.uidvalidity, cursor.last_uid = validity, 0
        return cursor.last_uid


def _advance(session_factory: sessionmaker[Session], key: str, uidvalidity: int, uid: int) -> None:
    with transaction(session_factory) as db:
        db.execute(
            update(MailboxCursor)
            .where(MailboxCursor.mailbox == key, MailboxCursor.uidvalidity == uidvalidity, MailboxCursor.last_uid < uid)
            .values(last_uid=uid, updated_at=utcnow())
        )


@contextmanager
def _exclusive(session_factory: sessionmaker[Session], key: str) -> Iterator[bool]:
    """One poller per mailbox at a time (beat may fire while a slow poll runs, or two workers run beat). The
    PostgreSQL advisory lock dies with a killed poller's connection; SQLite serves one process and needs none."""
    engine = session_factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        yield True
        return
    lock = _LOCK_NAMESPACE << 32 | int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")
    with engine.connect() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock}).scalar():
            conn.commit()
            yield False
            return
        conn.commit()  # no transaction left open on this connection while the poll runs
        try:
            yield True
        finally:
            with suppress(OperationalError, InterfaceError):  # a lost connection has released the lock already
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock})
                conn.commit()
