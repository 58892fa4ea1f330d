"""CrewAI's model and tool calls become audit_events rows, through the event bus (not step_callback). Lifecycle events
(crew, task, agent and flow started or completed, memory and knowledge bookkeeping) are noise beside them and are not
kept; failures among them are.

LLM calls are written once, on completion or failure, with the duration measured from their start event.
The ticket and run come from the LLM instance (built per ticket) or from a contextvar the pipeline sets;
the bus runs sync handlers in a thread pool under a copy of the emitting context, so the contextvar arrives.
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
import pkgutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import crewai.events.types as event_types
from crewai.events.base_events import BaseEvent
from crewai.events.event_bus import crewai_event_bus
from crewai.events.types.llm_events import (
    LLMCallCompletedEvent,
    LLMCallFailedEvent,
    LLMCallStartedEvent,
    LLMStreamChunkEvent,
    LLMThinkingChunkEvent,
)
from crewai.events.types.tool_usage_events import (
    ToolUsageErrorEvent,
    ToolUsageFinishedEvent,
    ToolUsageStartedEvent,
)
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.audit import service as audit
from crewdesk.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class RunContext:
    ticket_id: int
    run_id: int


current_run: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar("crewdesk_current_run", default=None)

_SKIP = {LLMStreamChunkEvent, LLMThinkingChunkEvent, LLMCallStartedEvent, ToolUsageStartedEvent}


def _all_event_types() -> list[type[BaseEvent]]:
    found: set[type[BaseEvent]] = set()
    for info in pkgutil.iter_modules(event_types.__path__):
        module = importlib.import_module(f"{event_types.__name__}.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseEvent) and obj is not BaseEvent and "type" in obj.model_fields and obj.model_fields["type"].default:
                found.add(obj)
    return sorted(found, key=lambda cls: cls.__name__)


def _plain(value: object) -> object:
    """JSON-able values as they are; live objects (agents, tasks, crews) by their name or id."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    for attr in ("role", "name", "id"):
        named = getattr(value, attr, None)
        if isinstance(named, (str, int)) or (named is not None and attr == "id"):
            return f"{type(value).__name__}:{named}"
    return type(value).__name__


class AuditSink:
    """Holds the session factory; one per process, swapped by install()."""

    def __init__(self) -> None:
        self.session_factory: sessionmaker[Session] | None = None
        self._llm_started: dict[str, datetime] = {}  # call id -> its started event's timestamp
        self._lock = threading.Lock()
        self.failures = 0
        self._failed_runs: dict[int, list[str]] = {}

    def _where(self, source: object) -> RunContext | None:
        run_id = getattr(source, "run_id", None)
        ticket_id = getattr(source, "ticket_id", None)
        if isinstance(run_id, int) and isinstance(ticket_id, int):
            return RunContext(ticket_id, run_id)
        return current_run.get()

    def _write(self, source: object, **fields: object) -> None:
        where = self._where(source)
        if self.session_factory is None or where is None:
            return  # events outside a ticket run (e.g. a warm-up) are not ours to audit
        try:
            with self.session_factory() as db, db.begin():
                audit.record(db=db, ticket_id=where.ticket_id, run_id=where.run_id, **fields)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - raised from the bus's thread, it would be lost: kept for the run, which then fails and retries
            with self._lock:
                self.failures += 1
                self._failed_runs.setdefault(where.run_id, []).append(f"{fields.get('kind')} {fields.get('name')}: {type(exc).__name__}: {exc}")
            log.error("audit.write_failed", run_id=where.run_id, error=f"{type(exc).__name__}: {exc}")

    def take_failures(self, run_id: int) -> list[str]:
        with self._lock:
            return self._failed_runs.pop(run_id, [])

    def on_llm_started(self, source: object, event: LLMCallStartedEvent) -> None:
        with self._lock:
            self._llm_started[event.call_id] = event.timestamp

    def _llm_duration(self, source: object, event: BaseEvent) -> float | None:
        call_id = getattr(event, "call_id", "")
        with self._lock:
            started = self._llm_started.pop(call_id, None)
        measured = source.pop_call_duration_ms(call_id) if hasattr(source, "pop_call_duration_ms") else None
        if measured is not None:
            return measured
        return None if started is None else (event.timestamp - started).total_seconds() * 1000

    def on_llm_completed(self, source: object, event: LLMCallCompletedEvent) -> None:
        self._write(
            source,
            kind="llm_call",
            name=event.model or "llm",
            actor=event.agent_role or "",
            arguments={"messages": event.messages, "task": event.task_name},
            result={"response": event.response, "usage": event.usage},
            duration_ms=self._llm_duration(source, event),
            at=event.timestamp,
        )

    def on_llm_failed(self, source: object, event: LLMCallFailedEvent) -> None:
        self._write(
            source,
            kind="llm_call",
            name=event.model or "llm",
            actor=event.agent_role or "",
            arguments={"task": event.task_name},
            duration_ms=self._llm_duration(source, event),
            error=event.error,
            at=event.timestamp,
        )

    def on_tool_finished(self, source: object, event: ToolUsageFinishedEvent) -> None:
        duration = (event.finished_at - event.started_at).total_seconds() * 1000
        self._write(
            source,
            kind="tool_call",
            name=event.tool_name,
            actor=event.agent_role or "",
            arguments=event.tool_args,
            result=event.output,
            duration_ms=duration,
            error=str(event.failure) if event.failure else None,
            at=event.timestamp,
        )

    def on_tool_error(self, source: object, event: ToolUsageErrorEvent) -> None:
        self._write(
            source, kind="tool_call", name=event.tool_name, actor=event.agent_role or "", arguments=event.tool_args, error=str(event.error), at=event.timestamp
        )

    def on_other(self, source: object, event: BaseEvent) -> None:
        if not _kept(event.type):  # registered for kept types only; a subclass of one is filtered here
            return
        kind = event.type.split("_", 1)[0]
        detail = {}
        for key in type(event).model_fields:
            if key in ("timestamp", "type", "fingerprint_metadata"):
                continue
            value = _plain(getattr(event, key, None))
            if value not in (None, "", [], {}):
                detail[key] = value
        error = detail.pop("error", None)
        self._write(source, kind=kind, name=event.type, actor=event.agent_role or "", arguments=detail, error=str(error) if error else None, at=event.timestamp)


def _kept(name: str) -> bool:
    """Kept among the lifecycle events: what went wrong (a task, agent, crew or flow that failed or errored), and the
    guardrails' verdicts on an answer (decisions: a reply refused for claiming what no tool did)."""
    return name.endswith(("_failed", "_error")) or "error" in name.split("_") or ("guardrail" in name and not name.endswith("_started"))


def take_failures(run_id: int) -> list[str]:
    """The audit rows of `run_id` that could not be written (after flush())."""
    return _sink.take_failures(run_id)


_sink = AuditSink()
_installed = False
_install_lock = threading.Lock()


def install(session_factory: sessionmaker[Session]) -> AuditSink:
    """Register handlers on the global bus once per process; later calls only swap the database."""
    global _installed
    with _install_lock:
        _sink.session_factory = session_factory
        with _sink._lock:
            _sink._failed_runs.clear()  # failures belong to the database they were written for
        if _installed:
            return _sink
        specific: dict[type[BaseEvent], Callable[[object, Any], None]] = {
            LLMCallStartedEvent: _sink.on_llm_started,
            LLMCallCompletedEvent: _sink.on_llm_completed,
            LLMCallFailedEvent: _sink.on_llm_failed,
            ToolUsageFinishedEvent: _sink.on_tool_finished,
            ToolUsageErrorEvent: _sink.on_tool_error,
        }
        for event_type, handler in specific.items():
            crewai_event_bus.on(event_type)(handler)
        for event_type in _all_event_types():
            if event_type in specific or event_type in _SKIP or not _kept(str(event_type.model_fields["type"].default)):
                continue
            crewai_event_bus.on(event_type)(_sink.on_other)
        _installed = True
    return _sink


def flush(timeout: float = 30.0) -> bool:
    """Wait for queued handlers so a run's audit rows are in before the run is closed."""
    return crewai_event_bus.flush(timeout=timeout)
