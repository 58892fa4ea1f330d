"""Reading crew runs: one summary per run, as the faces list them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from crewdesk.runs.models import CrewRun


@dataclass(frozen=True)
class RunSummary:
    """One attempt to process a ticket: how it ended, which models answered, and what it took."""

    id: int
    status: str  # running | completed | interrupted | error
    outcome: str | None
    process: str
    models: tuple[str, ...]  # the distinct models the run's agents used, sorted
    llm_calls: int
    tokens_in: int
    tokens_cached: int  # of tokens_in, read from the server's prompt cache
    tokens_out: int
    cost_usd: float
    latency_s: float | None
    error: str | None

    @classmethod
    def of(cls, run: CrewRun) -> RunSummary:
        return cls(
            id=run.id,
            status=run.status,
            outcome=run.outcome,
            process=run.process,
            models=tuple(sorted(set(run.models.values()))),
            llm_calls=run.llm_calls,
            tokens_in=run.tokens_in,
            tokens_cached=run.tokens_cached,
            tokens_out=run.tokens_out,
            cost_usd=run.cost_usd,
            latency_s=run.latency_s,
            error=run.error,
        )


def get(*, db: Session, run_id: int) -> RunSummary | None:
    run = db.get(CrewRun, run_id)
    return RunSummary.of(run) if run is not None else None


def for_ticket(*, db: Session, ticket_id: int) -> list[RunSummary]:
    """A ticket's runs, oldest first."""
    runs = db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket_id).order_by(CrewRun.id)).scalars()
    return [RunSummary.of(run) for run in runs]
