"""Worker-side event metrics: counters and histograms the Celery children write in prometheus_client's multiprocess
mode, derived from the crew_runs rows (and the first reply) a task finished; and the parent's endpoint that serves
them aggregated.

prometheus_client chooses multiprocess mode when it is first imported, from PROMETHEUS_MULTIPROC_DIR, and every
child inherits the parent's choice at fork: `prepare_multiproc_dir` must run in the worker parent before anything
imports prometheus_client (it also switches an already imported one, for metrics created afterwards). Metrics are
created lazily, in the child that first records one (`worker_metrics()`), so each writes its own per-pid files.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crewdesk.metrics.labels import channel_label
from crewdesk.runs.models import CrewRun
from crewdesk.settings import Settings
from crewdesk.tickets.models import TERMINAL, Message, Ticket

if TYPE_CHECKING:  # imported at run time only once the multiprocess directory is set (see above)
    from prometheus_client import Counter, Gauge, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds, from a quick crew run to a ticket that waited days for an approval.
RUN_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900)
TICKET_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)


def multiproc_dir(settings: Settings) -> Path:
    """PROMETHEUS_MULTIPROC_DIR when set, else CREWDESK_HOME/prometheus."""
    return Path(os.environ.get(MULTIPROC_ENV) or settings.home / "prometheus")


def prepare_multiproc_dir(settings: Settings, *, clean: bool = True) -> Path:
    """Create the directory, remove the previous run's files (the counters start again with the worker, as
    Prometheus expects of a restarted target) and point PROMETHEUS_MULTIPROC_DIR at it. One directory per worker
    instance: two workers sharing one would wipe each other's files."""
    path = multiproc_dir(settings)
    path.mkdir(parents=True, exist_ok=True)
    if clean:
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    import sys

    if "prometheus_client" in sys.modules:  # imported before the variable was set: metrics created from now on use files
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    return path


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def mark_process_dead(pid: int | None = None) -> None:
    """A child is exiting: drop its live gauges (counters and histograms stay, they are totals)."""
    if not multiprocess_enabled():
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid if pid is not None else os.getpid(), os.environ[MULTIPROC_ENV])


class _PruningCollector:
    """MultiProcessCollector that first drops the live-gauge files of children that died without a clean shutdown
    (SIGKILL, OOM), whose worker_process_shutdown never ran."""

    def __init__(self, path: Path) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.path = path
        self.inner = MultiProcessCollector(None, path=str(path))

    def collect(self):
        from prometheus_client import multiprocess

        for live in self.path.glob("gauge_live*_*.db"):
            pid = live.stem.rsplit("_", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                multiprocess.mark_process_dead(int(pid), str(self.path))
        return self.inner.collect()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def multiprocess_registry(path: Path):
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_PruningCollector(path))
    return registry


def serve(port: int, path: Path, host: str = "127.0.0.1"):
    """Serve the aggregate of every process's files at http://host:port/metrics from a daemon thread of this
    (parent) process. Returns the server; `server.shutdown()` stops it."""
    from prometheus_client import start_http_server

    result = start_http_server(port, addr=host, registry=multiprocess_registry(path))
    return result[0] if isinstance(result, tuple) else result


# --- the metrics ------------------------------------------------------------------------------------------------


@dataclass
class WorkerMetrics:
    runs: Counter
    llm_calls: Counter
    llm_seconds: Counter
    tokens: Counter
    cost: Counter
    run_seconds: Histogram
    first_reply: Histogram
    handle: Histogram
    in_progress: Gauge


_metrics: WorkerMetrics | None = None
_metrics_pid: int | None = None
_lock = threading.Lock()


def worker_metrics() -> WorkerMetrics:
    """This process's metric objects (created on first use; again after a fork). Registered on no registry: in
    multiprocess mode the files are what is scraped."""
    global _metrics, _metrics_pid
    with _lock:
        if _metrics is None or _metrics_pid != os.getpid():
            from prometheus_client import Counter, Gauge, Histogram

            _metrics = WorkerMetrics(
                runs=Counter("crewdesk_runs", "Finished crew runs by outcome.", ["outcome"], registry=None),
                llm_calls=Counter("crewdesk_llm_calls", "Model calls.", registry=None),
                llm_seconds=Counter("crewdesk_llm_seconds", "Seconds spent in model calls.", registry=None),
                tokens=Counter(
                    "crewdesk_llm_tokens", "Tokens: prompt, cached (the part of prompt read from the prompt cache), completion.", ["kind"], registry=None
                ),
                cost=Counter("crewdesk_llm_cost_usd", "Estimated model cost, USD.", registry=None),
                run_seconds=Histogram("crewdesk_run_seconds", "Crew run latency, seconds.", buckets=RUN_BUCKETS, registry=None),
                first_reply=Histogram(
                    "crewdesk_ticket_first_reply_seconds",
                    "From ticket creation to its first outbound reply, seconds.",
                    ["channel"],
                    buckets=TICKET_BUCKETS,
                    registry=None,
                ),
                handle=Histogram(
                    "crewdesk_ticket_handle_seconds",
                    "From ticket creation to the end of the run that gave it its final status, seconds.",
                    ["channel", "status"],
                    buckets=TICKET_BUCKETS,
                    registry=None,
                ),
                in_progress=Gauge("crewdesk_worker_tickets_in_progress", "Tickets being processed now.", multiprocess_mode="livesum", registry=None),
            )
            _metrics_pid = os.getpid()
        return _metrics


# --- from the database ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Before:
    """What a ticket had when its task started: the runs and outbound replies after it are the task's."""

    ticket_id: int
    last_run_id: int
    had_reply: bool


def before_task(db: Session, ticket_id: int) -> Before:
    last_run = db.execute(select(func.coalesce(func.max(CrewRun.id), 0)).where(CrewRun.ticket_id == ticket_id)).scalar_one()
    replies = db.execute(select(func.count()).where(Message.ticket_id == ticket_id, Message.direction == "outbound")).scalar_one()
    return Before(ticket_id=ticket_id, last_run_id=int(last_run), had_reply=replies > 0)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def after_task(db: Session, before: Before, metrics: WorkerMetrics | None = None) -> int:
    """Count the runs the task finished (and, once per ticket, its first reply and its handle time). Returns how
    many runs were counted."""
    metrics = metrics or worker_metrics()
    ticket = db.get(Ticket, before.ticket_id)
    if ticket is None:
        return 0
    runs = list(
        db.execute(
            select(CrewRun).where(CrewRun.ticket_id == ticket.id, CrewRun.id > before.last_run_id, CrewRun.finished_at.is_not(None)).order_by(CrewRun.id)
        ).scalars()
    )
    for run in runs:
        metrics.runs.labels(outcome=run.outcome or run.status).inc()
        metrics.llm_calls.inc(run.llm_calls or 0)
        metrics.llm_seconds.inc(run.llm_seconds or 0.0)
        metrics.tokens.labels(kind="prompt").inc(run.tokens_in or 0)
        metrics.tokens.labels(kind="cached").inc(run.tokens_cached or 0)
        metrics.tokens.labels(kind="completion").inc(run.tokens_out or 0)
        metrics.cost.inc(run.cost_usd or 0.0)
        if run.latency_s is not None:
            metrics.run_seconds.observe(run.latency_s)
    created = _aware(ticket.created_at)
    if not before.had_reply:
        first = db.execute(select(func.min(Message.created_at)).where(Message.ticket_id == ticket.id, Message.direction == "outbound")).scalar_one()
        if first is not None:
            metrics.first_reply.labels(channel=channel_label(ticket.source)).observe(max(0.0, (_aware(first) - created).total_seconds()))
    if runs and ticket.status in TERMINAL:
        ended = max(_aware(run.finished_at) for run in runs if run.finished_at is not None)  # all are: the query asks for finished runs
        metrics.handle.labels(channel=channel_label(ticket.source), status=ticket.status).observe(max(0.0, (ended - created).total_seconds()))
    return len(runs)
