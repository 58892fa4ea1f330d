"""Record every inbound item once per channel: de-duplication for redelivered webhooks and re-fetched mail,
and the record of what became of each item (accepted, ignored or rejected, with the reason)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crewdesk.db import utcnow
from crewdesk.inbound.models import InboundEvent, InboundStatus

ACCEPTED, IGNORED, REJECTED = InboundStatus.accepted, InboundStatus.ignored, InboundStatus.rejected


def find(*, db: Session, channel: str, external_id: str) -> InboundEvent | None:
    return db.execute(select(InboundEvent).where(InboundEvent.channel == channel, InboundEvent.external_id == external_id)).scalar_one_or_none()


def claim(*, db: Session, channel: str, external_id: str, kind: str = "", detail: dict | None = None) -> tuple[InboundEvent, bool]:
    """Insert the event, or find it if it was seen before. Returns (event, first_time). A repeat bumps seen_count,
    so a replayed delivery leaves a trace but no second effect. Call it in the same transaction as the effect."""
    external_id = external_id[:512]
    existing = find(db=db, channel=channel, external_id=external_id)
    if existing is None:
        event = InboundEvent(channel=channel, external_id=external_id, kind=kind[:64], detail=detail)
        try:
            with db.begin_nested():
                db.add(event)
                db.flush()
            return event, True
        except IntegrityError:  # a concurrent delivery of the same item won
            existing = find(db=db, channel=channel, external_id=external_id)
            if existing is None:
                raise
    existing.seen_count += 1
    existing.last_seen_at = utcnow()
    return existing, False


def settle(
    event: InboundEvent, *, status: InboundStatus, reason: str | None = None, ticket_id: int | None = None, message_id: int | None = None
) -> InboundEvent:
    event.status, event.reason = status, reason
    if ticket_id is not None:
        event.ticket_id = ticket_id
    if message_id is not None:
        event.message_id = message_id
    return event


def counts(*, db: Session, channel: str) -> dict[str, int]:
    from sqlalchemy import func

    rows = db.execute(select(InboundEvent.status, func.count()).where(InboundEvent.channel == channel).group_by(InboundEvent.status)).all()
    return dict(rows)
