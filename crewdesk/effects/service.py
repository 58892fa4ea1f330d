"""Look up and record completed writes by idempotency key."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crewdesk.effects.models import ToolEffect


def find(*, db: Session, idempotency_key: str) -> ToolEffect | None:
    return db.execute(select(ToolEffect).where(ToolEffect.idempotency_key == idempotency_key)).scalar_one_or_none()


def record(*, db: Session, idempotency_key: str, ticket_id: int | None, run_id: int | None, tool: str, arguments: dict, result) -> ToolEffect:
    effect = ToolEffect(idempotency_key=idempotency_key, ticket_id=ticket_id, run_id=run_id, tool=tool, arguments=arguments, result=result)
    db.add(effect)
    db.flush()
    return effect


def for_ticket(*, db: Session, ticket_id: int) -> list[ToolEffect]:
    return list(db.execute(select(ToolEffect).where(ToolEffect.ticket_id == ticket_id).order_by(ToolEffect.id)).scalars())
