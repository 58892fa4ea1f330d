"""Limits on the API, issue 20: a body over the limit is refused before it is read in full; each caller has a rate
limit on submitting, writing on tickets and deciding approvals (on the broker's real Redis); `source` is one of the
known channels, and the metrics' channel label cannot grow without bound."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from crewdesk.api import create_app
from crewdesk.approvals.models import Approval
from crewdesk.db import transaction
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Ticket
from crewdesk.tickets.schemas import TicketIn
from tests.helpers import api_client, api_key


def _app(settings, session_factory, **update):
    return create_app(settings.model_copy(update=update), session_factory=session_factory, send=lambda _ids: None)


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["detail"]
    return body


# --- body size ---------------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_by_its_content_length_is_refused_with_413(settings, session_factory):
    client = api_client(_app(settings, session_factory, api_max_body_bytes=2000), session_factory)

    refused = client.post("/tickets", content=json.dumps({"external_id": "big", "body": "x" * 5000}), headers={"Content-Type": "application/json"})
    small = client.post("/tickets", json={"external_id": "small", "body": "x" * 500})

    assert "2000" in _problem(refused, 413)["detail"]
    assert small.status_code == 202, small.text
    with session_factory() as db:
        assert [t.external_id for t in db.execute(select(Ticket)).scalars()] == ["small"]


def test_a_streamed_body_over_the_limit_is_refused_before_it_is_read_in_full(settings, session_factory, redis_url):
    """No Content-Length (chunked): the ASGI app is called directly with a body of 100 chunks of 1 kB, and must answer
    413 having taken only the chunks up to the limit."""
    app = _app(settings, session_factory, api_max_body_bytes=10_000)
    key = api_key(session_factory)
    chunks = [b"x" * 1000] * 100
    taken: list[int] = []
    sent: list[dict] = []

    async def receive() -> dict:
        taken.append(1)
        index = len(taken) - 1
        if index >= len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[index], "more_body": index < len(chunks) - 1}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/tickets",
        "raw_path": b"/tickets",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), (b"authorization", f"Bearer {key}".encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))

    [start] = [m for m in sent if m["type"] == "http.response.start"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 413 and dict(start["headers"])[b"content-type"].startswith(b"application/problem+json")
    assert json.loads(body)["status"] == 413
    assert len(taken) <= 12  # 10 kB in 1 kB chunks, and the one that crossed the limit: not the other 88


def test_the_jira_webhook_takes_its_largest_fixture_under_the_default_limit(settings):
    from pathlib import Path

    largest = max((Path(__file__).resolve().parents[1] / "fixtures" / "jira-webhooks").glob("*/*.json"), key=lambda p: p.stat().st_size)
    assert largest.stat().st_size * 10 < settings.api_max_body_bytes


# --- rate limits -------------------------------------------------------------------------------------------------


def test_a_caller_over_its_rate_limit_gets_429_with_retry_after_and_others_do_not(settings, session_factory, redis_url):
    app = _app(settings, session_factory, api_rate_limit="3/minute")
    first = api_client(app, session_factory, "first", ("tickets:submit",))
    second = api_client(app, session_factory, "second", ("tickets:submit",))

    answers = [first.post("/tickets", json={"external_id": f"r-{n}", "body": "hello"}).status_code for n in range(3)]
    limited = first.post("/tickets", json={"external_id": "r-3", "body": "hello"})
    other = second.post("/tickets", json={"external_id": "s-0", "body": "hello"})

    assert answers == [202, 202, 202]
    body = _problem(limited, 429)
    assert 1 <= int(limited.headers["Retry-After"]) <= 60 and "3 per 1 minute" in body["detail"]
    assert other.status_code == 202, other.text
    with session_factory() as db:
        assert db.execute(select(Ticket).where(Ticket.external_id == "r-3")).scalar_one_or_none() is None


def test_messages_count_with_submissions_toward_the_same_limit(settings, session_factory, redis_url):
    app = _app(settings, session_factory, api_rate_limit="2/minute")
    caller = api_client(app, session_factory, "writer", ("tickets:submit",))

    ticket_id = caller.post("/tickets", json={"external_id": "m-1", "body": "hello"}).json()["ticket_id"]
    assert caller.post(f"/tickets/{ticket_id}/messages", json={"body": "more"}).status_code == 202
    _problem(caller.post(f"/tickets/{ticket_id}/messages", json={"body": "and more"}), 429)


def test_approval_decisions_are_rate_limited_per_caller(settings, session_factory, make_ticket, redis_url):
    ticket_id = make_ticket("Cancel my order")
    with transaction(session_factory) as db:
        for n in range(3):
            db.add(Approval(ticket_id=ticket_id, action="calculate", arguments={"expression": "1"}, idempotency_key=f"k-{n}", requested_by="billing"))
    with session_factory() as db:
        ids = list(db.execute(select(Approval.id).order_by(Approval.id)).scalars())
    app = _app(settings, session_factory, api_rate_limit="1/minute")
    decider = api_client(app, session_factory, "approver", ("approvals:decide",))

    first = decider.post(f"/approvals/{ids[0]}/reject", json={"reason": "no"})
    second = decider.post(f"/approvals/{ids[1]}/reject", json={"reason": "no"})

    assert first.status_code == 200, first.text
    _problem(second, 429)
    with session_factory() as db:
        assert db.get(Approval, ids[1]).status == "pending"


def test_an_unreachable_rate_limit_store_fails_open_with_a_warning(settings, session_factory):
    from structlog.testing import capture_logs

    from tests.servers import free_port

    app = _app(settings, session_factory, api_rate_limit="1/minute", broker_url=f"redis://127.0.0.1:{free_port()}/0")
    caller = api_client(app, session_factory, "open", ("tickets:submit",))

    with capture_logs() as logs:
        answers = [caller.post("/tickets", json={"external_id": f"o-{n}", "body": "hello"}).status_code for n in range(3)]

    assert answers == [202, 202, 202]  # over "1/minute", but nothing can count: the API stays up
    warnings = [entry for entry in logs if entry["event"] == "ratelimit.unavailable"]
    assert warnings and warnings[0]["log_level"] == "warning"


def test_the_rate_limit_setting_is_checked_when_settings_load():
    from crewdesk.settings import load_settings

    with pytest.raises(ValueError, match="api_rate_limit"):
        load_settings(database_url="sqlite://", api_rate_limit="lots")


# --- source ------------------------------------------------------------------------------------------------------


def test_an_unknown_source_is_a_422_problem(settings, session_factory):
    admin = api_client(_app(settings, session_factory), session_factory, "ops", ("admin",))

    refused = admin.post("/tickets", json={"source": "x" * 30, "external_id": "u-1", "body": "hello"})

    body = _problem(refused, 422)
    assert "source" in body["detail"] and "'api'" in body["detail"]
    with session_factory() as db:
        assert db.execute(select(Ticket)).first() is None


def test_the_metrics_channel_label_is_bounded(settings, session_factory):
    with transaction(session_factory) as db:
        for n, source in enumerate(("legacy-crm", "crm-2", "email", "zendesk")):
            tickets.submit(db=db, ticket_in=TicketIn(source=source, external_id=f"b-{n}", body="imported"))
    client = TestClient(_app(settings, session_factory), headers={"Authorization": f"Bearer {api_key(session_factory, 'prom', ('metrics:read',))}"})

    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    channels = {s.labels["channel"]: s.value for s in families["crewdesk_tickets"].samples}

    assert channels == {"email": 1, "zendesk": 1, "other": 2}
