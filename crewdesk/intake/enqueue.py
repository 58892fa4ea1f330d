"""The one way a ticket reaches the queue.

Order: the ticket's transaction has committed (the worker always finds the ticket and its messages), then the ids go
to the broker, then `received -> queued` in one conditional UPDATE. A fast worker may already have moved the ticket
on (received -> triaging): the condition keeps that. A process that dies between the send and the UPDATE leaves a
ticket `received` that is on the queue, which the worker runs as usual; one that dies before the send leaves it
`received` and off the queue, which the reconciler (workers/reconcile.py) puts back. Nothing is lost either way,
and the pipeline runs a ticket once however often it is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from sqlalchemy.orm import Session, sessionmaker

from crewdesk.db import transaction
from crewdesk.tickets import service as tickets

Send = Callable[[Sequence[int]], None]  # ticket ids onto the broker's ticket queue (workers.app.ticket_sender)


class Enqueuer:
    def __init__(self, *, session_factory: sessionmaker[Session], send: Send) -> None:
        self.session_factory = session_factory
        self.send = send

    def __call__(self, ticket_ids: Iterable[int], *, also: Callable[[Session, list[int]], None] | None = None) -> list[int]:
        """Send `ticket_ids` (after their commit; each once, in order) and mark them queued. `also` runs in the same
        transaction as the marking (a backlog import counts what it enqueued there). Returns the ids sent."""
        ids = list(dict.fromkeys(ticket_ids))
        if not ids:
            return []
        self.send(ids)
        with transaction(self.session_factory) as db:
            tickets.mark_queued(db=db, ticket_ids=ids)
            if also is not None:
                also(db, ids)
        return ids
