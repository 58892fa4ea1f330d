"""The Celery app. Configured explicitly by configure(settings); nothing model- or crew-related runs in the parent."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery
from kombu import Queue as KombuQueue
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.intake.enqueue import Enqueuer
from crewdesk.queues import ROUTES, Queue, TaskName
from crewdesk.settings import Settings, load_settings

app = Celery("crewdesk", include=["workers.tasks"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,  # results and audit go to PostgreSQL, not the broker
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,  # our JSON log lines go to stderr as they are, not wrapped by Celery
    broker_connection_retry_on_startup=True,
)


_configured: Settings | None = None


def configured_settings() -> Settings:
    """The settings configure() was given: `crewdesk worker` configures the app in the parent, before the pool forks, so
    every child has them; a process that never configured the app (a bare `celery` command) reads the environment."""
    return _configured if _configured is not None else load_settings()


def configure(settings: Settings) -> Celery:
    app.conf.update(
        broker_url=settings.broker_url,
        # A ticket is acknowledged only after the pipeline returns; a SIGKILLed worker's ticket
        # is redelivered: at once when a child dies (reject_on_worker_lost), and after
        # visibility_timeout when the whole worker dies. It must exceed the task time limit.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # kombu sweeps every interval x throttle seconds (default 10 x 10); make the interval the only knob.
            "unacked_restore_interval": settings.unacked_restore_interval,
            "unacked_restore_throttle": 1,
        },
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(1, settings.task_time_limit - min(30, settings.task_time_limit // 10)),
        task_default_queue=Queue.tickets.value,
        task_queues=[KombuQueue(q.value) for q in Queue],
        task_routes={name.value: {"queue": queue.value} for name, queue in ROUTES.items()},
        task_annotations={TaskName.process_ticket.value: {"max_retries": settings.task_max_retries}},
        worker_concurrency=settings.worker_concurrency,
    )
    app.conf.beat_schedule = beat_schedule(settings)
    app.conf.beat_schedule_filename = str(settings.home / "celerybeat-schedule")
    global _configured
    _configured = settings
    return app


def ticket_sender(celery_app: Celery):
    """Ticket ids onto the ticket queue by task name, one producer (connection) per batch. By name, so a producer (the
    API, the CLI, an importer) never imports workers.tasks and the crew stack behind it."""

    def send(ticket_ids: Sequence[int]) -> None:
        with celery_app.producer_or_acquire() as producer:
            for ticket_id in ticket_ids:
                celery_app.send_task(TaskName.process_ticket.value, args=[ticket_id], producer=producer)

    return send


def delivery_sender(celery_app: Celery):
    """A ticket's undelivered messages to the delivery queue by task name (deliver_replies, with its retries): what the
    console sends after a person's reply, note or close, as the worker does after a run."""

    def send(ticket_id: int) -> None:
        celery_app.send_task(TaskName.deliver_replies.value, args=[ticket_id])

    return send


def enqueuer(settings: Settings, session_factory: sessionmaker[Session]) -> Enqueuer:
    """The Enqueuer (crewdesk/intake/enqueue.py) over this app, configured from `settings`."""
    return Enqueuer(session_factory=session_factory, send=ticket_sender(configure(settings)))


def beat_schedule(settings: Settings) -> dict:
    """What `crewdesk worker` runs Celery beat for (it starts beat only when this is not empty).

    A mailbox poll older than one interval is dropped unrun: the next one reads the same mail, and polls
    do not pile up behind slow crew runs. Concurrent polls of one mailbox are serialised by a database lock,
    and a purge run twice erases nothing twice, so two workers that both run beat do no harm.
    """
    schedule: dict = {}
    if settings.reconcile_seconds > 0:  # stalled tickets back on the queue (workers/reconcile.py); a missed sweep is not worth running late
        schedule["reconcile"] = {
            "task": TaskName.reconcile.value,
            "schedule": float(settings.reconcile_seconds),
            "options": {"expires": float(settings.reconcile_seconds)},
        }
    if settings.imap_host:
        schedule["poll-mailbox"] = {
            "task": TaskName.poll_mailbox.value,
            "schedule": float(settings.imap_poll_seconds),
            "options": {"expires": float(settings.imap_poll_seconds)},
        }
    conversations = settings.conversation_remind_after_hours > 0 or settings.conversation_close_after_hours > 0
    if conversations and settings.conversation_sweep_seconds > 0:  # remind, then close, tickets waiting on the customer
        every = float(settings.conversation_sweep_seconds)
        schedule["conversations"] = {"task": TaskName.remind_waiting.value, "schedule": every, "options": {"expires": every}}
    memory_on = settings.memory_backend != "off" or bool(settings.weaviate_url)
    if memory_on and settings.memory_retention_days > 0 and settings.memory_purge_hours > 0:
        every = settings.memory_purge_hours * 3600.0
        schedule["purge-memory"] = {"task": TaskName.purge_memory.value, "schedule": every, "options": {"expires": every}}
    return schedule


from workers import metrics as _metrics  # noqa: E402,F401  (Celery task signals for the worker metrics; imports nothing heavy)
