"""Table: crew_runs."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crewdesk.db import Base, EnumText, JSONType, utcnow


class RunStatus(StrEnum):
    running = "running"
    completed = "completed"
    interrupted = "interrupted"  # its worker stopped before the run finished; the ticket's next run marks it
    error = "error"


class CrewRun(Base):
    __tablename__ = "crew_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    process: Mapped[str] = mapped_column(String(32), default="sequential")
    models: Mapped[dict] = mapped_column(JSONType, default=dict)
    status: Mapped[RunStatus] = mapped_column(EnumText(RunStatus, 16), default=RunStatus.running)
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    tokens_cached: Mapped[int] = mapped_column(Integer, default=0)  # of tokens_in, read from the server's prompt cache
    llm_calls: Mapped[int] = mapped_column(Integer, default=0)
    llm_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    celery_task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
