"""Celery task names and queues: one spelling for the producers (intake, the faces) and the worker that runs them."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    tickets = "tickets"  # crew runs: slow, model-bound
    intake = "intake"  # mailbox polls, the reconciler, retention: fast, must not wait behind crew runs
    delivery = "delivery"  # replies out through SMTP / Jira


class TaskName(StrEnum):
    process_ticket = "crewdesk.process_ticket"
    deliver_replies = "crewdesk.deliver_replies"
    poll_mailbox = "crewdesk.poll_mailbox"
    purge_memory = "crewdesk.purge_memory"
    reconcile = "crewdesk.reconcile"


ROUTES: dict[TaskName, Queue] = {
    TaskName.process_ticket: Queue.tickets,
    TaskName.deliver_replies: Queue.delivery,
    TaskName.poll_mailbox: Queue.intake,
    TaskName.purge_memory: Queue.intake,
    TaskName.reconcile: Queue.intake,
}
