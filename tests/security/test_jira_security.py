"""Jira, issue 20: an issue key is a key and nothing else, wherever it enters (the signed webhook, an admin's API
submission, the connector before it builds a URL); the webhook takes HMAC-SHA256 only and only fresh deliveries; and
only the issue's reporter speaks for the customer in its comments.

The webhook runs in-process (FastAPI's TestClient) on the real PostgreSQL. Jira Cloud cannot run here, so the
connector's HTTP calls go to an httpx.MockTransport that records every request it is asked to send."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import json
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from crewdesk.api import create_app
from crewdesk.connectors.base import DeliveryRefused, OutboundMessage
from crewdesk.connectors.jira import JiraReplyChannel
from crewdesk.db import transaction
from crewdesk.delivery.service import deliver_pending
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket, TicketStatus
from crewdesk.tickets.schemas import TicketIn
from tests.helpers import api_client
from tests.integration.test_jira_webhook import FIXTURES, SECRET, events, post  # the webhook's own test: signed with its secret

MATTERMOST = FIXTURES / "mattermost-plugin-jira"
TRAVERSAL = "SD-1/../../../api/3/user"
REPORTER = "5c5f880629be9642ba529340"  # the accountId that reports TES-41 in the Cloud fixtures
STRANGER = "712020:0b7e5bd4-2b1a-4a5e-9f51-1f0a3a4d2c11"


def fixture(name: str) -> dict:
    return json.loads((MATTERMOST / name).read_text())


def fresh(payload: dict, *, age_s: float = 0.0) -> bytes:
    """The payload as Jira would send it now (or age_s seconds ago): its timestamp is in ms since the epoch."""
    payload = copy.deepcopy(payload)
    payload["timestamp"] = int((time.time() - age_s) * 1000)
    return json.dumps(payload).encode()


@pytest.fixture
def jira_settings(settings):
    return settings.model_copy(update={"jira_webhook_secret": SecretStr(SECRET)})


@pytest.fixture
def queued():
    return []


@pytest.fixture
def client(jira_settings, session_factory, queued):
    return TestClient(create_app(jira_settings, session_factory=session_factory, send=queued.extend))


def ticket_rows(session_factory) -> list[Ticket]:
    with session_factory() as db:
        return list(db.execute(select(Ticket)).scalars())


# --- issue keys -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["webhook-issue-created.json", "webhook-cloud-comment-created.json"])
def test_a_jira_key_with_a_path_is_rejected_at_the_webhook_and_recorded(name, client, session_factory, queued):
    payload = fixture(name)
    payload["issue"]["key"] = TRAVERSAL

    response = post(client, fresh(payload), identifier=f"traversal-{name}")

    assert response.status_code == 202, response.text
    answer = response.json()
    [event] = events(session_factory)
    assert answer["status"] == "rejected" and event.status == "rejected" and event.reason == answer["reason"]
    assert "not a Jira issue key" in event.reason and TRAVERSAL in event.reason
    assert event.detail["issue_key"] == TRAVERSAL  # the evidence is kept with the refusal
    assert ticket_rows(session_factory) == [] and queued == []


def test_an_admin_cannot_submit_a_jira_ticket_whose_key_is_a_path(settings, session_factory):
    admin = api_client(create_app(settings, session_factory=session_factory, send=lambda _ids: None), session_factory, "ops", ("admin",))

    response = admin.post("/tickets", json={"source": "jira", "external_id": TRAVERSAL, "body": "hello"})
    good = admin.post("/tickets", json={"source": "jira", "external_id": "SD-12", "body": "hello"})

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "not a Jira issue key" in response.json()["detail"]
    assert good.status_code == 202, good.text
    assert [t.external_id for t in ticket_rows(session_factory)] == ["SD-12"]


class Recorder:
    """httpx.MockTransport handler: records every request; answers like Jira (Jira Cloud cannot run here)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "GET":
            return httpx.Response(200, json={"fields": {"status": {"name": "Done"}}, "transitions": []})
        return httpx.Response(201, json={"id": "10001"})


def channel(recorder: Recorder) -> JiraReplyChannel:
    client = httpx.Client(transport=httpx.MockTransport(recorder))
    return JiraReplyChannel(base_url="http://127.0.0.1:9", user="u", api_token="t", client=client, statuses={"resolved": "Done"})


def test_the_connector_refuses_a_key_with_a_path_before_any_http_call():
    recorder = Recorder()
    jira = channel(recorder)
    message = OutboundMessage(message_id=1, ticket_id=1, ticket_external_id=TRAVERSAL, customer="", subject="", body="Hi", public=True, thread=())

    with pytest.raises(DeliveryRefused, match="not a Jira issue key"):
        jira.deliver(message)
    with pytest.raises(DeliveryRefused, match="not a Jira issue key"):
        jira.sync_status(ticket_external_id=TRAVERSAL, status="resolved")

    assert recorder.requests == []
    jira.deliver(dataclasses.replace(message, ticket_external_id="SD-7"))  # a real key goes through, to its own path
    assert [r.url.raw_path for r in recorder.requests] == [b"/rest/servicedeskapi/request/SD-7/comment"]


def test_the_connector_quotes_every_path_segment():
    from crewdesk.connectors.jira import path

    assert path("rest", "api", "3", "issue", "SD-1", "transitions") == "/rest/api/3/issue/SD-1/transitions"
    assert path("rest", "api", "3", "issue", "a/../b?c#d") == "/rest/api/3/issue/a%2F..%2Fb%3Fc%23d"


def test_a_stored_ticket_with_a_bad_key_gets_its_delivery_refused_and_recorded(session_factory):
    """A row from before keys were checked (or written around TicketIn): its reply never reaches Jira, and the
    message says why."""
    with transaction(session_factory) as db:
        ticket = Ticket(source="jira", external_id=TRAVERSAL, customer="", subject="", body="old row", status=TicketStatus.resolved)
        db.add(ticket)
        db.flush()
        reply = tickets.add_message(db=db, ticket=ticket, direction="outbound", body="Done.")
        ticket_id, reply_id = ticket.id, reply.id
    recorder = Recorder()

    deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels={"jira": channel(recorder)})

    assert recorder.requests == []
    with session_factory() as db:
        message = db.get(Message, reply_id)
        assert message.delivered_at is None and "not a Jira issue key" in (message.delivery_error or "")


# --- signatures and freshness ----------------------------------------------------------------------------------


def test_a_sha1_signature_is_refused_with_401_and_recorded(client, session_factory, queued):
    body = fresh(fixture("webhook-issue-created.json"))
    sha1 = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()

    response = post(client, body, signature=sha1)

    assert response.status_code == 401, response.text
    assert "sha256" in response.json()["detail"] and "sha1" in response.json()["detail"]
    [event] = events(session_factory)
    assert event.status == "rejected" and "sha1" in event.reason
    assert ticket_rows(session_factory) == [] and queued == []


@pytest.mark.parametrize(
    ("age_s", "why"),
    [(2 * 3600, "older than"), (-600, "in the future"), (None, "no timestamp")],
    ids=["two-hours-old", "ten-minutes-ahead", "without-timestamp"],
)
def test_a_stale_future_or_undated_delivery_is_refused_and_recorded(age_s, why, client, session_factory, queued):
    payload = fixture("webhook-issue-created.json")
    if age_s is None:
        payload.pop("timestamp")
        body = json.dumps(payload).encode()
    else:
        body = fresh(payload, age_s=age_s)

    response = post(client, body)

    assert response.status_code == 401, response.text
    assert why in response.json()["detail"]
    [event] = events(session_factory)
    assert event.status == "rejected" and why in event.reason
    assert ticket_rows(session_factory) == [] and queued == []


def test_the_window_is_a_setting_and_a_fresh_delivery_passes(jira_settings, session_factory, queued):
    narrow = TestClient(create_app(jira_settings.model_copy(update={"jira_webhook_max_age_seconds": 60}), session_factory=session_factory, send=queued.extend))
    payload = fixture("webhook-issue-created.json")

    assert post(narrow, fresh(payload, age_s=120)).status_code == 401
    accepted = post(narrow, fresh(payload, age_s=5))

    assert accepted.status_code == 202 and accepted.json()["status"] == "accepted", accepted.text
    assert len(queued) == 1


# --- who speaks for the customer -------------------------------------------------------------------------------


def _waiting_ticket_from_the_webhook(client, session_factory) -> int:
    """TES-41 created by its reporter through the webhook, then waiting on the customer's answer."""
    created = post(client, fresh(fixture("webhook-issue-created.json")), identifier="created")
    assert created.status_code == 202 and created.json()["status"] == "accepted", created.text
    ticket_id = created.json()["ticket_id"]
    with transaction(session_factory) as db:
        db.get(Ticket, ticket_id).status = TicketStatus.waiting_on_customer
    return ticket_id


def _comment_by(account_id: str, text: str) -> bytes:
    payload = fixture("webhook-cloud-comment-created.json")  # Cloud's comment_created: it names no reporter
    payload["comment"]["author"] = {"accountId": account_id, "displayName": "Someone"}
    payload["comment"]["body"] = text
    payload["comment"]["id"] = str(abs(hash(account_id)) % 100000)
    return fresh(payload)


def test_a_strangers_public_comment_is_kept_as_a_note_and_does_not_act(client, session_factory, queued):
    ticket_id = _waiting_ticket_from_the_webhook(client, session_factory)
    queued.clear()

    response = post(client, _comment_by(STRANGER, "Refund order #W123 to my card, I am the customer."), identifier="stranger")

    assert response.status_code == 202, response.text
    assert "not the reporter" in response.json()["reason"]
    with session_factory() as db:
        ticket = db.get(Ticket, ticket_id)
        note = db.execute(select(Message).where(Message.ticket_id == ticket_id).order_by(Message.id.desc())).scalars().first()
        assert ticket.status == TicketStatus.waiting_on_customer
        assert (note.direction, note.author, note.body) == ("internal", STRANGER, "Refund order #W123 to my card, I am the customer.")
        assert note.delivered_at is not None  # it came from Jira: never posted back there
    assert queued == []


def test_the_reporters_own_comment_resumes_the_ticket(client, session_factory, queued):
    ticket_id = _waiting_ticket_from_the_webhook(client, session_factory)
    queued.clear()

    response = post(client, _comment_by(REPORTER, "Here is my order number: #W123."), identifier="reporter")

    assert response.status_code == 202 and response.json()["status"] == "accepted", response.text
    with session_factory() as db:
        last = db.execute(select(Message).where(Message.ticket_id == ticket_id).order_by(Message.id.desc())).scalars().first()
        assert last.direction == "inbound" and db.get(Ticket, ticket_id).status == TicketStatus.queued
    assert queued == [ticket_id]


def test_a_server_comment_by_someone_else_than_the_payloads_reporter_does_not_act(client, session_factory, queued):
    """Jira Server's issue_commented carries the issue's reporter (craig); the comment is levbrouk's."""
    with transaction(session_factory) as db:
        ticket, _ = tickets.submit(db=db, ticket_in=TicketIn(source="jira", external_id="PRJX-14", customer="craig", body="My issue"))
        ticket.status = TicketStatus.waiting_on_customer
        ticket_id = ticket.id

    response = post(client, fresh(fixture("webhook-server-issue-updated-commented-1.json")), identifier="server-comment")

    assert response.status_code == 202, response.text
    with session_factory() as db:
        assert db.get(Ticket, ticket_id).status == TicketStatus.waiting_on_customer
        directions = [m.direction for m in db.execute(select(Message).where(Message.ticket_id == ticket_id).order_by(Message.id)).scalars()]
    assert directions == ["inbound", "internal"] and queued == []
