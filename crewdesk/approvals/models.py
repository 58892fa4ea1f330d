"""Table: approvals."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Float, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crewdesk.db import Base, EnumText, JSONType, utcnow


class ApprovalStatus(StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class Approval(Base):
    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("crew_runs.id", ondelete="SET NULL"), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[dict] = mapped_column(JSONType, default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[ApprovalStatus] = mapped_column(EnumText(ApprovalStatus, 16), default=ApprovalStatus.pending)
    requested_by: Mapped[str] = mapped_column(String(128), default="")
    customer_ref: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)  # the store's id of the ticket's bound customer
    amount_usd: Mapped[float] = mapped_column(Float, default=0.0)  # money the write would give back (waiting refunds count as exposure)
    approvals_needed: Mapped[int] = mapped_column(default=1)  # 2 when the refund brings the total above the second-approval amount
    first_approved_by: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the first of two approvers, while it waits for the second
    first_approved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
