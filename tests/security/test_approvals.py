"""Approvals by a real, different person, and every refund an approval lets through (or still waits on) counted toward
the customer's limits (issue 20).

Real PostgreSQL and the demo store; tickets go through the real pipeline and gate on the crew path, with a scripted
model that makes exactly the write the ticket asks for. Decisions go through what the faces call: the HTTP API with
real API keys, and the `crewdesk approvals` command in its own process."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections import defaultdict

import pytest
from sqlalchemy import func, select

from crewdesk.api import create_app
from crewdesk.approvals.models import Approval
from crewdesk.audit.models import AuditEvent
from crewdesk.db import transaction
from crewdesk.effects.models import ToolEffect
from crewdesk.llm.factory import LLMFactory
from crewdesk.llm.scripted import PlanResponder
from crewdesk.store.models import StoreOrder, StoreUser
from crewdesk.tickets import service as tickets
from crewdesk.tickets.schemas import TicketIn
from crews.approvals import decide, gate_factory
from crews.pipeline import Pipeline
from tests.helpers import CREWDESK, ROOT, api_client

TRIAGE = {"category": "billing", "priority": "normal", "language": "en", "sentiment": "neutral", "summary": "cancel an order", "confidence": 0.95}


def cancelling(order_id: str) -> PlanResponder:
    """A billing specialist that cancels the order the ticket names (the refund is its whole payment)."""
    final = {"customer_reply": "We have taken care of your order.", "internal_note": "", "needs_human": False, "escalation_reason": ""}
    return PlanResponder(
        triage=TRIAGE, plans={"billing": [("cancel_pending_order", {"order_id": order_id, "reason": "no longer needed"})]}, finals={"billing": final}
    )


def pending_orders(store) -> dict[str, list[tuple[str, float]]]:
    """Each customer's pending orders and the money cancelling one gives back (all its payments), smallest first."""
    by_user: dict[str, list[tuple[str, float]]] = defaultdict(list)
    with store() as db:
        for row in db.execute(select(StoreOrder).where(StoreOrder.status == "pending").order_by(StoreOrder.order_id)).scalars():
            paid = round(sum(p["amount"] for p in row.doc["payment_history"] if p["transaction_type"] == "payment"), 2)
            by_user[row.user_id].append((row.order_id, paid))
    return {user: sorted(orders, key=lambda o: o[1]) for user, orders in sorted(by_user.items())}


def email_of(store, user_id: str) -> str:
    with store() as db:
        return db.get(StoreUser, user_id).doc["email"]


def submit(store, email: str, order_id: str, submitted_by: str | None = None) -> int:
    """A ticket from the customer's address asking to cancel one order; `submitted_by` is the API key holder who sent it."""
    with transaction(store) as db:
        ticket, _ = tickets.submit(
            db=db,
            ticket_in=TicketIn(external_id=uuid.uuid4().hex[:10], source="test", customer=email, subject="Cancel", body=f"Please cancel order {order_id}."),
            submitted_by=submitted_by,
        )
        return ticket.id


def process(settings, store, ticket_id: int, order_id: str) -> str:
    return Pipeline(settings=settings, session_factory=store, llm_factory=LLMFactory(settings, responder=cancelling(order_id))).process(ticket_id).status


def approval_of(store, ticket_id: int) -> Approval:
    with store() as db:
        return db.execute(select(Approval).where(Approval.ticket_id == ticket_id)).scalar_one()


def effects_of(store, ticket_id: int) -> list[ToolEffect]:
    with store() as db:
        return list(db.execute(select(ToolEffect).where(ToolEffect.ticket_id == ticket_id)).scalars())


def refunds_on(store, order_id: str) -> int:
    with store() as db:
        return sum(1 for p in db.get(StoreOrder, order_id).doc["payment_history"] if p["transaction_type"] == "refund")


def decisions(store, ticket_id: int) -> list[tuple[str, str]]:
    """(decision, who) of every approval audit row of the ticket, in order."""
    with store() as db:
        rows = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "approval").order_by(AuditEvent.seq)).scalars()
        return [(row.name, row.actor) for row in rows]


@pytest.fixture
def crew(settings):
    """The crew path (the model picks the write), approvals above $100, a second approver above $500."""
    return settings.model_copy(update={"procedures": False, "approval_threshold_usd": 100.0, "second_approval_above_usd": 500.0})


def test_split_refunds_across_tickets_reach_the_approval_threshold_a_waiting_one_included(crew, store):
    """Three small refunds on three tickets of one customer: the first is made, the second waits for a person, and the
    third, small enough to pass beside the first alone, waits too: a refund waiting for approval is exposure."""
    user, (small, middle, large) = next((u, o[:3]) for u, o in pending_orders(store).items() if len(o) >= 3 and o[0][1] > 1 and o[1][1] + 1 < o[2][1])
    email = email_of(store, user)
    threshold = max(small[1] + middle[1], large[1]) + 1.0  # each alone is under it; small + middle too; small + large is over
    assert small[1] + large[1] > threshold
    crew = crew.model_copy(update={"approval_threshold_usd": threshold, "second_approval_above_usd": -1.0})
    one, two, three = (submit(store, email, order[0]) for order in (small, large, middle))

    assert process(crew, store, one, small[0]) == "resolved"
    assert process(crew, store, two, large[0]) == "awaiting_approval"  # small + large: split across two tickets
    assert process(crew, store, three, middle[0]) == "awaiting_approval"  # small + middle passes alone; with large waiting it does not

    assert [e.customer_ref for e in effects_of(store, one)] == [user]
    assert effects_of(store, two) == [] and effects_of(store, three) == []
    assert refunds_on(store, large[0]) == 0 and refunds_on(store, middle[0]) == 0
    waiting = approval_of(store, three)
    assert waiting.status == "pending" and "waiting for approval" in waiting.reason
    with store() as db:
        requested = db.execute(
            select(AuditEvent).where(AuditEvent.ticket_id == three, AuditEvent.name == "approval_requested:cancel_pending_order")
        ).scalar_one()
    assert requested.result["earlier"] == small[1] and requested.result["waiting"] == large[1]


def test_an_approved_refund_counts_toward_the_customers_total(crew, store):
    """A refund a person approved is the customer's, as a direct one is: a later small refund on another ticket adds to it."""
    user, (small, big) = next((u, (o[0], o[1])) for u, o in pending_orders(store).items() if 1 < o[0][1] < 90 and 110 < o[1][1] < 500)
    email = email_of(store, user)
    crew = crew.model_copy(update={"second_approval_above_usd": -1.0})  # one person decides here
    one = submit(store, email, big[0])
    assert process(crew, store, one, big[0]) == "awaiting_approval"
    resumed: list[int] = []

    decide(gates=gate_factory(crew, store), approval_id=approval_of(store, one).id, approve=True, by="alice", reason=None, resume=resumed.append)

    assert resumed == [one]
    assert [(e.customer_ref, e.refund_usd) for e in effects_of(store, one)] == [(user, big[1])]
    two = submit(store, email, small[0])
    assert process(crew, store, two, small[0]) == "awaiting_approval"  # under $100 alone; over it with the approved refund
    assert effects_of(store, two) == [] and refunds_on(store, small[0]) == 0
    assert "already refunded" in approval_of(store, two).reason


def big_order(store, above: float) -> tuple[str, str, float]:
    """(user, order, amount) of a pending order whose cancellation gives back more than `above`."""
    return next((u, order, amount) for u, orders in pending_orders(store).items() for order, amount in orders if amount > above)


def test_above_the_second_approval_amount_two_different_people_approve_over_http(crew, store):
    """The lead's key submitted the ticket; its refund is above $500. The lead is refused, Alice's approval leaves it
    waiting with nothing done, Alice again is refused, Bob's approval makes the write exactly once. Each decision,
    the refusals included, is an audit row naming who made it."""
    user, order_id, amount = big_order(store, 500.0)
    ticket_id = submit(store, email_of(store, user), order_id, submitted_by="lead")
    assert process(crew, store, ticket_id, order_id) == "awaiting_approval"
    approval_id = approval_of(store, ticket_id).id
    resumed: list[int] = []
    app = create_app(crew, session_factory=store, send=resumed.extend)
    lead, alice, bob, carol = (api_client(app, store, name=name, scopes=("approvals:decide",)) for name in ("lead", "alice", "bob", "carol"))

    own = lead.post(f"/approvals/{approval_id}/approve", json={})
    assert own.status_code == 403 and own.headers["content-type"] == "application/problem+json"
    first = alice.post(f"/approvals/{approval_id}/approve", json={"reason": "checked the order"})
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "pending" and first.json()["approved_by"] == ["alice"] and first.json()["approvals_needed"] == 2
    assert effects_of(store, ticket_id) == [] and refunds_on(store, order_id) == 0 and resumed == []
    twice = alice.post(f"/approvals/{approval_id}/approve", json={})
    assert twice.status_code == 403 and twice.headers["content-type"] == "application/problem+json" and "different person" in twice.json()["detail"]
    assert approval_of(store, ticket_id).status == "pending"

    second = bob.post(f"/approvals/{approval_id}/approve", json={})

    assert second.status_code == 200 and second.json()["status"] == "approved" and second.json()["approved_by"] == ["alice", "bob"]
    assert second.json()["decided_by"] == "bob"
    assert [(e.tool, e.customer_ref, e.refund_usd) for e in effects_of(store, ticket_id)] == [("cancel_pending_order", user, amount)]
    assert refunds_on(store, order_id) == 1 and resumed == [ticket_id]
    assert carol.post(f"/approvals/{approval_id}/approve", json={}).status_code == 409
    assert decisions(store, ticket_id) == [("refused", "lead"), ("first_approval", "alice"), ("refused", "alice"), ("approved", "bob")]


def test_the_cli_needs_two_different_names_above_the_second_approval_amount_and_a_reject_by_either_rejects(crew, store, redis_url):
    user, order_id, _amount = big_order(store, 500.0)
    ticket_id = submit(store, email_of(store, user), order_id)
    assert process(crew, store, ticket_id, order_id) == "awaiting_approval"
    approval_id = str(approval_of(store, ticket_id).id)
    env = {**os.environ, "CREWDESK_DATABASE_URL": crew.database_url, "CREWDESK_BROKER_URL": redis_url}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([CREWDESK, "approvals", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)

    first = cli("approve", approval_id, "--by", "alice")
    assert first.returncode == 0 and "1 of 2" in first.stdout, first.stdout + first.stderr
    again = cli("approve", approval_id, "--by", "alice")
    assert again.returncode == 2 and again.stderr.startswith("error:") and "different person" in again.stderr and "Traceback" not in again.stderr
    rejected = cli("reject", approval_id, "--by", "bob", "--reason", "the customer asked to keep it")
    assert rejected.returncode == 0, rejected.stderr

    assert approval_of(store, ticket_id).status == "rejected"
    assert effects_of(store, ticket_id) == [] and refunds_on(store, order_id) == 0
    with store() as db:
        assert db.execute(select(func.count()).select_from(ToolEffect)).scalar_one() == 0
    assert decisions(store, ticket_id) == [("first_approval", "alice"), ("refused", "alice"), ("rejected", "bob")]
