"""The scrape-time collector: counts that live in PostgreSQL and Redis, read when Prometheus asks.

Every query is read-only and bounded: COUNT ... GROUP BY over tickets (by status, source, category) and pending
approvals, and over audit_events only a primary-key range of recent rows (AuditTally). On
PostgreSQL the scrape runs in a READ ONLY transaction with a statement timeout, so a slow database makes a scrape
fail fast (crewdesk_metrics_source_up{source="database"} 0) instead of piling up scrapes.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, column, func, literal_column, select, table, text
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.approvals.models import Approval, ApprovalStatus
from crewdesk.logging import get_logger
from crewdesk.metrics.labels import channel_label
from crewdesk.queues import queue_depths
from crewdesk.settings import Settings
from crewdesk.tickets.models import Ticket

log = get_logger(__name__)

# Only these audit columns are read: the table's other columns may change.
AUDIT = table("audit_events", column("id"), column("ticket_id"), column("run_id"), column("kind"), column("name"), column("error"), column("created_at"))
TOOL_KINDS = ("tool_call", "effect", "gate")
BREAKER_VALUES = {"closed": 0.0, "half-open": 0.5, "half_open": 0.5, "open": 1.0}
STATEMENT_TIMEOUT_MS = 5000


def tool_outcome(kind: str, name: str, failed: bool) -> tuple[str, str]:
    """(tool, outcome) of one audit row of kind tool_call, effect or gate."""
    if kind == "tool_call":
        return name, "error" if failed else "ok"
    if kind == "effect":
        return name, "effect"
    prefix, sep, tool = name.partition(":")
    return (tool, prefix) if sep else (name, "gate")


@dataclass
class AuditTally:
    """Totals of tool-call audit rows, counted incrementally by primary key.

    audit_events is append-only, but ids are not committed in id order (each ticket's chain has its own lock), so a
    row below the highest visible id may still commit. Rows up to `settled_id` are kept as running totals; every
    scrape counts the rows above it afresh. `settled_id` only moves to the highest id seen at a scrape at least
    `settle_seconds` ago (default: longer than a task may run), by which time every transaction that had taken a
    lower id has ended. A scrape therefore reads an id range holding about `settle_seconds` of appends, through the
    primary-key index, never the whole table (except the first scrapes of a process, which count from the start)."""

    settle_seconds: float = 1200.0
    settled_id: int = 0
    settled: dict[tuple[str, str], int] = field(default_factory=dict)
    marks: deque[tuple[float, int]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _count(self, db: Session, above: int, upto: int) -> dict[tuple[str, str], int]:
        failed = case((AUDIT.c.error.is_(None), 0), else_=1)
        rows = db.execute(
            select(AUDIT.c.kind, AUDIT.c.name, failed, func.count())
            .where(AUDIT.c.id > above, AUDIT.c.id <= upto, AUDIT.c.kind.in_(TOOL_KINDS))
            .group_by(AUDIT.c.kind, AUDIT.c.name, failed)
        ).all()
        counts: dict[tuple[str, str], int] = {}
        for kind, name, is_failed, count in rows:
            key = tool_outcome(kind, name, bool(is_failed))
            counts[key] = counts.get(key, 0) + int(count)
        return counts

    def advance(self, db: Session, now: float | None = None) -> dict[tuple[str, str], int]:
        now = time.monotonic() if now is None else now
        with self.lock:
            top = db.execute(select(func.coalesce(func.max(AUDIT.c.id), 0))).scalar_one()
            if top < self.settled_id:  # the table was emptied (tests) or restored: count again from the start
                self.settled_id, self.settled = 0, {}
                self.marks.clear()
            self.marks.append((now, top))
            target = self.settled_id
            while self.marks and now - self.marks[0][0] >= self.settle_seconds:
                target = max(target, self.marks.popleft()[1])
            if target > self.settled_id:
                settled = dict(self.settled)
                for key, count in self._count(db, self.settled_id, target).items():
                    settled[key] = settled.get(key, 0) + count
                self.settled, self.settled_id = settled, target
            totals = dict(self.settled)
            if top > self.settled_id:
                for key, count in self._count(db, self.settled_id, top).items():
                    totals[key] = totals.get(key, 0) + count
            return totals


def breaker_states(settings: Settings) -> dict[str, str] | None:
    """The contract with crewdesk.llm (see crewdesk/metrics/__init__.py): None when there is no breaker to read."""
    try:
        module = importlib.import_module("crewdesk.llm.breaker")
    except ModuleNotFoundError as exc:
        if exc.name in ("crewdesk.llm.breaker", "crewdesk.llm"):
            return None
        raise
    states = getattr(module, "states", None)
    if not callable(states):
        return None
    return dict(states(settings))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class DatabaseCollector(Collector):
    """Register on a CollectorRegistry; each collect() is one scrape."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        *,
        queues: Sequence[str] = (),
        redis_factory: Callable[[], object] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.queues = tuple(queues)
        self.redis_factory = redis_factory or self._default_redis
        self.clock = clock or (lambda: datetime.now(UTC))
        self.audit = AuditTally(settle_seconds=settings.task_time_limit + 300.0)
        self._redis: Any = None  # a redis.Redis, or what redis_factory gives

    def describe(self) -> Iterable[Metric]:
        return []  # nothing is queried when the collector is registered

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("crewdesk_metrics_source_up", "1 when this source answered the scrape.", labels=["source"])
        try:
            yield from self._database()
            up.add_metric(["database"], 1)
        except Exception as exc:  # noqa: BLE001 - a scrape reports the failure; it never raises into the HTTP handler
            log.warning("metrics.database_failed", error=f"{type(exc).__name__}: {exc}")
            up.add_metric(["database"], 0)
        if self.queues:
            try:
                yield self._queue_depth()
                up.add_metric(["broker"], 1)
            except Exception as exc:  # noqa: BLE001 - a scrape reports the failure
                log.warning("metrics.broker_failed", error=f"{type(exc).__name__}: {exc}")
                self._redis = None
                up.add_metric(["broker"], 0)
        try:
            states = breaker_states(self.settings)
            if states is not None:
                breaker = GaugeMetricFamily("crewdesk_llm_breaker_open", "Model circuit breaker: 1 open, 0.5 half-open, 0 closed.", labels=["provider"])
                for provider, state in sorted(states.items()):
                    breaker.add_metric([str(provider)], BREAKER_VALUES.get(str(state).lower(), 1.0))
                yield breaker
                up.add_metric(["breaker"], 1)
        except Exception as exc:  # noqa: BLE001 - a scrape reports the failure
            log.warning("metrics.breaker_failed", error=f"{type(exc).__name__}: {exc}")
            up.add_metric(["breaker"], 0)
        yield up

    # --- PostgreSQL ---------------------------------------------------------------------------------------------

    def _database(self) -> list[Metric]:
        with self.session_factory() as db, db.begin():
            if db.get_bind().dialect.name == "postgresql":
                db.execute(text("SET TRANSACTION READ ONLY"))
                db.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            category = func.coalesce(Ticket.category, literal_column("''"))
            by_status = db.execute(select(Ticket.status, Ticket.source, category, func.count()).group_by(Ticket.status, Ticket.source, category)).all()
            waiting, oldest = db.execute(select(func.count(), func.min(Approval.created_at)).where(Approval.status == ApprovalStatus.pending)).one()
            calls = self.audit.advance(db)

        tickets = GaugeMetricFamily(
            "crewdesk_tickets", "Tickets now in each status, by channel (ticket source) and category.", labels=["status", "channel", "category"]
        )
        counts: dict[tuple[str, str, str], int] = {}
        for status, source, cat, count in by_status:  # sources outside TicketSource add up under channel="other"
            labels = (str(status), channel_label(source), cat or "none")
            counts[labels] = counts.get(labels, 0) + count
        for labels, count in sorted(counts.items()):
            tickets.add_metric(list(labels), count)
        approvals = GaugeMetricFamily("crewdesk_approvals_waiting", "Approvals waiting for a person.", value=waiting)
        age = (self.clock() - _aware(oldest)).total_seconds() if oldest is not None else 0.0
        oldest_age = GaugeMetricFamily(
            "crewdesk_approvals_oldest_waiting_seconds", "Age of the oldest pending approval, seconds (0 when none).", value=max(0.0, age)
        )
        tool_calls = CounterMetricFamily("crewdesk_tool_calls", "Tool calls by outcome, from the audit trail.", labels=["tool", "outcome"])
        refusals = CounterMetricFamily("crewdesk_gate_refusals", "Tool calls the governance gate refused.", labels=["tool"])
        for (tool, outcome), count in sorted(calls.items()):
            tool_calls.add_metric([tool, outcome], count)
            if outcome == "denied":
                refusals.add_metric([tool], count)
        return [tickets, approvals, oldest_age, tool_calls, refusals]

    # --- Redis --------------------------------------------------------------------------------------------------

    def _default_redis(self):
        import redis

        if not self.settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
            raise RuntimeError(f"queue depth needs a Redis broker, not {self.settings.broker_url.split(':', 1)[0]}")
        return redis.Redis.from_url(self.settings.broker_url, socket_timeout=2, socket_connect_timeout=2)

    def _queue_depth(self) -> Metric:
        if self._redis is None:
            self._redis = self.redis_factory()
        depths = queue_depths(self._redis, self.queues)
        family = GaugeMetricFamily("crewdesk_queue_depth", "Messages waiting on each Celery queue (Redis LLEN, every priority step).", labels=["queue"])
        for queue, depth in depths.items():
            family.add_metric([queue], depth)
        return family
