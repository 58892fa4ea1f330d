"""Table: tool_effects (one row per completed write, written in the same transaction as the write)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from crewdesk.db import Base, JSONType, utcnow


class ToolEffect(Base):
    __tablename__ = "tool_effects"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True, nullable=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("crew_runs.id"), nullable=True)
    tool: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[dict] = mapped_column(JSONType)
    result: Mapped[dict | list | str | None] = mapped_column(JSONType, nullable=True)
    customer_ref: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)  # the store's id of the customer the ticket was bound to
    refund_usd: Mapped[float] = mapped_column(Float, default=0.0)  # money the write gave back (approval thresholds add these up)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
