"""Batch backlog import: stream a CSV, JSONL, Zendesk or Jira export in constant memory, store it in chunks, queue it
under a rate limit, and resume after a crash or Ctrl-C without duplicates or loss."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.db import table_of, transaction, utcnow
from crewdesk.errors import CrewdeskError, InvalidTicket
from crewdesk.inbound.models import BacklogImport, ImportStatus, InboundEvent
from crewdesk.intake.admit import Stored, admit
from crewdesk.intake.backlog_readers import EXCERPT_CHARS, FORMATS, check_file, check_format, detect_format, open_backlog
from crewdesk.intake.enqueue import Enqueuer, Send
from crewdesk.intake.files import Row
from crewdesk.intake.service import store_chunk
from crewdesk.ratelimit import TokenBucket
from crewdesk.tickets.models import Ticket, TicketStatus

__all__ = ["FORMATS", "BacklogBusy", "BacklogInterrupted", "BacklogProgress", "detect_format", "import_backlog", "latest_import", "open_backlog"]

CHANNEL = "backlog"  # inbound_events rows for bad and duplicate rows: external_id "<import id>:<record number>"
RUNNING, FINISHED = ImportStatus.running, ImportStatus.finished

ENQUEUE_BATCH = 100  # tickets sent per broker round and marked queued per transaction: the most a crash can re-send


class BacklogInterrupted(CrewdeskError):
    """Ctrl-C: everything committed is kept; running the same import again resumes after it."""

    def __init__(self, message: str, *, import_id: int, rows_done: int) -> None:
        super().__init__(message)
        self.import_id, self.rows_done = import_id, rows_done


class BacklogBusy(CrewdeskError):
    """Another process is importing the same file right now."""


@dataclass(frozen=True)
class BacklogProgress:
    import_id: int
    rows_done: int
    rows_ok: int
    rows_bad: int
    rows_duplicate: int
    rows_enqueued: int
    resumed_from: int  # rows an earlier run had already stored
    bytes_read: int
    bytes_total: int


# --- the import --------------------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _claim_import(*, session_factory: sessionmaker[Session], path: Path, digest: str, fmt: str, source: str | None) -> BacklogImport:
    with transaction(session_factory) as db:
        found = db.execute(select(BacklogImport).where(BacklogImport.sha256 == digest)).scalar_one_or_none()
        if found is not None:
            return found
        backlog = BacklogImport(
            path=str(path),
            sha256=digest,
            format=fmt,
            source=source,
            status=RUNNING,
            rows_done=0,
            rows_ok=0,
            rows_bad=0,
            rows_duplicate=0,
            rows_enqueued=0,
            started_at=utcnow(),
        )
        try:
            with db.begin_nested():
                db.add(backlog)
                db.flush()
        except IntegrityError:  # the same file started at the same moment elsewhere
            return db.execute(select(BacklogImport).where(BacklogImport.sha256 == digest)).scalar_one()
        return backlog


def _excerpt(raw: dict | str) -> str:
    text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
    return text[:EXCERPT_CHARS].replace("\x00", "\ufffd")


def _events(import_id: int, first_record: int, rows: Sequence[Row], stored) -> list[dict]:
    """inbound_events rows for what did not become a new ticket: the record that a report lists, by line."""
    number = {id(row): first_record + i for i, row in enumerate(rows, start=1)}
    now = utcnow()
    events = []
    for row in stored.rejected:
        events.append(
            dict(
                channel=CHANNEL,
                external_id=f"{import_id}:{number[id(row)]}",
                kind="bad_row",
                status="rejected",
                reason=(row.error or "rejected").replace("\x00", "\ufffd"),
                detail={
                    "import_id": import_id,
                    "line": row.line,
                    "record": number[id(row)],
                    "external_id": row.external_id[:255].replace("\x00", "\ufffd"),
                    "excerpt": _excerpt(row.raw),
                },
                ticket_id=None,
                seen_count=1,
                created_at=now,
                last_seen_at=now,
            )
        )
    for row, ticket_id in stored.duplicates:
        events.append(
            dict(
                channel=CHANNEL,
                external_id=f"{import_id}:{number[id(row)]}",
                kind="duplicate",
                status="ignored",
                reason=f"line {row.line}: duplicate of ticket {ticket_id} ({row.ticket.source}:{row.external_id})",
                ticket_id=ticket_id,
                detail={"import_id": import_id, "line": row.line, "record": number[id(row)], "external_id": row.external_id},
                seen_count=1,
                created_at=now,
                last_seen_at=now,
            )
        )
    return sorted(events, key=lambda event: event["detail"]["record"])  # id order is file order: the report pages by it


def _batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    while batch := list(islice(rows, size)):
        yield batch


def import_backlog(
    *,
    session_factory: sessionmaker[Session],
    path: str | Path,
    fmt: str = "auto",
    send: Send,
    chunk: int = 500,
    rate_per_second: float = 200.0,
    source: str | None = None,
    progress: Callable[[BacklogProgress], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> BacklogImport:
    """Import a backlog file, or resume it: the import is keyed by the file's sha256, so running the same file again
    goes on after the last committed chunk, and a finished import is returned as it is.

    Per chunk, one transaction stores the tickets, records bad and duplicate rows (inbound_events) and advances the
    counters; then its new tickets are admitted (crewdesk/intake/admit.py: sent with `send`, the broker, and marked
    queued) under the rate limit. A crash between
    that commit and the marking leaves tickets `received`, and the next run sends those first."""
    file = check_file(path)
    digest = file_sha256(file)
    wanted = None if fmt in (None, "", "auto") else check_format(fmt)
    with session_factory() as db:
        known = db.execute(select(BacklogImport).where(BacklogImport.sha256 == digest)).scalar_one_or_none()
    if known is not None and known.status == FINISHED:
        return known
    if known is not None and wanted is not None and wanted != known.format:
        raise InvalidTicket(f"{file}: import {known.id} of this file was started as {known.format}; resume it with --format {known.format} or auto")
    if known is not None and source is not None and source != known.source:
        started = f"--source {known.source}" if known.source is not None else "no --source"
        raise InvalidTicket(f"{file}: import {known.id} of this file was started with {started}; resume it with the same, or without --source")
    fmt = known.format if known is not None else wanted or detect_format(file)
    source = known.source if known is not None else source
    bucket = TokenBucket(rate_per_second, clock=clock, sleep=sleep)
    step = max(1, min(ENQUEUE_BATCH, int(bucket.capacity))) if rate_per_second > 0 else ENQUEUE_BATCH
    with open_backlog(file, fmt=fmt, source=source) as reader:  # an unreadable file or header fails here, before any import row
        backlog = _claim_import(session_factory=session_factory, path=file, digest=digest, fmt=fmt, source=source)
        if backlog.status == FINISHED:  # finished by another process meanwhile
            return backlog
        counts = {k: getattr(backlog, k) for k in ("rows_done", "rows_ok", "rows_bad", "rows_duplicate", "rows_enqueued")}
        resumed_from = backlog.rows_done

        def report() -> None:
            if progress is not None:
                progress(BacklogProgress(import_id=backlog.id, resumed_from=resumed_from, bytes_read=reader.position(), bytes_total=reader.size, **counts))

        enqueuer = Enqueuer(session_factory=session_factory, send=send)

        def counted(db: Session, part: list[int]) -> None:  # in the transaction that marks them queued
            db.execute(update(BacklogImport).where(BacklogImport.id == backlog.id).values(rows_enqueued=BacklogImport.rows_enqueued + len(part)))

        def enqueue(ticket_ids: list[int]) -> None:
            for start in range(0, len(ticket_ids), step):
                part = ticket_ids[start : start + step]
                bucket.take(len(part))
                admit([Stored(ticket_id, needs_run=True) for ticket_id in part], enqueuer=enqueuer, also=counted)
                counts["rows_enqueued"] += len(part)
                report()

        def store(batch: list[Row]) -> list[int]:
            with transaction(session_factory) as db:
                current = db.execute(select(BacklogImport).where(BacklogImport.id == backlog.id).with_for_update()).scalar_one()
                if current.rows_done != counts["rows_done"]:
                    raise BacklogBusy(
                        f"{file}: another process is importing this file (import {backlog.id} moved from row {counts['rows_done']} to {current.rows_done})"
                    )
                raws = [dict(row.ticket.model_dump(mode="json"), backlog_line=row.line) if row.ticket is not None else {} for row in batch]
                stored = store_chunk(db=db, rows=batch, backlog_id=backlog.id, raws=raws)
                events = _events(backlog.id, current.rows_done, batch, stored)
                if events:
                    db.connection().execute(insert(table_of(InboundEvent)), events)
                current.rows_done += len(batch)
                current.rows_ok += len(stored.created)
                current.rows_bad += len(stored.rejected)
                current.rows_duplicate += len(stored.duplicates)
                counts.update(rows_done=current.rows_done, rows_ok=current.rows_ok, rows_bad=current.rows_bad, rows_duplicate=current.rows_duplicate)
            return [ticket_id for _, ticket_id in stored.created]

        try:
            with session_factory() as db:  # committed by an earlier run, never sent: it stopped in between
                waiting = list(
                    db.execute(select(Ticket.id).where(Ticket.backlog_id == backlog.id, Ticket.status == TicketStatus.received).order_by(Ticket.id)).scalars()
                )
            report()
            enqueue(waiting)
            for batch in _batches(reader.rows(skip=backlog.rows_done), max(1, chunk)):
                new = store(batch)
                report()
                enqueue(new)
            with transaction(session_factory) as db:
                current = db.execute(select(BacklogImport).where(BacklogImport.id == backlog.id).with_for_update()).scalar_one()
                # Every ticket this import created that has left `received` went to the queue, whoever moved it on since.
                current.rows_enqueued = db.execute(
                    select(func.count()).select_from(Ticket).where(Ticket.backlog_id == backlog.id, Ticket.status != TicketStatus.received)
                ).scalar_one()
                current.status, current.finished_at = FINISHED, utcnow()
            return current
        except KeyboardInterrupt:
            with session_factory() as db:
                done = db.get_one(BacklogImport, backlog.id)  # this import created the row
                raise BacklogInterrupted(
                    f"{file}: interrupted; import {backlog.id} has stored {done.rows_done:,} rows and queued {done.rows_enqueued:,}; "
                    "run the same command again to resume",
                    import_id=backlog.id,
                    rows_done=done.rows_done,
                ) from None


def latest_import(*, db: Session) -> BacklogImport | None:
    return db.execute(select(BacklogImport).order_by(BacklogImport.started_at.desc(), BacklogImport.id.desc()).limit(1)).scalar_one_or_none()
