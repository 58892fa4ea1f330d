"""The one way in: every channel (the API, the CLI, e-mail, Jira, backlogs) stores what it received in its own
transaction, then hands the results here. What it returns is the same for all of them: the tickets the items became
or joined, and which of those went to the queue, sent after the commit by the one Enqueuer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.orm import Session

from crewdesk.intake.enqueue import Enqueuer


class Received(Protocol):
    """What one channel item became (an e-mail's IngestResult, a Jira delivery's JiraOutcome, a submitted ticket)."""

    @property
    def ticket_id(self) -> int | None: ...

    @property
    def needs_run(self) -> bool: ...


@dataclass(frozen=True)
class Stored:
    """A ticket stored by a channel that has no richer outcome of its own (an API or CLI submission, a backlog row)."""

    ticket_id: int | None
    needs_run: bool


@dataclass
class Admission:
    ticket_ids: list[int] = field(default_factory=list)  # each ticket once, in order: new, follow-ups and duplicates
    queued: list[int] = field(default_factory=list)  # of those, the ones sent to the queue now


def admit(received: Iterable[Received], *, enqueuer: Enqueuer, also: Callable[[Session, list[int]], None] | None = None) -> Admission:
    """After the channel's commit: queue the tickets that need a run, and say which tickets the items became."""
    items = list(received)
    ticket_ids = list(dict.fromkeys(item.ticket_id for item in items if item.ticket_id is not None))
    wanted = [item.ticket_id for item in items if item.ticket_id is not None and item.needs_run]
    return Admission(ticket_ids=ticket_ids, queued=enqueuer(wanted, also=also))
