"""Accept parsed rows into the database: new tickets, duplicates, and rejections kept as failed tickets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.db import transaction
from crewdesk.intake.files import DEFAULT_SOURCE, Row
from crewdesk.tickets import bulk
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Ticket, TicketStatus


@dataclass
class AcceptReport:
    to_enqueue: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str, int]] = field(default_factory=list)  # (line, reason, failed ticket id)

    @property
    def accepted(self) -> int:
        return len(self.to_enqueue)


@dataclass
class StoredChunk:
    """What one chunk of rows became: rows are kept so callers can report line numbers."""

    created: list[tuple[Row, int]] = field(default_factory=list)  # (row, new ticket id)
    duplicates: list[tuple[Row, int]] = field(default_factory=list)  # (row, ticket id that already had its key)
    rejected: list[Row] = field(default_factory=list)  # invalid rows; the caller records them its own way


def store_chunk(*, db: Session, rows: Sequence[Row], backlog_id: int | None = None, raws: Sequence[dict] | None = None) -> StoredChunk:
    """Store a chunk's valid rows as tickets in bulk, inside the caller's transaction."""
    result = StoredChunk()
    valid = [(i, row, row.ticket) for i, row in enumerate(rows) if row.ticket is not None]
    result.rejected = [row for row in rows if row.ticket is None]
    stored = bulk.submit_many(
        db=db, tickets_in=[ticket for _, _, ticket in valid], backlog_id=backlog_id, raws=[raws[i] for i, _, _ in valid] if raws is not None else None
    )
    for (_, row, _), (ticket_id, created) in zip(valid, stored, strict=True):
        (result.created if created else result.duplicates).append((row, ticket_id))
    return result


def _rejected_source(row: Row) -> str:
    return DEFAULT_SOURCE if not isinstance(row.raw, dict) else str(row.raw.get("source") or DEFAULT_SOURCE)[:32]


def accept_rows(*, session_factory: sessionmaker[Session], rows: Iterable[Row], chunk: int = 500) -> AcceptReport:
    """Store rows in chunks of one transaction each. A ticket still `received` (enqueue never happened) is re-offered."""
    report = AcceptReport()
    batch: list[Row] = []
    offered: set[int] = set()

    def flush() -> None:
        with transaction(session_factory) as db:
            stored = store_chunk(db=db, rows=batch)
            for row in stored.rejected:
                failed = tickets.record_rejected(
                    db=db, source=_rejected_source(row), external_id=row.external_id[:255], reason=row.error or "rejected", raw=row.raw
                )
                report.rejected.append((row.line, row.error or "rejected", failed.id))
            waiting = set()
            if stored.duplicates:
                ids = [ticket_id for _, ticket_id in stored.duplicates]
                waiting = set(db.execute(select(Ticket.id).where(Ticket.id.in_(ids), Ticket.status == TicketStatus.received)).scalars())
            fresh = {ticket_id for _, ticket_id in stored.created}
            for _, ticket_id in stored.created + stored.duplicates:
                if ticket_id not in offered and (ticket_id in fresh or ticket_id in waiting):
                    offered.add(ticket_id)
                    report.to_enqueue.append(ticket_id)
                else:
                    report.duplicates.append(ticket_id)
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return report
