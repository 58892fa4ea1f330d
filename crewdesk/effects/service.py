"""Look up and record completed writes by idempotency key."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from crewdesk.effects.models import ToolEffect


def find(*, db: Session, idempotency_key: str) -> ToolEffect | None:
    return db.execute(select(ToolEffect).where(ToolEffect.idempotency_key == idempotency_key)).scalar_one_or_none()


def record(
    *,
    db: Session,
    idempotency_key: str,
    ticket_id: int | None,
    run_id: int | None,
    tool: str,
    arguments: dict,
    result,
    customer_ref: str | None = None,
    refund_usd: float = 0.0,
) -> ToolEffect:
    effect = ToolEffect(
        idempotency_key=idempotency_key,
        ticket_id=ticket_id,
        run_id=run_id,
        tool=tool,
        arguments=arguments,
        result=result,
        customer_ref=customer_ref,
        refund_usd=refund_usd,
    )
    db.add(effect)
    db.flush()
    return effect


def for_ticket(*, db: Session, ticket_id: int) -> list[ToolEffect]:
    return list(db.execute(select(ToolEffect).where(ToolEffect.ticket_id == ticket_id).order_by(ToolEffect.id)).scalars())


def refunded(*, db: Session, ticket_id: int, customer_ref: str | None, within: timedelta) -> float:
    """Money already given back on this ticket, or to this customer within `within` (a refund split into small ones,
    on one ticket or across several, still adds up to one that needs approval)."""
    from crewdesk.db import utcnow

    scope = ToolEffect.ticket_id == ticket_id
    if customer_ref:
        scope = or_(scope, (ToolEffect.customer_ref == customer_ref) & (ToolEffect.created_at > utcnow() - within))
    return float(db.execute(select(func.coalesce(func.sum(ToolEffect.refund_usd), 0.0)).where(scope)).scalar_one())


def refunds_of(*, db: Session, customer_ref: str, limit: int = 10) -> list[ToolEffect]:
    """The customer's latest writes that gave money back, newest first (shown beside an approval in the console)."""
    stmt = select(ToolEffect).where(ToolEffect.customer_ref == customer_ref, ToolEffect.refund_usd > 0).order_by(ToolEffect.id.desc()).limit(limit)
    return list(db.execute(stmt).scalars())
