"""Customer memory in the pipeline, against real PostgreSQL, real LanceDB files and the real MiniLM model, with the
scripted model: a resolved ticket is remembered (redacted, keyed by a hash), the same customer's next ticket gets that
summary in its prompt, another customer's does not, and after `forget` nobody does."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from crewdesk.llm.scripted import PlanResponder
from crewdesk.memory.base import MemoryUnavailable
from crewdesk.memory.service import customer_key, every_backend, forget
from crewdesk.store.models import StoreOrder, StoreUser
from crews.pipeline import Pipeline
from tests.helpers import RecordingFactory

PHONE = "+1 (415) 555-0134"
MEMORY_HEADER = "earlier tickets (summaries from memory"


@pytest.fixture
def memory_settings(settings, tmp_path):
    return settings.model_copy(update={"memory_dir": tmp_path / "memory", "approval_threshold_usd": -1.0})


def pending_order(db) -> tuple[str, str]:
    """(order id, the owner's e-mail) of a pending order in the demo store."""
    order = db.execute(select(StoreOrder).where(StoreOrder.status == "pending").order_by(StoreOrder.order_id)).scalars().first()
    return order.order_id, db.get(StoreUser, order.user_id).email


def run(settings, session_factory, ticket_id, responder=None):
    factory = RecordingFactory(settings, responder=responder)
    pipeline = Pipeline(settings=settings, session_factory=session_factory, llm_factory=factory)
    return pipeline.process(ticket_id), factory, pipeline


def prompts_of(factory, tier: str) -> str:
    """The prompts of the routing (cheap) or specialist (strong) agents only."""
    return json.dumps([llm.prompts for llm in factory.built if llm.tier == tier])


def test_second_ticket_from_the_same_customer_sees_the_first_ones_summary(memory_settings, store, make_ticket):
    session_factory = store
    with session_factory() as db:
        order_id, email = pending_order(db)
    plan = PlanResponder(
        triage={"category": "billing", "priority": "normal", "summary": f"<EMAIL_1> wants order {order_id} cancelled; call <PHONE_1>", "confidence": 0.9},
        plans={"billing": [("find_user_id_by_email", {"email": "<EMAIL_1>"}), ("cancel_pending_order", {"order_id": order_id, "reason": "no longer needed"})]},
        finals={"billing": {"customer_reply": f"Done, <EMAIL_1>: order {order_id} is cancelled.", "needs_human": False}},
    )
    first = make_ticket(f"Please cancel order {order_id}, I no longer need it. My email is {email}, phone {PHONE}.", customer=email, subject="cancel")
    outcome, first_factory, pipeline = run(memory_settings, session_factory, first, plan)
    assert outcome.status == "resolved"
    assert MEMORY_HEADER not in first_factory.prompts_text()  # nothing to remember yet

    key = customer_key(customer=email)
    [remembered] = pipeline.memory.recall(key, "cancel order", k=5)
    summary = remembered.interaction.summary
    assert remembered.interaction.ticket_id == first and remembered.interaction.outcome == "resolved"
    assert f"cancel_pending_order(order_id={order_id}, reason=no longer needed)" in summary  # the action a tool really performed
    assert email not in summary and "415" not in summary and "<EMAIL_1>" not in summary and "[EMAIL]" in summary and "[PHONE]" in summary
    assert remembered.interaction.customer_key == key and email not in key

    second = make_ticket("Hello again, when will the refund for my cancelled order arrive?", customer=f" {email.upper()} ")
    outcome, factory, _ = run(memory_settings, session_factory, second)
    assert outcome.status == "resolved"
    prompts = prompts_of(factory, "strong")
    assert (
        MEMORY_HEADER in prompts
        and f"ticket #{first} [billing, resolved]" in prompts
        and f"cancel_pending_order(order_id={order_id}, reason=no longer needed)" in prompts
    )
    assert MEMORY_HEADER not in prompts_of(factory, "cheap")  # routing does not need it
    assert email not in prompts

    stranger = make_ticket("When will the refund for my cancelled order arrive?", customer="someone.else@example.com")
    _, stranger_factory, _ = run(memory_settings, session_factory, stranger)
    assert MEMORY_HEADER not in stranger_factory.prompts_text()

    assert forget(backends=every_backend(settings=memory_settings), customer=email) == {"lance": 2}  # both of Noah's tickets
    assert pipeline.memory.recall(key, "cancel order refund", k=5) == []
    third = make_ticket("One more question about my refund.", customer=email)
    _, after_factory, _ = run(memory_settings, session_factory, third)
    assert MEMORY_HEADER not in after_factory.prompts_text()


def test_memory_off_stores_nothing(memory_settings, session_factory, make_ticket, tmp_path):
    settings = memory_settings.model_copy(update={"memory_backend": "off"})
    for body in ("I was charged twice, please refund.", "Still waiting for that refund."):
        outcome, factory, pipeline = run(settings, session_factory, make_ticket(body))
        assert outcome.status == "resolved" and pipeline.memory is None and MEMORY_HEADER not in factory.prompts_text()
    assert not (tmp_path / "memory").exists()


def test_a_broken_memory_never_fails_a_ticket(memory_settings, session_factory, make_ticket):
    class Down:
        backend = "weaviate"

        def recall(self, *args, **kwargs):
            raise MemoryUnavailable("Weaviate at http://weaviate:8080: connection refused")

        remember = recall

    factory = RecordingFactory(memory_settings)
    pipeline = Pipeline(settings=memory_settings, session_factory=session_factory, llm_factory=factory)
    pipeline.memory = Down()
    assert pipeline.process(make_ticket("I was charged twice, please refund.")).status == "resolved"
