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
    client = TestClient(create_app(settings, session_factory=session_factory, enqueue=sent.append))
    ticket_id = client.post("/tickets", json={"external_id": "A-2", "body": "Please send me my invoice for May."}).json()["ticket_id"]
    assert sent == [ticket_id]
    Pipeline(settings=settings, session_factory=session_factory, llm_factory=LLMFactory(settings)).process(ticket_id)
    view = client.get(f"/tickets/{ticket_id}").json()
    assert view["status"] == "resolved" and view["category"] == "billing"
    assert view["runs"][0]["llm_calls"] >= 2
    assert sum(1 for row in view["trail"] if row["kind"] == "llm_call") == view["runs"][0]["llm_calls"]


def test_bad_requests(settings, session_factory):
    client = TestClient(create_app(settings, session_factory=session_factory, enqueue=lambda _: None))
    assert client.get("/tickets/424242").status_code == 404
    response = client.post("/tickets", json={"external_id": "A-3", "body": ""})
    assert response.status_code == 422 and "body" in response.text
    assert client.get("/openapi.json").json()["paths"]["/tickets"]["post"]
