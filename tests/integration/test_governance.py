"""The governance gate end to end on PostgreSQL: approvals, idempotent writes, RBAC, rate limits, honest replies."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crewdesk.approvals.models import Approval
from crewdesk.approvals.service import ApprovalError
from crewdesk.audit.models import AuditEvent
from crewdesk.effects.models import ToolEffect
from crewdesk.llm.factory import LLMFactory
from crewdesk.llm.scripted import PlanResponder
from crewdesk.store.models import StoreOrder, StoreUser
from crewdesk.store.operations import operations
from crewdesk.tickets.models import Ticket
from crews.approvals import decide
from crews.pipeline import Pipeline
from tools.gate import Gate, ToolDenied
from tools.registry import REGISTRY

TRIAGE = {"category": "billing", "priority": "normal", "language": "en", "sentiment": "neutral", "summary": "cancel an order", "confidence": 0.9}


def big_card_order(db) -> tuple[str, dict]:
    """A pending order over $100 paid by credit card."""
    for row in db.execute(select(StoreOrder).where(StoreOrder.status == "pending").order_by(StoreOrder.order_id)).scalars():
        payment = row.doc["payment_history"][0]
        if payment["payment_method_id"].startswith("credit_card") and payment["amount"] > 100:
            return row.order_id, row.doc
    raise AssertionError("no such order in the store")


def cancel_plan(order_id: str, email: str, reply: str) -> PlanResponder:
    return PlanResponder(
        triage=TRIAGE,
        plans={
            "billing": [
                ("find_user_id_by_email", {"email": email}),
                ("get_order_details", {"order_id": order_id}),
                ("cancel_pending_order", {"order_id": order_id, "reason": "no longer needed"}),
            ]
        },
        finals={"billing": {"customer_reply": reply, "internal_note": "", "needs_human": False, "escalation_reason": ""}},
    )


def test_refund_above_threshold_waits_then_approval_refunds_exactly_once(settings, store, make_ticket):
    with store() as db:
        order_id, order = big_card_order(db)
        email = db.execute(
            select(__import__("crewdesk.store.models", fromlist=["StoreUser"]).StoreUser.email).where(
                __import__("crewdesk.store.models", fromlist=["StoreUser"]).StoreUser.user_id == order["user_id"]
            )
        ).scalar_one()
    settings.approval_threshold_usd = 100.0
    settings.second_approval_above_usd = -1.0  # one person decides (two above an amount: tests/security/test_approvals.py)
    first = cancel_plan(order_id, email, "A team member needs to approve this cancellation; we will write again shortly.")
    pipeline = Pipeline(settings=settings, session_factory=store, llm_factory=LLMFactory(settings, responder=first))
    ticket_id = make_ticket(f"Please cancel order {order_id}, I no longer need it.", customer=email)

    outcome = pipeline.process(ticket_id)

    assert outcome.status == "awaiting_approval"
    with store() as db:
        approval = db.execute(select(Approval).where(Approval.ticket_id == ticket_id)).scalar_one()
        assert approval.status == "pending" and approval.action == "cancel_pending_order"
        assert db.get(StoreOrder, order_id).status == "pending"
        assert db.execute(select(func.count()).select_from(ToolEffect)).scalar_one() == 0
        requested = db.execute(
            select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.name == "approval_requested:cancel_pending_order")
        ).scalar_one()
        told = db.execute(
            select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "tool_call", AuditEvent.name == "cancel_pending_order")
        ).scalar_one()
    assert requested.result["approval_id"] == approval.id and requested.result["amount"] == order["payment_history"][0]["amount"]
    assert "PENDING APPROVAL" in str(told.result) and "NOT done" in str(told.result)  # what the agent was told
    assert pipeline.process(ticket_id).reused  # a redelivery while waiting changes nothing

    resumed = cancel_plan(order_id, email, "Your order has been cancelled and the refund has been issued to your card.")
    pipeline = Pipeline(settings=settings, session_factory=store, llm_factory=LLMFactory(settings, responder=resumed))
    _, result = decide(pipeline=pipeline, approval_id=approval.id, approve=True, by="alice", reason="VIP customer", resume=pipeline.process)

    assert result["status"] == "cancelled"
    with store() as db:
        ticket = db.get(Ticket, ticket_id)
        refunds = [p for p in db.get(StoreOrder, order_id).doc["payment_history"] if p["transaction_type"] == "refund"]
        effects = db.execute(select(ToolEffect)).scalars().all()
        replayed = db.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.name == "replayed:cancel_pending_order")).scalar_one()
    assert ticket.status == "resolved", ticket.status_reason
    assert len(refunds) == 1 and refunds[0]["amount"] == order["payment_history"][0]["amount"]
    assert [e.tool for e in effects] == ["cancel_pending_order"]
    assert replayed == 1  # the resumed crew asked again; the gate returned the recorded result
    with pytest.raises(ApprovalError, match="already approved"):
        decide(pipeline=pipeline, approval_id=approval.id, approve=True, by="bob", reason=None, resume=pipeline.process)


def test_rejected_approval_changes_nothing(settings, store, make_ticket):
    with store() as db:
        order_id, order = big_card_order(db)
        email = db.get(StoreUser, order["user_id"]).doc["email"]  # the order's owner writes (tools/binding.py)
    plan = cancel_plan(order_id, email, "A colleague has to approve this first.")
    pipeline = Pipeline(settings=settings, session_factory=store, llm_factory=LLMFactory(settings, responder=plan))
    ticket_id = make_ticket(f"Cancel {order_id}", customer=email)
    assert pipeline.process(ticket_id).status == "awaiting_approval"
    with store() as db:
        approval_id = db.execute(select(Approval.id).where(Approval.ticket_id == ticket_id)).scalar_one()
    after = PlanResponder(
        triage=TRIAGE, plans={}, finals={"billing": {"customer_reply": "We could not cancel this order; a colleague will explain why.", "needs_human": False}}
    )
    pipeline = Pipeline(settings=settings, session_factory=store, llm_factory=LLMFactory(settings, responder=after))
    decide(pipeline=pipeline, approval_id=approval_id, approve=False, by="alice", reason="fraud check", resume=pipeline.process)
    with store() as db:
        assert db.get(StoreOrder, order_id).doc == order
        assert db.get(Ticket, ticket_id).status == "resolved"
        assert db.execute(select(func.count()).select_from(ToolEffect)).scalar_one() == 0


def test_a_role_outside_its_allow_list_is_refused_and_audited(settings, store, make_ticket):
    ticket_id = make_ticket("hello")
    pipeline = Pipeline(settings=settings, session_factory=store, llm_factory=LLMFactory(settings))
    gate = pipeline.gate(ticket_id=ticket_id, run_id=None)
    tool = REGISTRY["cancel_pending_order"](gate=gate, role="technical")
    answer = tool.run(order_id="#W0000000", reason="no longer needed")
    assert answer.startswith("DENIED: role 'technical' is not allowed to use tool 'cancel_pending_order'")
    with store() as db:
        row = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "gate")).scalar_one()
    assert row.name == "denied:cancel_pending_order" and row.actor == "technical" and row.arguments["order_id"] == "#W0000000"


def test_rate_limit_stops_a_runaway_agent(settings, store, make_ticket):
    ticket_id = make_ticket("hello")
    gate = Gate(session_factory=store, ticket_id=ticket_id, run_id=None, permissions={"billing": frozenset({"calculate"})}, max_calls_per_ticket=3)
    for _ in range(3):
        assert gate.run(role="billing", operation=operations()["calculate"], arguments={"expression": "1+1"}) == "2.0"
    with pytest.raises(ToolDenied, match="limit reached"):
        gate.run(role="billing", operation=operations()["calculate"], arguments={"expression": "1+1"})


def test_a_reply_claiming_an_action_no_tool_did_is_rejected(settings, store, make_ticket):
    liar = PlanResponder(
        triage=TRIAGE, plans={}, finals={"billing": {"customer_reply": "Good news: I have refunded your order in full.", "needs_human": False}}
    )
    pipeline = Pipeline(settings=settings, session_factory=store, llm_factory=LLMFactory(settings, responder=liar))
    ticket_id = make_ticket("Refund my last order please.")
    outcome = pipeline.process(ticket_id)
    assert outcome.status == "escalated" and "no valid resolution" in outcome.escalation_reason
    with store() as db:
        guard = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.name == "llm_guardrail_completed")).scalars().all()
        replies = [m.body for m in db.get(Ticket, ticket_id).messages if m.direction == "outbound"]
    assert any("no tool performed" in (row.error or "") for row in guard)
    assert not any("refunded" in reply for reply in replies)
