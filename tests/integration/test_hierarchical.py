"""The hierarchical process: a manager delegates to several specialists on one ticket, within caps."""

from __future__ import annotations

from sqlalchemy import func, select

from crewdesk.audit.models import AuditEvent
from crewdesk.effects.models import ToolEffect
from crewdesk.llm.factory import LLMFactory
from crewdesk.llm.scripted import PlanResponder
from crewdesk.runs.models import CrewRun
from crewdesk.store.models import StoreOrder, StoreUser
from crews.pipeline import Pipeline

DELEGATE = "Delegate work to coworker"
NEW_ADDRESS = {"address1": "445 Maple Drive", "address2": "Suite 394", "city": "Fort Worth", "state": "TX", "country": "USA", "zip": "76165"}


def pending_order_with_swap(db):
    """A pending order and an available sibling variant for its first item."""
    for order in db.execute(select(StoreOrder).where(StoreOrder.status == "pending").order_by(StoreOrder.order_id)).scalars():
        item = order.doc["items"][0]
        from crewdesk.store.models import StoreProduct

        product = db.get(StoreProduct, item["product_id"]).doc
        for variant_id, variant in product["variants"].items():
            if variant_id != item["item_id"] and variant["available"]:
                method = order.doc["payment_history"][0]["payment_method_id"]
                return order.doc, item["item_id"], variant_id, method
    raise AssertionError("no pending order to modify")


def test_two_specialists_collaborate_on_one_ticket(settings, store, make_ticket):
    """The customer wants a new default address (account's tool) and a different item (billing's tool)."""
    with store() as db:
        order, old_item, new_item, method = pending_order_with_swap(db)
    user_id = order["user_id"]
    plan = PlanResponder(
        triage={"category": "billing", "priority": "normal", "summary": "address and item change", "confidence": 0.9},
        plans={
            "manager": [
                (
                    DELEGATE,
                    {
                        "task": "Change the customer's default address",
                        "context": f"user {user_id}, new address {NEW_ADDRESS}",
                        "coworker": "Account Specialist",
                    },
                ),
                (
                    DELEGATE,
                    {
                        "task": "Swap the item in the pending order",
                        "context": f"order {order['order_id']}: {old_item} -> {new_item}, pay with {method}",
                        "coworker": "Billing Specialist",
                    },
                ),
            ],
            "account": [("modify_user_address", {"user_id": user_id, **NEW_ADDRESS})],
            "billing": [
                ("modify_pending_order_items", {"order_id": order["order_id"], "item_ids": [old_item], "new_item_ids": [new_item], "payment_method_id": method})
            ],
        },
        finals={
            "manager": {"customer_reply": "Your default address has been updated and the item in your order was changed.", "needs_human": False},
            "account": "The default address is updated.",
            "billing": "The item is swapped.",
        },
    )
    settings.crew_process_by_category = {"billing": "hierarchical"}
    with store() as db:
        email = db.get(StoreUser, user_id).doc["email"]  # the owner writes: the gate binds the ticket to them (tools/binding.py)
    ticket_id = make_ticket("Please move me to my new address and switch the item in my pending order.", customer=email)
    outcome = Pipeline(settings=settings, session_factory=store, llm_factory=LLMFactory(settings, responder=plan)).process(ticket_id)

    assert outcome.status == "resolved", outcome.escalation_reason
    with store() as db:
        run = db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket_id)).scalar_one()
        effects = db.execute(select(ToolEffect.tool).order_by(ToolEffect.id)).scalars().all()
        actors = {row.name: row.actor for row in db.execute(select(AuditEvent).where(AuditEvent.kind == "effect")).scalars()}
        user = db.get(StoreUser, user_id).doc
        changed = db.get(StoreOrder, order["order_id"]).doc
    assert run.process == "hierarchical"
    assert {"manager", "account", "billing"} <= set(run.models)
    assert effects == ["modify_user_address", "modify_pending_order_items"]
    assert actors == {"modify_user_address": "account", "modify_pending_order_items": "billing"}  # each through its own allow-list
    assert user["address"] == NEW_ADDRESS and changed["items"][0]["item_id"] == new_item


def test_a_looping_manager_is_capped(settings, store, make_ticket):
    forever = [(DELEGATE, {"task": "Look into it", "context": "again", "coworker": "General Support Agent"})] * 50
    plan = PlanResponder(
        triage={"category": "other", "priority": "normal", "summary": "?", "confidence": 0.9},
        plans={"manager": forever},
        finals={"general": "I looked; nothing to do."},
    )
    settings.crew_process = "hierarchical"
    ticket_id = make_ticket("Something is off with my account, please check.")
    outcome = Pipeline(settings=settings, session_factory=store, llm_factory=LLMFactory(settings, responder=plan)).process(ticket_id)

    assert outcome.status == "escalated"  # the manager never produced a valid resolution: a person takes it
    with store() as db:
        delegations = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.name == "delegations")).scalars().all()
        manager_calls = db.execute(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "llm_call", AuditEvent.actor == "Support Manager")
        ).scalar_one()
        general_runs = db.execute(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "llm_call", AuditEvent.actor == "General Support Agent")
        ).scalar_one()
    assert 1 <= general_runs <= 4  # at most max_delegations (agents/agents.yaml) ever reach a coworker
    assert manager_calls <= 2 * (8 + 2)  # max_iter 8 plus a forced final answer, for the first try and one guardrail retry
    assert not delegations or delegations[0].result["used"] <= 4
