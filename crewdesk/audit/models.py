"""Tables: audit_events (append-only, hash-chained; on PostgreSQL a trigger refuses UPDATE and DELETE)
and audit_chain_head (one row: the last hash and the row count, which also serialises appends)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crewdesk.db import Base, JSONType, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("hash", name="uq_audit_events_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True, nullable=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("crew_runs.id"), index=True, nullable=True)
    kind: Mapped[str] = mapped_column(String(32))  # llm_call | tool_call | crew | task | agent | status | system
    name: Mapped[str] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(128), default="")
    arguments: Mapped[dict | list | str | None] = mapped_column(JSONType, nullable=True)
    result: Mapped[dict | list | str | None] = mapped_column(JSONType, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_hash: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer)
