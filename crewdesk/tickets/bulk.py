"""Tickets in bulk (backlog imports): a batch stored in a few statements, each key once."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Table, insert, select, tuple_
from sqlalchemy.dialects.postgresql.dml import Insert as PgInsert
from sqlalchemy.dialects.sqlite.dml import Insert as SqliteInsert
from sqlalchemy.orm import Session

from crewdesk.db import table_of, utcnow
from crewdesk.tickets.models import Message, Ticket, TicketStatus
from crewdesk.tickets.schemas import TicketIn


def submit_many(*, db: Session, tickets_in: list[TicketIn], backlog_id: int | None = None, raws: list[dict] | None = None) -> list[tuple[int, bool]]:
    """`submit` for a batch (backlog imports): one INSERT .. ON CONFLICT DO NOTHING for the tickets, one for their
    first messages, one SELECT for keys that already existed. Returns (ticket id, created) per input, in order; a key
    repeated within the batch is created once (its first occurrence) and a duplicate after that.
    raws: what to keep in tickets.raw per input (default: the TicketIn, as `submit` keeps)."""
    if not tickets_in:
        return []
    dialect = db.get_bind().dialect.name
    upsert: Callable[[Table], PgInsert | SqliteInsert]
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as upsert
    else:  # pragma: no cover - only PostgreSQL and SQLite are supported
        raise NotImplementedError(f"submit_many on {dialect}")

    now = utcnow()
    first: dict[tuple[str, str], int] = {}
    values = []
    for index, ticket_in in enumerate(tickets_in):
        key = (ticket_in.source, ticket_in.external_id)
        if key in first:
            continue
        first[key] = index
        values.append(
            dict(
                source=ticket_in.source,
                external_id=ticket_in.external_id,
                customer=ticket_in.customer,
                subject=ticket_in.subject,
                body=ticket_in.body,
                priority=ticket_in.priority,
                status=TicketStatus.received,
                backlog_id=backlog_id,
                raw=raws[index] if raws is not None else ticket_in.model_dump(mode="json"),
                created_at=now,
                updated_at=now,
            )
        )
    # Core executemany ("insertmanyvalues"): one cached statement in pages, where an ORM or multi-VALUES insert
    # would compile thousands of parameters per chunk.
    conn = db.connection()
    stmt = upsert(table_of(Ticket)).on_conflict_do_nothing(index_elements=["source", "external_id"]).returning(Ticket.id, Ticket.source, Ticket.external_id)
    created = {(s, e): i for i, s, e in conn.execute(stmt, values)}
    existing = [key for key in first if key not in created]
    found: dict[tuple[str, str], int] = {}
    if existing:
        rows = conn.execute(select(Ticket.id, Ticket.source, Ticket.external_id).where(tuple_(Ticket.source, Ticket.external_id).in_(existing)))
        found = {(s, e): i for i, s, e in rows}
    if created:
        conn.execute(
            insert(table_of(Message)),
            [
                dict(
                    ticket_id=created[key],
                    direction="inbound",
                    author=tickets_in[first[key]].customer[:320],
                    body=tickets_in[first[key]].body,
                    delivery_attempts=0,
                    created_at=now,
                )
                for key in created
            ],
        )
    result = []
    for index, ticket_in in enumerate(tickets_in):
        key = (ticket_in.source, ticket_in.external_id)
        fresh = key in created and first[key] == index
        result.append((created[key] if key in created else found[key], fresh))
    return result
