"""Liveness and Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.api.auth import MetricsReader
from crewdesk.api.deps import ServicesDep
from crewdesk.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

router = APIRouter()


class Health(BaseModel):
    status: Literal["ok"]


def metrics_registry(factory: sessionmaker[Session], settings: Settings) -> CollectorRegistry:
    """A registry of this app's own: the database/broker collector and this process's CPU and memory."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    from crewdesk.metrics.collector import DatabaseCollector
    from crewdesk.queues import Queue

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(factory, settings, queues=[q.value for q in Queue]))
    ProcessCollector(registry=registry)
    return registry


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    return Health(status="ok")


@router.get("/metrics", include_in_schema=False)
def metrics(services: ServicesDep, caller: MetricsReader) -> Response:
    """Prometheus text format (scraped with a metrics:read key as its bearer token): tickets, approvals, tool calls, queue depth, breaker state, read at scrape time
    (crewdesk/metrics/collector.py)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(services.metrics_registry), media_type=CONTENT_TYPE_LATEST)
