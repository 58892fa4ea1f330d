"""Write and read audit events. Rows are only ever inserted."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crewdesk.audit.models import AuditEvent

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
    event = AuditEvent(
        ticket_id=ticket_id,
        run_id=run_id,
        kind=kind,
        name=name[:128],
        actor=(actor or "")[:128],
        arguments=_bounded(arguments),
        result=_bounded(result),
        duration_ms=duration_ms,
        error=error,
    )
    if at is not None:
        event.created_at = at
    db.add(event)
    return event


def trail(*, db: Session, ticket_id: int) -> list[AuditEvent]:
    return list(db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id).order_by(AuditEvent.created_at, AuditEvent.id)).scalars())
