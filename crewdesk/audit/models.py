"""Tables:
- audit_events: append-only (on PostgreSQL a trigger refuses UPDATE and DELETE), hash-chained per ticket (`chain`, `seq`);
- audit_chains: one row per chain, its last hash and row count. Appending locks only that ticket's row, so concurrent
  tickets never wait on each other;
- audit_seals: the global log, one row per finished run, each sealing its ticket chain's head and chained to the seal
  before it, so a chain deleted whole (rows and head) is still found;
- audit_seal_head: the seal log's last hash and count (serialises seals: one short lock per run, not per row)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crewdesk.db import Base, JSONType, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("hash", name="uq_audit_events_hash"), Index("ix_audit_events_chain_seq", "chain", "seq", unique=True))

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True, nullable=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("crew_runs.id"), index=True, nullable=True)
    chain: Mapped[int] = mapped_column(Integer)  # the ticket id, or 0 for rows of no ticket
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within the chain
    kind: Mapped[str] = mapped_column(String(32))  # llm_call | tool_call | gate | effect | approval | status | reply | ...
    name: Mapped[str] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(128), default="")
    arguments: Mapped[dict | list | str | None] = mapped_column(JSONType, nullable=True)
    result: Mapped[dict | list | str | None] = mapped_column(JSONType, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChain(Base):
    __tablename__ = "audit_chains"

    chain: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_hash: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer)


class AuditSeal(Base):
    __tablename__ = "audit_seals"

    id: Mapped[int] = mapped_column(primary_key=True)
    chain: Mapped[int] = mapped_column(Integer, index=True)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    count: Mapped[int] = mapped_column(Integer)  # the chain's row count when sealed
    chain_hash: Mapped[str] = mapped_column(String(64))  # the hash of that row
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditSealHead(Base):
    __tablename__ = "audit_seal_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_hash: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer)
