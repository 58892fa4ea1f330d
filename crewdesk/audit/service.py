"""Write and read audit events. Rows are only ever inserted."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crewdesk.audit.chain import GENESIS, HASHED_FIELDS, row_hash
from crewdesk.audit.models import AuditChainHead, AuditEvent
from crewdesk.db import utcnow

MAX_FIELD_CHARS = 40_000


def _bounded(value: Any) -> Any:
    """Keep JSON-able and bounded; a huge prompt is cut, not dropped."""
    if value is None:
        return None
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = json.dumps(str(value))
    if len(text) <= MAX_FIELD_CHARS:
        return json.loads(text)
    return {"truncated": True, "chars": len(text), "head": text[:MAX_FIELD_CHARS]}


def record(
    *,
    db: Session,
    kind: str,
    name: str,
    ticket_id: int | None = None,
    run_id: int | None = None,
    actor: str = "",
    arguments: Any = None,
    result: Any = None,
    duration_ms: float | None = None,
    error: str | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    fields = dict(
        ticket_id=ticket_id,
        run_id=run_id,
        kind=kind,
        name=name[:128],
        actor=(actor or "")[:128],
        arguments=_bounded(arguments),
        result=_bounded(result),
        duration_ms=duration_ms,
        error=error,
        created_at=at or utcnow(),
    )
    # Bumping the head row first takes its lock (PostgreSQL) or the write lock (SQLite) before the
    # previous hash is read, so concurrent appends form one chain. Held until the caller commits.
    prev_hash = db.execute(
        update(AuditChainHead).where(AuditChainHead.id == 1).values(count=AuditChainHead.count + 1).returning(AuditChainHead.last_hash)
    ).scalar_one()
    digest = row_hash(prev_hash, fields)
    event = AuditEvent(**fields, prev_hash=prev_hash, hash=digest)
    db.add(event)
    db.execute(update(AuditChainHead).where(AuditChainHead.id == 1).values(last_hash=digest))
    return event


@dataclass
class ChainReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(*, db: Session, batch: int = 2000) -> ChainReport:
    """Recompute every hash in id order: an edited row breaks its own hash, a deleted one its successor's link,
    and a deleted tail no longer matches the head row."""
    report = ChainReport()
    expected_prev = GENESIS
    last_id = 0
    while True:
        rows = db.execute(select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)).scalars().all()
        if not rows:
            break
        for row in rows:
            if row.prev_hash != expected_prev:
                report.problems.append(f"row {row.id}: links to {row.prev_hash[:12]}, but the row before it hashes to {expected_prev[:12]} (a row was deleted or inserted)")
            recomputed = row_hash(row.prev_hash, {k: getattr(row, k) for k in HASHED_FIELDS})
            if recomputed != row.hash:
                report.problems.append(f"row {row.id}: content does not match its hash (edited)")
            expected_prev = row.hash
            report.checked += 1
        last_id = rows[-1].id
        db.expunge_all()
    head = db.get(AuditChainHead, 1)
    if head is None:
        report.problems.append("audit_chain_head is missing")
    else:
        if head.last_hash != expected_prev:
            report.problems.append(f"the last row hashes to {expected_prev[:12]}, the chain head says {head.last_hash[:12]} (rows removed from the end)")
        if head.count != report.checked:
            report.problems.append(f"{report.checked} rows found, the chain head counted {head.count}")
    return report


def trail(*, db: Session, ticket_id: int) -> list[AuditEvent]:
    return list(db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id).order_by(AuditEvent.created_at, AuditEvent.id)).scalars())
