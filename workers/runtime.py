"""Per-process state for worker children: engine, pipeline, model client. Built in worker_process_init."""

from __future__ import annotations

import os
from dataclasses import dataclass

from celery import signals

from crewdesk.connectors.base import ReplyChannel
from crewdesk.db import make_engine, make_session_factory
from crewdesk.delivery.channels import reply_channels
from crewdesk.llm.factory import LLMFactory
from crewdesk.logging import configure_logging, get_logger
from crewdesk.settings import Settings, quiet_crewai_env
from crews.pipeline import Pipeline
from workers.app import configured_settings

log = get_logger(__name__)


@dataclass
class Runtime:
    settings: Settings
    pipeline: Pipeline
    channels: dict[str, ReplyChannel]


_runtime: Runtime | None = None
POOL_SIZE = 4


def build_runtime(settings: Settings) -> Runtime:
    quiet_crewai_env(settings)
    # A ticket holds up to four connections at once: its advisory lock, the pipeline's session, the audit listener's
    # (CrewAI's event thread) and a tool's through the gate. A smaller pool opens and closes one per ticket.
    engine = (
        make_engine(settings.database_url, pool_size=POOL_SIZE, max_overflow=4)
        if not settings.database_url.startswith("sqlite")
        else make_engine(settings.database_url)
    )
    factory = LLMFactory(settings)
    pipeline = Pipeline(settings=settings, session_factory=make_session_factory(engine), llm_factory=factory)
    factory.warm()
    return Runtime(settings=settings, pipeline=pipeline, channels=reply_channels(settings))


def runtime() -> Runtime:
    """The child's runtime; built lazily for pools without process init (solo, threads)."""
    global _runtime
    if _runtime is None:
        settings = configured_settings()
        _runtime = build_runtime(settings)
    return _runtime


@signals.worker_init.connect
def _preload_parent(**_: object) -> None:
    """In the parent, once, before the pool forks: import the PII recognizers (presidio pulls in spaCy, transformers and
    torch: 10 to 30 s on a busy 2-core host). Imports only, no threads and no model: every child inherits them. Left to
    the first ticket of each child, that import ran inside the ticket's time limit, and on a loaded host a fresh child (a
    new worker, or one replacing a killed child) hit the soft limit and failed its first ticket; in worker_process_init it
    would outlast the pool's wait for the child's UP message (worker_proc_alive_timeout) and the child would be killed."""
    settings = configured_settings()
    if settings.pii_redaction:
        from crewdesk import pii

        pii.find("preload")


@signals.worker_process_init.connect
def _init_child(**_: object) -> None:
    # Runs in each forked child: CrewAI's event bus threads and the model client are created here,
    # never in the parent, whose threads would not survive the fork.
    global _runtime
    settings = configured_settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    _runtime = build_runtime(settings)
    log.info("worker.child_ready", pid=os.getpid(), provider=settings.llm_provider.value)


@signals.worker_process_shutdown.connect
def _shutdown_child(**_: object) -> None:
    from crews import audit_listener

    audit_listener.flush(timeout=10)
