"""The HTTP API against PostgreSQL; enqueueing goes to the real Redis broker."""

from __future__ import annotations

import json

import redis
from fastapi.testclient import TestClient

from crewdesk.api import create_app
from crewdesk.llm.factory import LLMFactory
from crews.pipeline import Pipeline


def test_submit_is_idempotent_and_lands_on_the_queue(settings, session_factory, redis_url):
    client = TestClient(create_app(settings, session_factory=session_factory))
    payload = {"source": "api", "external_id": "A-1", "customer": "ro@example.com", "subject": "Login", "body": "I cannot sign in to my account."}
    first = client.post("/tickets", json=payload)
    second = client.post("/tickets", json=payload)
    assert first.status_code == second.status_code == 202
    assert first.json()["created"] is True and second.json() == {**first.json(), "created": False}
    assert first.json()["status"] == "queued"
    queued = [json.loads(m) for m in redis.Redis.from_url(redis_url).lrange("tickets", 0, -1)]
    assert [m["headers"]["task"] for m in queued] == ["crewdesk.process_ticket"]
    assert queued[0]["headers"]["argsrepr"] == f"[{first.json()['ticket_id']}]"


def test_status_and_trail_after_processing(settings, session_factory):
    sent = []
    client = TestClient(create_app(settings, session_factory=session_factory, send=sent.extend))
    ticket_id = client.post("/tickets", json={"external_id": "A-2", "body": "Please send me my invoice for May."}).json()["ticket_id"]
    assert sent == [ticket_id]
    Pipeline(settings=settings, session_factory=session_factory, llm_factory=LLMFactory(settings)).process(ticket_id)
    view = client.get(f"/tickets/{ticket_id}").json()
    assert view["status"] == "resolved" and view["category"] == "billing"
    assert view["runs"][0]["llm_calls"] >= 2
    assert sum(1 for row in view["trail"] if row["kind"] == "llm_call") == view["runs"][0]["llm_calls"]


def test_bad_requests(settings, session_factory):
    client = TestClient(create_app(settings, session_factory=session_factory, send=lambda _ticket_ids: None))
    assert client.get("/tickets/424242").status_code == 404
    response = client.post("/tickets", json={"external_id": "A-3", "body": ""})
    assert response.status_code == 422 and "body" in response.text
    assert client.get("/openapi.json").json()["paths"]["/tickets"]["post"]


def test_approvals_over_http(settings, session_factory, make_ticket, monkeypatch):
    from crewdesk.approvals.models import Approval
    from crewdesk.db import transaction

    ticket_id = make_ticket("Cancel my order")
    with transaction(session_factory) as db:
        db.execute(__import__("sqlalchemy").update(__import__("crewdesk.tickets.models", fromlist=["Ticket"]).Ticket).values(status="awaiting_approval"))
        db.add(
            Approval(ticket_id=ticket_id, action="calculate", arguments={"expression": "2*21"}, idempotency_key="k-api", requested_by="billing", reason="test")
        )
    resumed = []
    client = TestClient(create_app(settings, session_factory=session_factory, send=resumed.extend))
    monkeypatch.setattr(Pipeline, "__init__", no_pipeline)  # deciding builds a gate, not a crew
    listed = client.get("/approvals").json()
    assert [a["action"] for a in listed] == ["calculate"]
    decided = client.post(f"/approvals/{listed[0]['id']}/approve", json={"by": "alice"})
    assert decided.status_code == 200 and decided.json()["status"] == "approved" and decided.json()["decided_by"] == "alice"
    assert resumed == [ticket_id]  # nothing else pending: the ticket goes back on the queue
    again = client.post(f"/approvals/{listed[0]['id']}/reject", json={"by": "bob", "reason": "late"})
    assert again.status_code == 409 and "already approved" in again.text
    assert client.post("/approvals/9999/approve", json={"by": "x"}).status_code == 404
    assert client.get("/approvals").json() == []


def no_pipeline(*_args, **_kwargs):
    raise AssertionError("the API built a Pipeline")


def test_statuses_come_from_error_types_never_from_messages(settings, session_factory):
    from crewdesk.api.errors import STATUS_OF
    from crewdesk.approvals.service import ApprovalDecided, ApprovalNotFound
    from crewdesk.errors import IllegalTransition, InvalidTicket, TicketNotFound
    from crewdesk.intake.jira_webhook import RefusalsLimited, WebhookRefused

    app = create_app(settings, session_factory=session_factory, send=lambda _ticket_ids: None)
    raised = {
        "404": ApprovalNotFound("approval 1 was already approved"),
        "409": ApprovalDecided("approval 1 does not exist"),
        "409-transition": IllegalTransition("ticket 1 does not exist"),
        "404-ticket": TicketNotFound("conflict"),
        "422": InvalidTicket("not a ticket"),
        "429": RefusalsLimited("too many", retry_after=7),
    }

    @app.get("/raise/{name}")
    def raise_it(name: str) -> None:
        raise raised[name]

    client = TestClient(app)
    for name, exc in raised.items():
        response = client.get(f"/raise/{name}")
        assert (response.status_code, response.json()) == (int(name[:3]), {"detail": str(exc)}), name
    assert client.get("/raise/429").headers["Retry-After"] == "7"
    # Every refusal the intake domain can raise has its status.
    assert all(any(issubclass(kind, mapped) for mapped in STATUS_OF) for kind in WebhookRefused.__subclasses__())


def test_approval_gates_are_the_pipelines_gates(settings, session_factory, make_ticket):
    """crews.approvals builds a decided write's gate without a Pipeline: it must be the gate Pipeline.gate builds."""
    from crews.approvals import gate_factory

    ticket_id = make_ticket("Cancel my order")
    for current in (settings, settings.model_copy(update={"pii_redaction": False, "approval_threshold_usd": -1.0, "max_tool_calls_per_ticket": 3})):
        pipeline = Pipeline(settings=current, session_factory=session_factory, llm_factory=LLMFactory(current))
        for customer in (None, "Ro <ro@example.com>"):
            ours = gate_factory(current, session_factory).gate(ticket_id=ticket_id, run_id=7, customer=customer)
            theirs = pipeline.gate(ticket_id=ticket_id, run_id=7, customer=customer)
            for name in ("session_factory", "ticket_id", "run_id", "permissions", "store_factory", "approval_threshold", "max_calls_per_ticket", "binding"):
                assert getattr(ours, name) == getattr(theirs, name), name
            assert type(ours.vault) is type(theirs.vault)
            assert getattr(ours.vault, "ticket_id", None) == getattr(theirs.vault, "ticket_id", None)
            assert getattr(ours.vault, "session_factory", None) is getattr(theirs.vault, "session_factory", None)
