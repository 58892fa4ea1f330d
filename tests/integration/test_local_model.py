"""End to end on the real embedded model: `crewdesk worker` starts llama.cpp with the packaged
Qwen2.5-Coder-1.5B GGUF, a Celery child runs the crew on one ticket, results land in PostgreSQL, and the
worker stops the model server when it exits. Slow (about a minute on 2 cores)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from sqlalchemy import func, select

from crewdesk.audit.models import AuditEvent
from crewdesk.llm.local import MODEL_SHA256, ensure_model, sha256_of
from crewdesk.runs.models import CrewRun
from crewdesk.tickets.models import Ticket
from tests.helpers import enqueue, terminal, wait_for

pytestmark = pytest.mark.local_model


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = ensure_model(tmp_path_factory.mktemp("models"))
    assert sha256_of(path) == MODEL_SHA256
    return path


def test_reassembly_is_verified_and_reused(model_path):
    stamp = model_path.stat().st_mtime_ns
    assert ensure_model(model_path.parent) == model_path
    assert model_path.stat().st_mtime_ns == stamp  # verified once, not rebuilt


def test_one_ticket_end_to_end_on_the_local_model(start_worker, store, settings, make_ticket, model_path, tmp_path):
    """Production's path for a known request: the router, the procedure flow and one constrained decision of the real
    model (the customer describes the items instead of naming them, so code cannot settle it), the write through the
    gate, the reply."""
    port = free_port()
    start_worker(
        CREWDESK_LLM_PROVIDER="local",
        CREWDESK_LOCAL_PORT=str(port),
        CREWDESK_LOCAL_MODEL_PATH=str(model_path),
        CREWDESK_LOCAL_THREADS="2",
        CREWDESK_PROCEDURES="true",
        CREWDESK_APPROVAL_THRESHOLD_USD="-1",
    )
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 200
    ticket_id = make_ticket(
        "Hello, please take back the things from my delivered order that are not footwear, I want a refund. Thanks, Mason",
        customer="mason.li4862@example.com",
        subject="Returns",
    )
    enqueue(settings, ticket_id)
    ticket = wait_for(store, terminal(ticket_id), timeout=600, what="the local model to finish the ticket")
    assert ticket.status in ("resolved", "escalated", "waiting_on_customer"), ticket.status_reason  # waiting: the model's reading, put to the customer
    with store() as db:
        run = db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket_id, CrewRun.status == "completed")).scalar_one()
        llm_rows = db.execute(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.run_id == run.id, AuditEvent.kind == "llm_call", AuditEvent.error.is_(None))
        ).scalar_one()
        decided = db.execute(select(AuditEvent).where(AuditEvent.run_id == run.id, AuditEvent.kind == "procedure")).scalar_one()
        reply = db.get(Ticket, ticket_id).resolution["customer_reply"]
    assert run.process == "procedure" and set(run.models.values()) == {"qwen2.5-coder-1.5b-instruct-q4_k_m"}
    assert run.llm_calls == llm_rows >= 1 and run.tokens_in > 100 and run.tokens_out > 3 and run.llm_seconds > 0
    # whatever the model chose, it could only choose among Mason's items, and the reply states what was done
    assert decided.result["customer"] == "the sender's e-mail"
    assert reply.startswith("Hello,") and ("#W8998368" in reply or ticket.status == "escalated")  # done, or the items to confirm, by their order


def test_worker_exit_stops_the_model_server(start_worker, model_path):
    port = free_port()
    worker = start_worker(CREWDESK_LLM_PROVIDER="local", CREWDESK_LOCAL_PORT=str(port), CREWDESK_LOCAL_MODEL_PATH=str(model_path))
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 200
    worker.stop()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
        except httpx.HTTPError:
            return
        time.sleep(0.5)
    pytest.fail("llama.cpp server still answers after the worker stopped")


def test_decisions_on_the_real_model_fit_their_schema_and_reuse_the_cached_prefix(model_path, tmp_path):
    """llama-server decodes against the schema: whatever the 1.5B model 'wants', only an offered value can come out.
    The second call shares the first one's instructions, so the server reports them as cached."""
    from crewdesk.llm.factory import LLMFactory
    from crewdesk.llm.local import LocalModelServer
    from crewdesk.settings import load_settings

    port = free_port()
    with LocalModelServer(
        model_path=model_path, host="127.0.0.1", port=port, n_ctx=2048, threads=2, start_timeout=120, log_path=tmp_path / "llama-server.log", parallel=1
    ):
        llm = LLMFactory(load_settings(llm_provider="local", local_port=port)).build(tier="cheap")
        rules = (
            "You route tickets of an online store. Pick the customer's intent: return_items (send back delivered items), "
            "cancel_order (cancel a pending order), technical_issue (errors, crashes). " * 4
        )
        schema = {
            "type": "object",
            "properties": {"intent": {"enum": ["return_items", "cancel_order", "technical_issue"]}},
            "required": ["intent"],
            "additionalProperties": False,
        }
        first = llm.decide(
            [{"role": "system", "content": rules}, {"role": "user", "content": "Please cancel order 12, I ordered it by mistake."}], schema, name="route"
        )
        second = llm.decide(
            [{"role": "system", "content": rules}, {"role": "user", "content": "The app crashes with error 500 when I log in."}], schema, name="route"
        )

        # A ReAct step offered two tools can name only those two (or answer).
        class Offered:
            def __init__(self, name):
                self.name, self.args_schema = name, None

        from crewdesk.llm import react

        llm.constrain_react = True
        llm.react_schema = react.step_schema([Offered("find_user_id_by_email"), Offered("get_order_details")], None)
        step = llm.call(
            [
                {"role": "system", "content": "You are a support agent with tools find_user_id_by_email and get_order_details."},
                {"role": "user", "content": "Look up the customer with e-mail <EMAIL_1>, then their order #W1."},
            ]
        )
    assert first["intent"] in schema["properties"]["intent"]["enum"] and second["intent"] in schema["properties"]["intent"]["enum"]
    usage = llm.get_token_usage_summary()
    assert usage.cached_prompt_tokens > 50, usage  # the shared instructions were not read twice
    assert step.startswith("Thought: ") and (
        "\nAction: find_user_id_by_email\n" in step or "\nAction: get_order_details\n" in step or "\nFinal Answer: " in step
    ), step


def test_the_write_check_reads_a_probability_from_the_real_models_logprobs(model_path, tmp_path):
    """crews/procedures/check.py on the real 1.5B through llama-server's log-probabilities: the answer is a probability
    (not the 0/1 of a constrained word), and an item the customer plainly asks to return scores above one they plainly
    keep, in the same ticket."""
    from crewdesk.llm.factory import LLMFactory
    from crewdesk.llm.local import LocalModelServer
    from crewdesk.settings import load_settings
    from crews.procedures import check

    port = free_port()
    with LocalModelServer(
        model_path=model_path, host="127.0.0.1", port=port, n_ctx=2048, threads=2, start_timeout=120, log_path=tmp_path / "llama-server.log", parallel=1
    ):
        llm = LLMFactory(load_settings(llm_provider="local", local_port=port)).build(tier="cheap")
        text = "Hi, please take back the desk lamp from order #W1234567, it is broken. I am keeping the office chair, it is fine."
        asked = "Does the customer ask us to take back (return) this item: {} from order #W1234567 (delivered)?"
        lamp = llm.yes_probability(check.messages(text, asked.format("Desk Lamp (color black)")), name="check_write")
        chair = llm.yes_probability(check.messages(text, asked.format("Office Chair (material mesh)")), name="check_write")
    assert 0.0 < lamp < 1.0 and 0.0 < chair < 1.0, (lamp, chair)  # read from the token probabilities
    assert lamp > chair, (lamp, chair)
