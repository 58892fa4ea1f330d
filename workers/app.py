"""The Celery app. Configured explicitly by configure(settings); nothing model- or crew-related runs in the parent."""

from __future__ import annotations

from enum import StrEnum

from celery import Celery
from kombu import Queue

from crewdesk.settings import Settings


class Queues(StrEnum):
    tickets = "tickets"  # crew runs: slow, model-bound
    intake = "intake"  # mailbox polls, webhook events: fast, must not wait behind crew runs
    delivery = "delivery"  # replies out through SMTP / Jira


ROUTES = {
    "crewdesk.process_ticket": Queues.tickets.value,
    "crewdesk.deliver_replies": Queues.delivery.value,
    "crewdesk.poll_mailbox": Queues.intake.value,
    "crewdesk.purge_memory": Queues.intake.value,
    "crewdesk.reconcile": Queues.intake.value,
}


app = Celery("crewdesk", include=["workers.tasks"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,  # results and audit go to PostgreSQL, not the broker
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,  # our JSON log lines go to stderr as they are, not wrapped by Celery
    broker_connection_retry_on_startup=True,
)


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
        task_default_queue=Queues.tickets.value,
        task_queues=[Queue(q.value) for q in Queues],
        task_routes={name: {"queue": queue} for name, queue in ROUTES.items()},
        task_annotations={"crewdesk.process_ticket": {"max_retries": settings.task_max_retries}},
        worker_concurrency=settings.worker_concurrency,
    )
    app.conf.beat_schedule = beat_schedule(settings)
    app.conf.beat_schedule_filename = str(settings.home / "celerybeat-schedule")
    app.conf.crewdesk_settings = settings
    return app


def beat_schedule(settings: Settings) -> dict:
    """What `crewdesk worker` runs Celery beat for (it starts beat only when this is not empty).

    A mailbox poll older than one interval is dropped unrun: the next one reads the same mail, and polls
    do not pile up behind slow crew runs. Concurrent polls of one mailbox are serialised by a database lock,
    and a purge run twice erases nothing twice, so two workers that both run beat do no harm.
    """
    schedule: dict = {}
    if settings.reconcile_seconds > 0:  # stalled tickets back on the queue (workers/reconcile.py); a missed sweep is not worth running late
        schedule["reconcile"] = {
            "task": "crewdesk.reconcile",
            "schedule": float(settings.reconcile_seconds),
            "options": {"expires": float(settings.reconcile_seconds)},
        }
    if settings.imap_host:
        schedule["poll-mailbox"] = {
            "task": "crewdesk.poll_mailbox",
            "schedule": float(settings.imap_poll_seconds),
            "options": {"expires": float(settings.imap_poll_seconds)},
        }
    memory_on = settings.memory_backend != "off" or bool(settings.weaviate_url)
    if memory_on and settings.memory_retention_days > 0 and settings.memory_purge_hours > 0:
        every = settings.memory_purge_hours * 3600.0
        schedule["purge-memory"] = {"task": "crewdesk.purge_memory", "schedule": every, "options": {"expires": every}}
    return schedule


from workers import metrics as _metrics  # noqa: E402,F401  (Celery task signals for the worker metrics; imports nothing heavy)
