"""The reconciler on real PostgreSQL and Redis: which tickets it puts back on the queue, and which it leaves alone."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from crewdesk.approvals import service as approvals
from crewdesk.audit.models import AuditEvent
from crewdesk.db import transaction, utcnow
from crewdesk.tickets.models import Ticket
from tests.helpers import enqueue
from workers.reconcile import broker_ticket_ids, reconcile


def set_state(session_factory, ticket_id: int, status: str, idle: timedelta) -> None:
    with transaction(session_factory) as db:
        db.execute(update(Ticket).where(Ticket.id == ticket_id).values(status=status, updated_at=utcnow() - idle))


def test_stalled_tickets_the_broker_lost_go_back_once(settings, session_factory, make_ticket, redis_url):
    settings.broker_url = redis_url
    long, short = timedelta(minutes=20), timedelta(seconds=5)
    names = ["lost_queued", "held_queued", "lost_running", "waiting_person", "decided_not_resumed", "resolved", "fresh", "received"]
    ids = {name: make_ticket(f"ticket {name}") for name in names}
    for name, status, idle in [
        ("lost_queued", "queued", long),
        ("held_queued", "queued", long),
        ("lost_running", "triaging", long),
        ("waiting_person", "awaiting_approval", long),
        ("decided_not_resumed", "awaiting_approval", long),
        ("resolved", "resolved", long),
        ("fresh", "queued", short),
        ("received", "received", long),
    ]:
        set_state(session_factory, ids[name], status, idle)
    with transaction(session_factory) as db:
        for name in ("waiting_person", "decided_not_resumed"):
            approvals.request(
                db=db,
                ticket_id=ids[name],
                run_id=None,
                action="cancel_pending_order",
                arguments={"order_id": "#W1"},
                idempotency_key=f"k-{name}",
                requested_by="billing",
                reason="test",
            )
    with transaction(session_factory) as db:
        pending = approvals.pending_for(db=db, ticket_id=ids["decided_not_resumed"])
        approvals.decide(db=db, approval_id=pending[0].id, approve=False, by="alice", reason="no")
    enqueue(settings, ids["held_queued"])  # a real message in the Redis queue: that ticket is not lost
    set_state(session_factory, ids["held_queued"], "queued", long)

    held = broker_ticket_ids(redis_url, "tickets")
    sent: list[int] = []
    report = reconcile(session_factory=session_factory, idle_for=timedelta(minutes=5), in_broker=held, enqueue=sent.append)

    assert held == {ids["held_queued"]}
    expected = {ids["lost_queued"], ids["lost_running"], ids["decided_not_resumed"], ids["received"]}
    assert set(sent) == set(report.requeued) == expected and len(sent) == 4
    with session_factory() as db:
        rows = db.execute(select(AuditEvent.ticket_id, AuditEvent.actor, AuditEvent.result).where(AuditEvent.name == "requeued")).all()
        assert db.get(Ticket, ids["received"]).status == "queued"
    assert {r.ticket_id for r in rows} == expected and {r.actor for r in rows} == {"reconciler"}
    assert all(r.result["idle_seconds"] >= 20 * 60 - 5 for r in rows)

    again = reconcile(session_factory=session_factory, idle_for=timedelta(minutes=5), in_broker=broker_ticket_ids(redis_url, "tickets"), enqueue=sent.append)
    assert again.requeued == [] and len(sent) == 4  # moved now: left alone for another bound


def test_a_broker_that_refuses_leaves_the_ticket_for_the_next_sweep(session_factory, make_ticket):
    ticket_id = make_ticket("lost")
    set_state(session_factory, ticket_id, "queued", timedelta(hours=1))

    def down(_ticket_id):
        raise ConnectionError("broker down")

    try:
        reconcile(session_factory=session_factory, idle_for=timedelta(minutes=5), in_broker=None, enqueue=down)
    except ConnectionError:
        pass
    sent: list[int] = []
    report = reconcile(session_factory=session_factory, idle_for=timedelta(minutes=5), in_broker=None, enqueue=sent.append)
    assert sent == [ticket_id] == report.requeued
