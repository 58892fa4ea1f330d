"""Accept parsed rows into the database: new tickets, duplicates, and rejections kept as failed tickets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from crewdesk.db import transaction
from crewdesk.intake.files import DEFAULT_SOURCE, Row
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import TicketStatus


@dataclass
class AcceptReport:
    to_enqueue: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str, int]] = field(default_factory=list)  # (line, reason, failed ticket id)

    @property
    def accepted(self) -> int:
        return len(self.to_enqueue)


def accept_rows(*, session_factory: sessionmaker[Session], rows: Iterable[Row], chunk: int = 500) -> AcceptReport:
    """Store rows in chunks of one transaction each. A ticket still `received` (enqueue never happened) is re-offered."""
    report = AcceptReport()
    batch: list[Row] = []
    offered: set[int] = set()

    def flush() -> None:
        with transaction(session_factory) as db:
            for row in batch:
                if row.ticket is None:
                    failed = tickets.record_rejected(db=db, source=DEFAULT_SOURCE if not isinstance(row.raw, dict) else str(row.raw.get("source") or DEFAULT_SOURCE)[:32],
                                                     external_id=row.external_id[:255], reason=row.error or "rejected", raw=row.raw)
                    report.rejected.append((row.line, row.error or "rejected", failed.id))
                    continue
                ticket, created = tickets.submit(db=db, ticket_in=row.ticket)
                if (created or ticket.status == TicketStatus.received.value) and ticket.id not in offered:
                    offered.add(ticket.id)
                    report.to_enqueue.append(ticket.id)
                else:
                    report.duplicates.append(ticket.id)
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return report
