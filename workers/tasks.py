"""Celery tasks. Thin: ids in, one service call, a small dict out."""

from __future__ import annotations

from celery import Task

from crewdesk.errors import TicketNotFound, TransientError
from crewdesk.logging import bind, get_logger, unbind
from workers.app import app
from workers.runtime import runtime

log = get_logger(__name__)


class TicketTask(Task):
    """When retries run out, the ticket is marked failed with the reason: it is never left queued and forgotten."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):  # noqa: D401
        ticket_id = args[0] if args else kwargs.get("ticket_id")
        if isinstance(ticket_id, int) and not isinstance(exc, TicketNotFound):
            runtime().pipeline.give_up(ticket_id, reason=f"gave up after {self.request.retries} retries: {type(exc).__name__}: {exc}")


@app.task(
    bind=True,
    base=TicketTask,
    name="crewdesk.process_ticket",
    acks_late=True,
    reject_on_worker_lost=True,
    # Only errors that may pass on the next try. CrewAI retries rate limits inside each LLM call and
    # our clients make no retries of their own, so retries do not multiply.
    autoretry_for=(TransientError,),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=3,
)
def process_ticket(self, ticket_id: int) -> dict:
    bind(celery_task_id=self.request.id, ticket_id=ticket_id)
    try:
        outcome = runtime().pipeline.process(ticket_id, celery_task_id=self.request.id)
    except TicketNotFound as exc:
        log.error("ticket.not_found", error=str(exc))
        return {"ticket_id": ticket_id, "status": "not_found"}
    finally:
        unbind("celery_task_id", "ticket_id")
    return outcome.model_dump(mode="json")
