"""What the routes share, built once by create_app and kept on app.state; routes take it as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.api.keycache import KeyCache
from crewdesk.auth.oidc import TokenVerifier
from crewdesk.intake.enqueue import Enqueuer
from crewdesk.intake.jira_webhook import RefusalLimiter
from crewdesk.settings import Settings
from tools.gate import GateFactory

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


@dataclass(frozen=True)
class Services:
    settings: Settings
    session_factory: sessionmaker[Session]
    enqueuer: Enqueuer  # the one way a ticket reaches the queue (crewdesk/intake/enqueue.py)
    gates: GateFactory  # a decided approval's write runs through its ticket's gate (crews/approvals.py)
    refusals: RefusalLimiter  # refused webhook deliveries recorded per address: per process, as each app keeps its own
    metrics_registry: CollectorRegistry  # this app's own (health.metrics_registry)
    keys: KeyCache  # API keys verified lately (crewdesk/api/auth.py)
    tokens: TokenVerifier | None = None  # OIDC bearer tokens, when an issuer is configured (crewdesk/auth/oidc.py)


def services(request: Request) -> Services:
    return request.app.state.services


def db(request: Request) -> Iterator[Session]:
    """A session for a read; writes open their own transaction."""
    with services(request).session_factory() as session:
        yield session


ServicesDep = Annotated[Services, Depends(services)]
DbSession = Annotated[Session, Depends(db)]
