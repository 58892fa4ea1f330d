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


def test_approvals_over_http(settings, session_factory, make_ticket):
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
    listed = client.get("/approvals").json()
    assert [a["action"] for a in listed] == ["calculate"]
    decided = client.post(f"/approvals/{listed[0]['id']}/approve", json={"by": "alice"})
    assert decided.status_code == 200 and decided.json()["status"] == "approved" and decided.json()["decided_by"] == "alice"
    assert resumed == [ticket_id]  # nothing else pending: the ticket goes back on the queue
    again = client.post(f"/approvals/{listed[0]['id']}/reject", json={"by": "bob", "reason": "late"})
    assert again.status_code == 409 and "already approved" in again.text
    assert client.post("/approvals/9999/approve", json={"by": "x"}).status_code == 404
    assert client.get("/approvals").json() == []
