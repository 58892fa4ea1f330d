"""Worker metrics hooks (crewdesk/metrics/worker.py does the work). Imported by workers/app.py, so the signals are
connected in every process that loads the app; they do nothing unless PROMETHEUS_MULTIPROC_DIR is set (which
`crewdesk worker` does). Nothing here imports prometheus_client, CrewAI or the pipeline at import time: the parent
must stay free of them before it forks.

- task_prerun / task_postrun of crewdesk.process_ticket: note the ticket's last run and whether it had a reply,
  then count what the task finished (runs, tokens, model seconds, cost, first reply, handle time);
- worker_process_shutdown: mark_process_dead for this child's live gauges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import signals

from crewdesk.logging import get_logger
from crewdesk.queues import TaskName

if TYPE_CHECKING:  # not imported at run time: see above
    from crewdesk.metrics.worker import Before

log = get_logger(__name__)
TASK = TaskName.process_ticket.value
_before: dict[str, Before] = {}  # celery task id -> what the ticket looked like before the task, in this child
_counted: set[str] = set()  # task ids counted in crewdesk_worker_tickets_in_progress


def _ticket_id(args, kwargs) -> int | None:
    value = args[0] if args else (kwargs or {}).get("ticket_id")
    return value if isinstance(value, int) else None


def _sessions():
    from workers.runtime import runtime

    return runtime().pipeline.session_factory


@signals.task_prerun.connect
def _task_started(sender=None, task_id=None, args=None, kwargs=None, **_: object) -> None:
    from crewdesk.metrics import worker as wm

    if getattr(sender, "name", None) != TASK or not wm.multiprocess_enabled():
        return
    ticket_id = _ticket_id(args, kwargs)
    if ticket_id is None:
        return
    try:
        wm.worker_metrics().in_progress.inc()
        _counted.add(task_id)
        with _sessions()() as db:
            _before[task_id] = wm.before_task(db, ticket_id)
    except Exception as exc:  # noqa: BLE001 - metrics never fail a ticket
        log.warning("metrics.prerun_failed", error=f"{type(exc).__name__}: {exc}")


@signals.task_postrun.connect
def _task_finished(sender=None, task_id=None, **_: object) -> None:
    from crewdesk.metrics import worker as wm

    if getattr(sender, "name", None) != TASK or not wm.multiprocess_enabled():
        return
    before = _before.pop(task_id, None)
    try:
        if before is not None:
            with _sessions()() as db:
                wm.after_task(db, before)
    except Exception as exc:  # noqa: BLE001 - metrics never fail a ticket
        log.warning("metrics.postrun_failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        if task_id in _counted:  # last: a scrape showing 0 in progress has every count of the task
            _counted.discard(task_id)
            wm.worker_metrics().in_progress.dec()


@signals.worker_process_shutdown.connect
def _child_exit(**_: object) -> None:
    from crewdesk.metrics import worker as wm

    try:
        wm.mark_process_dead()
    except Exception as exc:  # noqa: BLE001 - metrics never fail a ticket
        log.warning("metrics.mark_dead_failed", error=f"{type(exc).__name__}: {exc}")
