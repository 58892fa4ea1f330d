"""The pipeline in-process against real PostgreSQL, with the scripted model (deterministic)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, update

from crewdesk.audit.models import AuditEvent
from crewdesk.db import transaction
from crewdesk.errors import TransientError
from crewdesk.llm.scripted import default_responder, react_final
from crewdesk.runs.models import CrewRun
from crewdesk.tickets.models import Message, Ticket
from crews.pipeline import Pipeline
from tests.helpers import RecordingFactory


def make_pipeline(settings, session_factory, responder=None):
    factory = RecordingFactory(settings, responder=responder)
    return Pipeline(settings=settings, session_factory=session_factory, llm_factory=factory), factory


def test_billing_ticket_is_triaged_resolved_and_fully_audited(settings, session_factory, make_ticket):
    ticket_id = make_ticket("I was charged twice for invoice 2291 this month. Please refund the duplicate payment.")
    pipeline, factory = make_pipeline(settings, session_factory)

    outcome = pipeline.process(ticket_id)

    assert outcome.status == "resolved" and outcome.category == "billing"
    prompts = sum(len(llm.prompts) for llm in factory.built)
    with session_factory() as db:
        ticket = db.get(Ticket, ticket_id)
        run = db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket_id)).scalar_one()
        llm_rows = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "llm_call")).scalars().all()
        kinds = set(db.execute(select(AuditEvent.name).where(AuditEvent.ticket_id == ticket_id)).scalars())
        outbound = db.execute(select(Message).where(Message.ticket_id == ticket_id, Message.direction == "outbound")).scalars().all()
    assert ticket.triage["category"] == "billing" and 0 <= ticket.triage["confidence"] <= 1
    assert run.status == "completed" and run.outcome == "resolved"
    assert run.models == {"routing": "scripted-cheap", "billing": "scripted-strong"}
    # one audit row per LLM call, counted independently: the event listener vs. the model's own log
    assert prompts == run.llm_calls == len(llm_rows) >= 2
    assert all(row.run_id == run.id and row.duration_ms is not None and row.result["usage"]["total_tokens"] > 0 for row in llm_rows)
    assert {"Support Router", "Billing Specialist"} <= {row.actor for row in llm_rows}
    assert run.tokens_in == sum(row.result["usage"]["prompt_tokens"] for row in llm_rows)
    assert run.latency_s > 0 and run.llm_seconds >= 0
    assert {"triaging", "resolved", "customer_reply"} <= kinds  # decisions: status changes and the reply
    assert not kinds & {"crew_kickoff_started", "task_completed", "agent_execution_started"}  # lifecycle noise is not kept
    assert len(outbound) == 1 and outbound[0].body


def test_the_triage_is_one_model_call_and_the_specialist_one_crew(settings, session_factory, make_ticket, monkeypatch):
    """The router has no tools: it answers in one model call, not a crew; its answer passes the JSON guardrail, whose
    verdict follows the call in the ticket's chain. Only the specialist's crew is kicked off."""
    from crews import builder

    kickoffs = []
    original = builder.PhaseCrew.kickoff
    monkeypatch.setattr(builder.PhaseCrew, "kickoff", lambda crew, *a, **kw: kickoffs.append([t.name for t in crew.tasks]) or original(crew, *a, **kw))
    ticket_id = make_ticket("I was charged twice for invoice 2291 this month. Please refund the duplicate payment.")
    pipeline, factory = make_pipeline(settings, session_factory)

    assert pipeline.process(ticket_id).status == "resolved"

    assert kickoffs == [["resolve"]]
    router_prompts = [m for llm in factory.built if llm.model == "scripted-cheap" for m in llm.prompts]
    assert len(router_prompts) == 1 and router_prompts[0][0]["content"].startswith("You are Support Router.")
    assert "Classify this customer support ticket." in router_prompts[0][1]["content"]  # the task from tasks.yaml
    with session_factory() as db:
        rows = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id).order_by(AuditEvent.seq)).scalars().all()
    names = [(row.kind, row.name, row.actor) for row in rows]
    call = names.index(("llm_call", "scripted-cheap", "Support Router"))
    assert names[call + 1] == ("llm", "llm_guardrail_completed", "Support Router")
    assert rows[call + 1].arguments["success"] is True and rows[call + 1].arguments["task_name"] == "triage"


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ("Your update deleted my files. I lost all my data from last year!", "data_loss"),
        ("Someone hacked my account and changed the email address.", "security"),
        ("If this is not fixed by Friday my lawyer will file a lawsuit.", "legal_threat"),
    ],
)
def test_deterministic_rules_escalate_whatever_the_model_says(settings, session_factory, make_ticket, body, rule):
    def confident(messages, role):
        return (
            react_final({"category": "technical", "priority": "low", "language": "en", "sentiment": "neutral", "summary": "fine", "confidence": 0.99})
            if "rout" in role
            else default_responder(messages, role)
        )

    ticket_id = make_ticket(body)
    pipeline, _ = make_pipeline(settings, session_factory, responder=confident)
    outcome = pipeline.process(ticket_id)
    assert outcome.status == "escalated"
    assert rule in outcome.escalation_reason
    with session_factory() as db:
        rows = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "rule")).scalars().all()
        roles = set(db.execute(select(AuditEvent.actor).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "llm_call")).scalars())
    assert any(rule in hit for row in rows for hit in row.result)
    # the hand-over is a template and one bounded model call (the escalation role's summary), never a crew or a specialist
    assert roles == {"Support Router", "Escalation Coordinator"}
    with session_factory() as db:
        calls = db.execute(
            select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.actor.in_(["Escalation Coordinator", "escalation"])).order_by(AuditEvent.seq)
        ).scalars()
        ticket = db.get(Ticket, ticket_id)
        trail = [(c.kind, c.name) for c in calls]
    assert trail == [("llm_call", "scripted-cheap"), ("handoff", ticket.resolution["internal_note"][1:].split("]")[0])]
    note = ticket.resolution["internal_note"]
    assert note.startswith(f"[{'legal' if rule == 'legal_threat' else 'security' if rule == 'security' else 'tier2'}] Ticket #{ticket_id}")
    assert f"Why a person: {outcome.escalation_reason}." in note and "Done on this ticket: nothing" in note and body[:40] in note


def test_angry_repeat_contact_escalates(settings, session_factory, make_ticket):
    for n in range(2):
        make_ticket("The export button does nothing.", customer="bo@example.com", external_id=f"early-{n}")
    ticket_id = make_ticket("This is the third time I write. The export STILL does not work. Unacceptable!!", customer="bo@example.com")
    pipeline, _ = make_pipeline(settings, session_factory)
    outcome = pipeline.process(ticket_id)
    assert outcome.status == "escalated" and "angry_repeat_contact" in outcome.escalation_reason


def test_low_confidence_escalates(settings, session_factory, make_ticket):
    def unsure(messages, role):
        return (
            react_final({"category": "other", "priority": "normal", "summary": "unclear", "confidence": 0.2})
            if "rout" in role
            else default_responder(messages, role)
        )

    ticket_id = make_ticket("hello?")
    pipeline, _ = make_pipeline(settings, session_factory, responder=unsure)
    outcome = pipeline.process(ticket_id)
    assert outcome.status == "escalated" and "low_confidence" in outcome.escalation_reason


def test_llm_garbage_is_recorded_and_the_ticket_goes_to_a_human(settings, session_factory, make_ticket):
    def garbage(messages, role):
        return "Thought: I now know the final answer\nFinal Answer: sure thing, the category is probably billing"

    ticket_id = make_ticket("My invoice is wrong.")
    pipeline, _factory = make_pipeline(settings, session_factory, responder=garbage)
    outcome = pipeline.process(ticket_id)
    assert outcome.status == "escalated"
    assert "no valid triage" in outcome.escalation_reason
    with session_factory() as db:
        ticket = db.get(Ticket, ticket_id)
        messages = db.execute(select(Message).where(Message.ticket_id == ticket_id, Message.direction == "outbound")).scalars().all()
        guardrail_rows = db.execute(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.name.like("llm_guardrail%"))
        ).scalar_one()
    assert ticket.status == "escalated" and "no valid triage" in ticket.status_reason
    assert len(messages) == 1  # the fixed holding reply: the customer is not left without an answer
    assert guardrail_rows >= 2  # the guardrail asked the model to retry, and that is on record


def test_json_that_fits_no_output_model_escalates_with_the_holding_reply_instead_of_failing(settings, session_factory, make_ticket):
    # The local model once answered the hand-off with {"summary": ...}: valid JSON, wrong keys, for every retry.
    def wrong_keys(messages, role):
        return 'Thought: I now know the final answer\nFinal Answer: {"summary": "Customer asks why they were charged twice."}'

    ticket_id = make_ticket("Why was I charged twice?")
    pipeline, _ = make_pipeline(settings, session_factory, responder=wrong_keys)
    outcome = pipeline.process(ticket_id)
    assert outcome.status == "escalated"  # not failed: the ticket reaches a person with the reason
    with session_factory() as db:
        ticket = db.get(Ticket, ticket_id)
        run = db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket_id)).scalar_one()
        messages = db.execute(select(Message).where(Message.ticket_id == ticket_id)).scalars().all()
    assert run.status == "completed" and "no valid" in ticket.status_reason
    assert [m.direction for m in messages].count("outbound") == 1  # the holding reply
    # the team's note is the hand-over template, whatever the model answers: it names why and quotes the customer
    assert any(
        m.direction == "internal" and "Why a person: routing model gave no valid triage" in m.body and "Why was I charged twice?" in m.body for m in messages
    )


def test_transient_model_error_requeues_without_losing_the_ticket(settings, session_factory, make_ticket):
    calls = {"n": 0}

    def flaky(messages, role):
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientError("connection reset by model server")
        return default_responder(messages, role)

    ticket_id = make_ticket("The app crashes with error 500 when I open settings.")
    pipeline, _ = make_pipeline(settings, session_factory, responder=flaky)
    with pytest.raises(TransientError):
        pipeline.process(ticket_id)
    with session_factory() as db:
        assert db.get(Ticket, ticket_id).status == "queued"
        assert db.execute(select(CrewRun.status).where(CrewRun.ticket_id == ticket_id)).scalars().all() == ["error"]
    outcome = pipeline.process(ticket_id)  # what Celery's retry does
    assert outcome.status == "resolved" and outcome.category == "technical"
    with session_factory() as db:
        statuses = db.execute(select(CrewRun.status).where(CrewRun.ticket_id == ticket_id).order_by(CrewRun.id)).scalars().all()
    assert statuses == ["error", "completed"]


def test_processing_twice_gives_one_run_and_one_reply(settings, session_factory, make_ticket):
    ticket_id = make_ticket()
    pipeline, _ = make_pipeline(settings, session_factory)
    first = pipeline.process(ticket_id)
    second = pipeline.process(ticket_id)
    assert second.reused and second.run_id == first.run_id and second.status == first.status
    with session_factory() as db:
        assert db.execute(select(func.count()).select_from(CrewRun).where(CrewRun.ticket_id == ticket_id)).scalar_one() == 1
        assert db.execute(select(func.count()).select_from(Message).where(Message.ticket_id == ticket_id, Message.direction == "outbound")).scalar_one() == 1


def test_concurrent_duplicate_delivery_runs_the_crew_once(settings, session_factory, make_ticket):
    ticket_id = make_ticket()
    gate = threading.Event()

    def slow(messages, role):
        gate.wait(5)
        return default_responder(messages, role)

    pipeline, _ = make_pipeline(settings, session_factory, responder=slow)
    results = []
    threads = [threading.Thread(target=lambda: results.append(pipeline.process(ticket_id))) for _ in range(2)]
    for t in threads:
        t.start()
    threading.Timer(1.0, gate.set).start()
    for t in threads:
        t.join(30)
    assert sorted(r.reused for r in results) == [False, True]
    with session_factory() as db:
        assert db.execute(select(func.count()).select_from(CrewRun).where(CrewRun.ticket_id == ticket_id)).scalar_one() == 1


def test_a_run_cut_short_by_a_dead_worker_is_marked_and_redone(settings, session_factory, make_ticket):
    ticket_id = make_ticket()
    with transaction(session_factory) as db:
        db.add(CrewRun(ticket_id=ticket_id, status="running"))
        db.execute(update(Ticket).where(Ticket.id == ticket_id).values(status="in_progress"))
    pipeline, _ = make_pipeline(settings, session_factory)
    outcome = pipeline.process(ticket_id)
    assert outcome.status == "resolved"
    with session_factory() as db:
        statuses = db.execute(select(CrewRun.status).where(CrewRun.ticket_id == ticket_id).order_by(CrewRun.id)).scalars().all()
    assert statuses == ["interrupted", "completed"]


def test_malformed_ticket_fails_with_reason_and_nothing_runs(settings, session_factory):
    with transaction(session_factory) as db:
        ticket = Ticket(source="test", external_id="empty", body="   ", status="queued")
        db.add(ticket)
    pipeline, factory = make_pipeline(settings, session_factory)
    outcome = pipeline.process(ticket.id)
    assert outcome.status == "failed"
    with session_factory() as db:
        assert db.get(Ticket, ticket.id).status_reason == "ticket has no message text"
    assert factory.built == []


def test_a_crew_that_loops_is_stopped_by_the_runs_model_call_cap_and_handed_over(settings, session_factory, make_ticket):
    """A specialist that keeps calling a tool is stopped at CREWDESK_RUN_MAX_MODEL_CALLS (every phase together), not by
    CrewAI's own loop limits; the ticket goes to a person with the template summary, and no call is made past the cap."""

    def loops(messages, role):
        if "rout" in role:
            return react_final({"category": "billing", "priority": "normal", "language": "en", "sentiment": "neutral", "summary": "refund", "confidence": 0.9})
        n = sum(1 for m in messages if m["role"] == "assistant")
        return f'Thought: check again\nAction: calculate\nAction Input: {{"expression": "{n} + 1"}}'

    settings = settings.model_copy(update={"run_max_model_calls": 5})
    ticket_id = make_ticket("I was charged twice for invoice 2291 this month. Please refund the duplicate payment.")
    pipeline, factory = make_pipeline(settings, session_factory, responder=loops)
    outcome = pipeline.process(ticket_id)
    assert outcome.status == "escalated" and "CREWDESK_RUN_MAX_MODEL_CALLS" in outcome.escalation_reason
    with session_factory() as db:
        run = db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket_id)).scalar_one()
        ticket = db.get(Ticket, ticket_id)
    assert sum(len(llm.prompts) for llm in factory.built) == run.llm_calls == 5  # the summary call was not allowed either
    assert (
        ticket.resolution["internal_note"].startswith(f"[billing_ops] Ticket #{ticket_id}")
        and "Request (model summary)" not in ticket.resolution["internal_note"]
    )


def test_a_slow_model_is_stopped_at_the_runs_wall_time(settings, session_factory, make_ticket):
    """Each call may take only what is left of CREWDESK_RUN_MAX_SECONDS: with 0.3 s a call and 1 s for the run, the run
    stops after a few calls and the ticket is handed over, well before CrewAI's iteration limits."""

    def slow_loop(messages, role):
        if "rout" in role:
            return react_final({"category": "billing", "priority": "normal", "language": "en", "sentiment": "neutral", "summary": "refund", "confidence": 0.9})
        return 'Thought: again\nAction: calculate\nAction Input: {"expression": "1 + 1"}'

    settings = settings.model_copy(update={"run_max_seconds": 1.0, "scripted_latency_ms": 300})
    ticket_id = make_ticket("I was charged twice for invoice 2291 this month. Please refund the duplicate payment.")
    pipeline, factory = make_pipeline(settings, session_factory, responder=slow_loop)
    outcome = pipeline.process(ticket_id)
    assert outcome.status == "escalated" and "CREWDESK_RUN_MAX_SECONDS" in outcome.escalation_reason
    assert sum(len(llm.prompts) for llm in factory.built) <= 5
