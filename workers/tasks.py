"""Celery tasks. Thin: ids in, one service call, a small dict out."""

from __future__ import annotations

from celery import Task

from crewdesk.errors import CrewdeskError, TicketNotFound, TransientError, deferral_of
from crewdesk.intake.enqueue import Enqueuer
from crewdesk.logging import bind, get_logger, unbind
from crewdesk.queues import Queue, TaskName
from workers.app import app, configured_settings, ticket_sender
from workers.runtime import runtime

log = get_logger(__name__)


class TicketTask(Task):
    """When retries run out, the ticket is marked failed with the reason: it is never left queued and forgotten."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        ticket_id = args[0] if args else kwargs.get("ticket_id")
        if isinstance(ticket_id, int) and not isinstance(exc, TicketNotFound):
            runtime().pipeline.give_up(ticket_id, reason=f"gave up after {self.request.retries} retries: {type(exc).__name__}: {exc}")


@app.task(
    bind=True,
    base=TicketTask,
    name=TaskName.process_ticket.value,
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
    except TransientError as exc:
        wait = deferral_of(exc)
        if wait is None:
            raise  # autoretry_for: backoff, counted against max_retries
        # No model can take the ticket now (circuits open, rate limited; crewdesk/llm/breaker.py): back on the queue for when
        # one can, its retry count unchanged, so a provider outage never uses up max_retries nor ends in `failed`. Below the
        # visibility timeout (a Redis ETA message held longer is delivered twice); a run that comes early meets the endpoint
        # still held, calls nothing, and is deferred again for the rest.
        countdown = max(1, min(int(wait), runtime().settings.visibility_timeout // 2))
        process_ticket.apply_async(args=[ticket_id], countdown=countdown, retries=self.request.retries)
        log.warning("ticket.deferred", seconds=countdown, error=str(exc))
        return {"ticket_id": ticket_id, "status": "deferred", "retry_in": countdown}
    finally:
        unbind("celery_task_id", "ticket_id")
    if not outcome.reused and _has_delivery_work(outcome.ticket_id):
        deliver_replies.delay(outcome.ticket_id)
    if outcome.requeue:
        ticket_sender(app)([outcome.ticket_id])  # the customer wrote during the run: once more, already `queued`
    return outcome.model_dump(mode="json")


def _has_delivery_work(ticket_id: int) -> bool:
    """Only tickets from a channel with a reply path (e-mail, Jira) get a delivery task: for unsent messages, or
    for a final status the channel mirrors (a Jira transition)."""
    from crewdesk.delivery.service import pending
    from crewdesk.tickets.models import Ticket

    rt = runtime()
    with rt.pipeline.session_factory() as db:
        ticket = db.get(Ticket, ticket_id)
        if ticket is None or ticket.source not in rt.channels:
            return False
        return bool(pending(db=db, ticket_id=ticket_id)) or rt.channels[ticket.source].syncs_status(ticket.status)


@app.task(
    bind=True,
    name=TaskName.deliver_replies.value,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(TransientError,),
    retry_backoff=10,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
)
def deliver_replies(self, ticket_id: int) -> dict:
    """Send a ticket's undelivered replies and notes through its channel (SMTP, Jira)."""
    from crewdesk.delivery.service import deliver_pending

    rt = runtime()
    bind(celery_task_id=self.request.id, ticket_id=ticket_id)
    try:
        report = deliver_pending(session_factory=rt.pipeline.session_factory, ticket_id=ticket_id, channels=rt.channels)
    finally:
        unbind("celery_task_id", "ticket_id")
    return {"ticket_id": ticket_id, "sent": report.sent, "skipped": report.skipped, "refused": report.refused, "status": report.status}


@app.task(name=TaskName.poll_mailbox.value, ignore_result=True)
def poll_mailbox() -> dict:
    """One poll of the IMAP mailbox (Celery beat sends it every imap_poll_seconds). Not retried: the next beat is the retry."""
    from crewdesk.intake.email.poller import poll_mailbox as poll

    rt = runtime()
    try:
        report = poll(session_factory=rt.pipeline.session_factory, settings=rt.settings, enqueue=_enqueuer())
    except CrewdeskError as exc:  # unreachable, or refusing our login: logged on every beat until it is fixed
        log.warning("mailbox.unavailable", error=str(exc), transient=isinstance(exc, TransientError))
        return {"status": "unavailable", "error": str(exc)}
    return {"mailbox": report.mailbox, "busy": report.busy, "fetched": report.fetched, "outcomes": dict(report.outcomes), "enqueued": report.enqueued}


@app.task(name=TaskName.purge_memory.value, ignore_result=True)
def purge_memory() -> dict:
    """Retention (Celery beat sends it every memory_purge_hours): erase customer summaries older than
    memory_retention_days from every store that may hold them. Not retried: the next beat is the retry."""
    from crewdesk.memory.service import every_backend, purge

    settings = configured_settings()
    try:
        counts = purge(backends=every_backend(settings=settings), retention_days=settings.memory_retention_days)
    except CrewdeskError as exc:
        log.warning("memory.purge_failed", error=str(exc), transient=isinstance(exc, TransientError))
        return {"status": "failed", "error": str(exc)}
    log.info("memory.purged", retention_days=settings.memory_retention_days, erased=counts)
    return {"status": "done", "erased": counts}


@app.task(name=TaskName.reconcile.value, ignore_result=True)
def reconcile() -> dict:
    """One sweep of the reconciler (Celery beat sends it every reconcile_seconds): stalled tickets the broker lost go
    back on the queue, and messages whose delivery task never ran (a reply a person wrote in the console while the broker
    was down) get one. Not retried: the next beat is the retry."""
    from datetime import timedelta

    from crewdesk.delivery.service import never_tried
    from workers.reconcile import broker_ticket_ids
    from workers.reconcile import reconcile as sweep

    rt = runtime()
    settings = rt.settings
    held = broker_ticket_ids(app.conf.broker_url or settings.broker_url, Queue.tickets.value)
    report = sweep(
        session_factory=rt.pipeline.session_factory,
        idle_for=timedelta(seconds=settings.reconcile_after_seconds),
        in_broker=held,
        enqueue=lambda ticket_id: ticket_sender(app)([ticket_id]),  # a requeue: the ticket keeps its status
    )
    with rt.pipeline.session_factory() as db:
        undelivered = never_tried(db=db, sources=set(rt.channels), older_than=timedelta(seconds=settings.reconcile_after_seconds))
    for ticket_id in undelivered:
        deliver_replies.delay(ticket_id)
    return {"checked": report.checked, "requeued": report.requeued, "in_broker": report.in_broker, "deliveries": undelivered}


@app.task(name=TaskName.remind_waiting.value, ignore_result=True)
def remind_waiting() -> dict:
    """One sweep of the tickets waiting on the customer (Celery beat sends it every conversation_sweep_seconds): a
    reminder after conversation_remind_after_hours (delivered through the ticket's channel), closed as no_reply after
    conversation_close_after_hours. Not retried: the next beat is the retry."""
    from datetime import timedelta

    from workers.reminders import sweep

    rt = runtime()
    settings = rt.settings
    hours = lambda value: timedelta(hours=value) if value > 0 else None  # noqa: E731
    report = sweep(
        session_factory=rt.pipeline.session_factory,
        replies=rt.pipeline.replies,
        remind_after=hours(settings.conversation_remind_after_hours),
        close_after=hours(settings.conversation_close_after_hours),
        deliver=lambda ticket_id: deliver_replies.delay(ticket_id),
    )
    return {"reminded": report.reminded, "closed": report.closed}


def _enqueuer() -> Enqueuer:
    """Tickets a task finds (a mailbox poll, the reconciler) go to the queue the one way every producer uses."""
    return Enqueuer(session_factory=runtime().pipeline.session_factory, send=ticket_sender(app))
