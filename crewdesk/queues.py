"""Celery task names and queues: one spelling for the producers (intake, the faces) and the worker that runs them."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any


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
    remind_waiting = "crewdesk.remind_waiting"


ROUTES: dict[TaskName, Queue] = {
    TaskName.process_ticket: Queue.tickets,
    TaskName.deliver_replies: Queue.delivery,
    TaskName.poll_mailbox: Queue.intake,
    TaskName.purge_memory: Queue.intake,
    TaskName.reconcile: Queue.intake,
    TaskName.remind_waiting: Queue.intake,
}

# kombu's Redis transport keeps one list per queue and priority step (default steps 0, 3, 6, 9): "<queue>\x06\x16<step>".
PRIORITY_STEPS = (3, 6, 9)


def queue_depths(client: Any, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting on each queue of a Redis broker (`client`: a redis.Redis), all priority steps counted, in one
    round trip. Messages a worker has reserved (kombu's `unacked` hash) are not waiting and not counted."""
    names = list(queues)
    pipe = client.pipeline(transaction=False)
    for queue in names:
        for key in (queue, *(f"{queue}\x06\x16{step}" for step in PRIORITY_STEPS)):
            pipe.llen(key)
    counts = pipe.execute()
    per = 1 + len(PRIORITY_STEPS)
    return {queue: int(sum(counts[i * per : (i + 1) * per])) for i, queue in enumerate(names)}
