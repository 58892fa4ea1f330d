"""The reconciler (Celery beat): a ticket that is not terminal, has not moved for longer than a bound, and has no
message in the broker is put back on the queue. Nothing else brings back tickets whose messages the broker lost
(Redis restarted without persistence, a failover, a flushed database) or that a crash left in a run.

Safe because the pipeline is idempotent: a finished ticket is returned as it is, one held by a live worker is left to
it, and writes already made are replayed from their effect records, never repeated.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

from sqlalchemy.orm import Session, sessionmaker

from crewdesk.audit import service as audit
from crewdesk.db import transaction, utcnow
from crewdesk.logging import get_logger
from crewdesk.queues import TaskName
from crewdesk.tickets import service as tickets

log = get_logger(__name__)

PROCESS_TASK = TaskName.process_ticket.value


@dataclass
class ReconcileReport:
    checked: int = 0
    requeued: list[int] = field(default_factory=list)
    in_broker: int = 0


def _ticket_of(message: dict) -> int | None:
    """The ticket id of a kombu (Redis transport) message for crewdesk.process_ticket, or None."""
    headers = message.get("headers") or {}
    if headers.get("task") != PROCESS_TASK:
        return None
    try:
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    except (KeyError, ValueError, TypeError):
        return None
    value = args[0] if args else kwargs.get("ticket_id")
    return value if isinstance(value, int) else None


def broker_ticket_ids(broker_url: str, queue: str) -> set[int] | None:
    """Tickets the Redis broker still holds a message for: waiting in the queue (every priority list of it) or delivered
    and not yet acknowledged (kombu's `unacked` hash, which also holds retries waiting for their countdown).
    None when the broker is not Redis: then staleness alone decides."""
    if not broker_url.startswith(("redis://", "rediss://", "unix://")):
        return None
    import redis

    client = redis.Redis.from_url(broker_url)
    found: set[int] = set()
    raw: list[bytes | str] = []  # redis-py types replies as either; this client (no decode_responses) returns bytes
    for key in client.scan_iter(match=f"{queue}*", count=100):
        if client.type(key) == b"list":
            raw.extend(cast(list, client.lrange(key, 0, -1)))
    for value in cast(list, client.hvals("unacked")):  # redis-py 7 types a sync client's replies as possibly awaitable
        try:
            raw.append(json.dumps(json.loads(value)[0]).encode())
        except (ValueError, IndexError, TypeError):
            continue
    for item in raw:
        try:
            ticket_id = _ticket_of(json.loads(item))
        except ValueError:
            continue
        if ticket_id is not None:
            found.add(ticket_id)
    return found


def reconcile(*, session_factory: sessionmaker[Session], idle_for: timedelta, in_broker: set[int] | None, enqueue: Callable[[int], object]) -> ReconcileReport:
    """Re-enqueue every stalled ticket the broker does not hold; each gets an audit row and counts as moved now, so the
    next sweep leaves it alone for another `idle_for`."""
    report = ReconcileReport(in_broker=len(in_broker or ()))
    with session_factory() as db:
        candidates = [(t.id, t.status, t.updated_at) for t in tickets.stalled(db=db, idle_for=idle_for)]
    report.checked = len(candidates)
    for ticket_id, status, updated_at in candidates:
        if in_broker is not None and ticket_id in in_broker:
            continue
        with transaction(session_factory) as db:
            ticket = tickets.get(db=db, ticket_id=ticket_id, lock=True)
            if ticket.status != status or ticket.updated_at != updated_at:
                continue  # it moved meanwhile
            # Sent before the commit: a broker that refuses leaves the ticket untouched for the next sweep, and a commit
            # that fails after the send leaves one extra message, which the pipeline answers with the ticket as it is.
            enqueue(ticket_id)
            tickets.touch(db=db, ticket=ticket)
            audit.record(
                db=db,
                ticket_id=ticket_id,
                kind="status",
                name="requeued",
                actor="reconciler",
                result={"status": status, "idle_seconds": round((utcnow() - updated_at).total_seconds(), 1)},
            )
        report.requeued.append(ticket_id)
    if report.requeued:
        log.warning("reconcile.requeued", tickets=report.requeued, checked=report.checked)
    return report
