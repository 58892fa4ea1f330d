"""Jira Service Management: POST /webhooks/jira with every payload in tests/fixtures/jira-webhooks, signatures,
replays, loop protection, and replies posted back as JSM comments.

In-process (FastAPI's TestClient) against the real PostgreSQL. Jira Cloud cannot run here, so the JSM REST API is
mocked by a local HTTP server (a thread with http.server on 127.0.0.1) that asserts the exact requests. The queue is
replaced by a recording `enqueue` passed to create_app (the same hook tests/integration/test_api.py uses), which also checks that
the ticket is already committed when it is enqueued."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from crewdesk.api import create_app
from crewdesk.audit.models import AuditEvent
from crewdesk.connectors.base import DeliveryRefused, OutboundMessage
from crewdesk.connectors.jira import JiraReplyChannel, JiraUnavailable
from crewdesk.db import transaction
from crewdesk.delivery.service import deliver_pending
from crewdesk.errors import TransientError
from crewdesk.intake.jira_webhook import sign
from crewdesk.intake.models import InboundEvent
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket
from crewdesk.tickets.schemas import TicketIn
from tests.helpers import JsonStandIn, api_key, http_stand_in

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "jira-webhooks"
SECRET = "whsec-test-3f9a"
BOT = "5c5f880629be9642ba529340"  # the accountId that writes the Cloud comment fixtures

# What each fixture is, by hand (not by running the parser): the parser must agree.
ISSUE_CREATED = {
    "webhook__issue_created.json",
    "webhook-cloud-issue-created-many-fields.json",
    "webhook-issue-created.json",
    "webhook-issue-created-no-description.json",
    "webhook-issue-created-no-description-nor-relevant-fields.json",
    "webhook-issue-created-no-relevant-fields.json",
    "webhook-issue-created-with-security-level.json",
}
COMMENT_CREATED = {
    "integration__addComment.json",
    "integration__cloudAddComment.json",
    "webhook__cloud_comment_added.json",
    "webhook__issue_updated_with_comment.json",
    "webhook-cloud-comment-created.json",
    "webhook-cloud-comment-created-mention-user.json",
    "webhook-issue-comment-created-indentation.json",
    "webhook-server-issue-updated-commented-1.json",
    "webhook-server-issue-updated-commented-2.json",
    "webhook-server-issue-updated-commented-3.json",
    "webhook-server-issue-updated-commented-mention-user.json",
    "webhook-server-old-issue-updated-no-event-type-commented.json",
}
# Of those, the comments written by the issue's reporter as the payload names them (Server's events name the reporter;
# Cloud's comment events do not, so on an issue we never saw created nobody can tell): the rest are kept as notes.
BY_REPORTER = {"integration__addComment.json", "webhook__issue_updated_with_comment.json", "webhook-issue-comment-created-indentation.json"}
COMMENT_WITHOUT_ISSUE = {"webhook-server-comment-created.json"}  # Server sends it again as issue_commented, with the issue
COMMENT_UPDATED = {
    "webhook-cloud-comment-updated.json",
    "webhook-server-comment-updated.json",
    "webhook-server-issue-updated-comment-edited.json",
    "webhook-server-old-issue-updated-no-event-type-comment-edited.json",
}
COMMENT_DELETED = {"webhook-cloud-comment-deleted.json", "webhook-server-comment-deleted.json", "webhook-server-issue-updated-comment-deleted.json"}
ISSUE_DELETED = {"webhook-issue-deleted.json"}
STATUS_CHANGES = {  # file -> (from, to) in its changelog
    "integration__updateStatus.json": ("To Do", "Done"),
    "webhook__issue_updated_status_updated.json": ("To Do", "Done"),
    "webhook-issue-updated-reopened.json": ("Done", "To Do"),
    "webhook-issue-updated-resolved.json": ("In Progress", "Done"),
    "webhook-issue-updated-started-working.json": ("To Do", "In Progress"),
    "webhook-server-issue-updated-closed.json": ("Resolved", "Closed"),
    "webhook-server-issue-updated-in-progress.json": ("Reopened", "In Progress"),
    "webhook-server-issue-updated-reopened.json": ("Resolved", "Reopened"),
    "webhook-server-issue-updated-resolved.json": ("In Progress", "Resolved"),
}
FIXTURE_FILES = sorted(FIXTURES.glob("*/*.json"))


def test_fixture_set_is_complete():
    assert len(FIXTURE_FILES) == 66  # per SOURCES.md: 55 mattermost-plugin-jira + 11 jenkins jira-trigger-plugin
    named = ISSUE_CREATED | COMMENT_CREATED | COMMENT_WITHOUT_ISSUE | COMMENT_UPDATED | COMMENT_DELETED | ISSUE_DELETED | set(STATUS_CHANGES)
    assert named <= {f.name for f in FIXTURE_FILES}


@pytest.fixture
def jira_settings(settings):
    # The fixtures are deliveries captured in 2015-2019, sent here as they are: a window that still takes them (the
    # window itself is tested in tests/security/test_jira_security.py).
    return settings.model_copy(update={"jira_webhook_secret": SecretStr(SECRET), "jira_webhook_max_age_seconds": 20 * 365 * 86400})


class Enqueued(list):
    """The queue stand-in: records ticket ids, and what was committed when each was enqueued."""

    def __init__(self, session_factory):
        super().__init__()
        self.session_factory = session_factory
        self.committed: list[tuple[int, int]] = []  # (ticket id, messages visible from a fresh session)

    def __call__(self, ticket_ids) -> None:  # the broker's send: a batch of ticket ids
        for ticket_id in ticket_ids:
            with self.session_factory() as db:
                assert db.get(Ticket, ticket_id) is not None, "enqueued before the ticket was committed"
                self.committed.append((ticket_id, len(db.execute(select(Message.id).where(Message.ticket_id == ticket_id)).all())))
            self.append(ticket_id)


@pytest.fixture
def enqueued(session_factory):
    return Enqueued(session_factory)


@pytest.fixture
def client(jira_settings, session_factory, enqueued):
    return TestClient(create_app(jira_settings, session_factory=session_factory, send=enqueued))


def post(client, body: bytes, *, signature: str | None = "sign", identifier: str | None = None):
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        headers["X-Hub-Signature"] = sign(SECRET, body)
    elif signature is not None:
        headers["X-Hub-Signature"] = signature
    if identifier:
        headers["X-Atlassian-Webhook-Identifier"] = identifier
    return client.post("/webhooks/jira", content=body, headers=headers)


def events(session_factory) -> list[InboundEvent]:
    with session_factory() as db:
        return list(db.execute(select(InboundEvent).order_by(InboundEvent.id)).scalars())


def seed(session_factory, key: str, external_status: str | None) -> int:
    with transaction(session_factory) as db:
        ticket, _ = tickets.submit(db=db, ticket_in=TicketIn(source="jira", external_id=key, customer="c@example.com", body="seeded issue"))
        ticket.external_status = external_status
        return ticket.id


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_every_fixture_is_accepted_or_ignored_with_a_reason(path, client, session_factory, enqueued):
    name, body = path.name, path.read_bytes()
    payload = json.loads(body)
    key = (payload.get("issue") or {}).get("key")
    seeded = None
    if key and name not in ISSUE_CREATED | COMMENT_CREATED:
        # Updates only concern issues we know: start from the status the changelog moves away from.
        current = ((payload["issue"].get("fields") or {}).get("status") or {}).get("name")
        seeded = seed(session_factory, key, STATUS_CHANGES[name][0] if name in STATUS_CHANGES else current)

    response = post(client, body, identifier=f"delivery-{name}")
    assert response.status_code == 202, response.text
    [event] = events(session_factory)
    answer = response.json()
    assert (event.channel, event.external_id, event.seen_count) == ("jira", f"delivery-{name}", 1)
    assert event.reason and answer["reason"] == event.reason
    with session_factory() as db:
        ticket = tickets.find(db=db, source="jira", external_id=key) if key else None
        messages = list(db.execute(select(Message).where(Message.ticket_id == ticket.id).order_by(Message.id)).scalars()) if ticket else []
        audit_names = [e.name for e in db.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()]

    if name in ISSUE_CREATED:
        assert (event.kind, event.status, answer["status"]) == ("issue_created", "accepted", "accepted")
        assert ticket is not None and event.ticket_id == ticket.id == answer["ticket_id"]
        assert ticket.subject == payload["issue"]["fields"]["summary"] and ticket.body.startswith(ticket.subject)
        assert ticket.customer and ticket.external_status == payload["issue"]["fields"]["status"]["name"]
        assert len(messages) == 1 and ticket.status == "queued" and enqueued == [ticket.id]
    elif name in COMMENT_CREATED:
        comment = payload["comment"]
        assert (event.kind, event.status) == ("comment_created", "accepted")
        assert ticket is not None and event.ticket_id == ticket.id and event.message_id == messages[-1].id
        # The issue was unknown: it became a ticket (its text first), and the comment its follow-up message when its
        # reporter wrote it, else a note for the team.
        assert [m.direction for m in messages] == ["inbound", "inbound" if name in BY_REPORTER else "internal"]
        assert messages[-1].external_id == str(comment["id"]) and messages[-1].body == comment["body"]
        assert enqueued == [ticket.id]
    elif name in COMMENT_WITHOUT_ISSUE:
        assert (event.kind, event.status, event.ticket_id) == ("comment_created", "ignored", None)
        assert "without its issue" in event.reason and enqueued == []
    elif name in COMMENT_UPDATED | COMMENT_DELETED:
        assert event.kind == ("comment_updated" if name in COMMENT_UPDATED else "comment_deleted")
        assert event.status == "ignored" and event.ticket_id == seeded
        assert [m.body for m in messages] == (["seeded issue"] if seeded else []) and enqueued == []
    elif name in ISSUE_DELETED:
        assert (event.kind, event.status, event.ticket_id) == ("issue_deleted", "ignored", seeded)
        assert ticket.external_status == "(deleted)" and "jira_deleted" in audit_names and enqueued == []
    elif name in STATUS_CHANGES:
        assert (event.kind, event.status, event.ticket_id) == ("issue_updated", "accepted", seeded)
        assert ticket.external_status == STATUS_CHANGES[name][1] and audit_names == ["jira_status"]
        assert ticket.status == "received" and enqueued == []  # a status sync never starts a run
    else:
        assert (event.kind, event.status, event.ticket_id) == ("issue_updated", "ignored", seeded)
        assert event.reason.startswith("no status change") and audit_names == [] and enqueued == []


def test_update_of_an_unknown_issue_is_ignored_with_a_reason(client, session_factory):
    response = post(client, (FIXTURES / "mattermost-plugin-jira" / "webhook-issue-updated-resolved.json").read_bytes())
    assert response.status_code == 202 and response.json()["status"] == "ignored"
    [event] = events(session_factory)
    assert event.reason == "issue TES-41 has no ticket here" and event.external_id.startswith("sha256:")


def test_follow_up_on_a_known_issue_and_server_double_announcement(client, session_factory, enqueued):
    """issue_created, then the customer's comment: one ticket, two messages. Jira Server announces a comment twice
    (comment_created and issue_commented, different deliveries): recorded once."""
    created = post(client, (FIXTURES / "mattermost-plugin-jira" / "webhook-issue-created.json").read_bytes()).json()
    commented = post(client, (FIXTURES / "mattermost-plugin-jira" / "webhook-cloud-comment-created.json").read_bytes()).json()
    assert created["status"] == commented["status"] == "accepted" and created["ticket_id"] == commented["ticket_id"]
    assert enqueued == [created["ticket_id"]]  # the ticket was still queued: its run reads the new message
    first = post(client, (FIXTURES / "mattermost-plugin-jira" / "webhook-server-issue-updated-commented-1.json").read_bytes()).json()
    second = post(client, (FIXTURES / "mattermost-plugin-jira" / "webhook-server-old-issue-updated-no-event-type-commented.json").read_bytes()).json()
    assert first["status"] == "accepted" and second["status"] == "ignored" and "already message" in second["reason"]
    with session_factory() as db:
        assert db.execute(select(Message.external_id).where(Message.ticket_id == first["ticket_id"])).scalars().all() == [None, "10082"]
        assert len(db.execute(select(Ticket)).all()) == 2


def test_replayed_delivery_is_processed_once(client, session_factory, enqueued):
    body = (FIXTURES / "mattermost-plugin-jira" / "webhook-issue-created.json").read_bytes()
    first = post(client, body, identifier="c1f1e6a5-replay")
    again = post(client, body, identifier="c1f1e6a5-replay")
    assert first.status_code == again.status_code == 202
    assert first.json()["status"] == "accepted" and again.json()["status"] == "duplicate"
    assert again.json()["ticket_id"] == first.json()["ticket_id"]
    [event] = events(session_factory)
    assert event.seen_count == 2 and event.status == "accepted"
    with session_factory() as db:
        assert len(db.execute(select(Ticket)).all()) == 1 and len(db.execute(select(Message)).all()) == 1
    assert enqueued == [first.json()["ticket_id"]]
    # Jira Server sends no identifier: a retried, byte-identical body is the same delivery.
    server = (FIXTURES / "mattermost-plugin-jira" / "webhook-server-issue-updated-commented-2.json").read_bytes()
    assert [post(client, server).json()["status"] for _ in range(2)] == ["accepted", "duplicate"]


def test_endpoint_enqueues_after_commit_and_does_not_wait_for_the_crew(client, enqueued):
    started = time.monotonic()
    response = post(client, (FIXTURES / "jenkins-jira-trigger-plugin" / "webhook__issue_created.json").read_bytes())
    assert response.status_code == 202 and time.monotonic() - started < 5
    ticket_id = response.json()["ticket_id"]
    assert enqueued == [ticket_id] and enqueued.committed == [(ticket_id, 1)]  # ticket and message were visible to the worker


@pytest.mark.parametrize("how", ["bot account", "comment id we posted", "text of our reply"])
def test_our_own_comment_starts_no_run(how, jira_settings, session_factory, enqueued):
    settings = jira_settings.model_copy(update={"jira_bot_account_id": BOT if how == "bot account" else ""})
    client = TestClient(create_app(settings, session_factory=session_factory, send=enqueued))
    post(client, (FIXTURES / "mattermost-plugin-jira" / "webhook-issue-created.json").read_bytes())
    payload = json.loads((FIXTURES / "mattermost-plugin-jira" / "webhook-cloud-comment-created.json").read_bytes())
    with transaction(session_factory) as db:
        ticket = tickets.find(db=db, source="jira", external_id="TES-41")
        ticket.status = "resolved"  # a customer comment would reopen it: ours must not
        reply = tickets.add_message(db=db, ticket=ticket, direction="outbound", body="We refunded the duplicate charge.")
        if how == "comment id we posted":
            reply.external_id = payload["comment"]["id"]
        elif how == "text of our reply":  # the webhook raced the delivery's commit: no comment id recorded yet
            payload["comment"]["body"] = "We refunded the duplicate\n charge. "
    enqueued.clear()
    response = post(client, json.dumps(payload).encode())
    assert response.status_code == 202 and response.json()["status"] == "ignored"
    assert response.json()["reason"].startswith("our own comment, no run")
    assert enqueued == []
    with session_factory() as db:
        assert db.execute(select(Ticket.status)).scalar_one() == "resolved"
        assert [m.direction for m in db.execute(select(Message).order_by(Message.id)).scalars()] == ["inbound", "outbound"]


def test_internal_comment_is_not_a_customer_message(client, session_factory, enqueued):
    payload = json.loads((FIXTURES / "mattermost-plugin-jira" / "webhook-cloud-comment-created.json").read_bytes())
    payload["comment"]["jsdPublic"] = False
    response = post(client, json.dumps(payload).encode())
    assert response.json()["status"] == "ignored" and "internal" in response.json()["reason"] and enqueued == []


def test_forged_missing_and_malformed_deliveries_are_refused_and_recorded(client, session_factory, enqueued):
    body = (FIXTURES / "mattermost-plugin-jira" / "webhook-issue-created.json").read_bytes()
    forged = post(client, body, signature=sign("not-our-secret", body))
    missing = post(client, body, signature=None)
    malformed = post(client, body, signature="sha256=xyz")
    unsupported = post(client, body, signature="md5=" + "0" * 32)
    bad_json = post(client, b'{"webhookEvent": "jira:issue_created", ')
    not_object = post(client, b'["jira:issue_created"]')
    assert [r.status_code for r in (forged, missing, malformed, unsupported, bad_json, not_object)] == [401, 401, 400, 400, 400, 400]
    assert "does not match" in forged.json()["detail"] and "no X-Hub-Signature" in missing.json()["detail"]
    assert enqueued == []
    recorded = events(session_factory)
    assert all((e.channel, e.status, e.kind) == ("jira", "rejected", "refused") for e in recorded)
    # One record per distinct body (a repeat bumps seen_count); the last reason stands, with evidence.
    by_body = {e.external_id: e for e in recorded}
    assert len(recorded) == 3 and all(k.startswith("refused:") for k in by_body)
    [same_body] = [e for e in recorded if e.seen_count == 4]
    assert same_body.reason.startswith("X-Hub-Signature must be") and same_body.detail["remote"] == "testclient"
    assert same_body.detail["headers"]["x-hub-signature"].startswith("md5=") and same_body.detail["bytes"] == len(body)
    assert {e.reason.split(":")[0] for e in recorded} >= {"body is not JSON", "body is JSON list, not an object"}
    with session_factory() as db:
        assert db.execute(select(Ticket)).first() is None
    # A refused body is not a replay of itself: signed properly afterwards, it is processed.
    assert post(client, body).json()["status"] == "accepted"


def test_a_flood_of_forged_deliveries_is_counted_not_recorded_and_jira_still_gets_through(jira_settings, session_factory, enqueued):
    client = TestClient(create_app(jira_settings.model_copy(update={"jira_refusals_per_minute": 3}), session_factory=session_factory, send=enqueued))
    body = (FIXTURES / "mattermost-plugin-jira" / "webhook-issue-created.json").read_bytes()
    forged = [post(client, body + b" " * n, signature=sign("not-our-secret", body + b" " * n)) for n in range(6)]

    assert [r.status_code for r in forged] == [401, 401, 401, 429, 429, 429]
    assert forged[3].headers["Retry-After"] == "20" and "is counted, not recorded" in forged[3].json()["detail"]
    assert len(events(session_factory)) == 3  # one row per recorded refusal; the rest cost no write
    assert post(client, body).status_code == 202 and len(enqueued) == 1  # a valid signature is never limited


def test_the_refusal_limiter_refills_and_reports_what_it_suppressed():
    from crewdesk.intake.jira_webhook import RefusalLimiter

    now = [0.0]
    limiter = RefusalLimiter(2, max_clients=2, clock=lambda: now[0])
    assert [limiter.admit("a")[0] for _ in range(4)] == [True, True, False, False]
    assert limiter.admit("b") == (True, 0)  # each address has its own bucket
    assert limiter.retry_after("a") == 30
    now[0] = 30.0  # one token back (2 per minute)
    assert limiter.admit("a") == (True, 2)  # recorded, with the two suppressed since
    assert limiter.admit("a") == (False, 0)
    limiter.admit("c")  # a third address: the least recently seen ("b") is dropped
    assert set(limiter._buckets) == {"a", "c"}
    assert RefusalLimiter(0).admit("a") == (True, 0)  # 0 = no limit


def test_the_intake_domain_takes_a_delivery_whole_and_refuses_with_typed_errors(jira_settings, session_factory, enqueued):
    """crewdesk.intake.jira_webhook.receive, without HTTP: raw body and headers in, a WebhookAck or a typed refusal
    out (each recorded, then only counted past the limit); the face only maps the refusal's type to a status."""
    from crewdesk.intake.enqueue import Enqueuer
    from crewdesk.intake.jira_webhook import (
        MAX_BODY_BYTES,
        DeliveryMalformed,
        DeliveryTooLarge,
        DeliveryUnauthenticated,
        NoWebhookSecret,
        RefusalLimiter,
        RefusalsLimited,
        WebhookAck,
        receive,
    )

    body = (FIXTURES / "mattermost-plugin-jira" / "webhook-issue-created.json").read_bytes()
    enqueuer = Enqueuer(session_factory=session_factory, send=enqueued)
    limiter = RefusalLimiter(4, clock=lambda: 0.0)  # 4 recorded refusals a minute, and time stands still

    def deliver(raw: bytes, headers: dict[str, str], settings=jira_settings) -> WebhookAck:
        return receive(raw, headers, remote="10.1.2.3", session_factory=session_factory, settings=settings, enqueuer=enqueuer, limiter=limiter)

    refused = [
        (DeliveryUnauthenticated, body, {"X-Hub-Signature": sign("not-our-secret", body)}),
        (DeliveryMalformed, body, {"x-hub-signature": "sha256=xyz"}),
        (DeliveryMalformed, b"[1]", {"X-Hub-Signature": sign(SECRET, b"[1]")}),
        (NoWebhookSecret, body, {"X-Hub-Signature": sign(SECRET, body)}, settings_without_secret(jira_settings)),
        (RefusalsLimited, body, {}),  # the fifth refusal from this address within the minute
        (RefusalsLimited, b" " * (MAX_BODY_BYTES + 1), {}),
    ]
    for kind, raw, headers, *settings in refused:
        with pytest.raises(kind) as caught:
            deliver(raw, headers, *settings)
        assert type(caught.value) is kind
    assert caught.value.retry_after == 15 and "(body over 1000000 bytes) is counted, not recorded" in str(caught.value)
    assert sum(e.seen_count for e in events(session_factory)) == 4 and enqueued == []
    with pytest.raises(DeliveryTooLarge):
        receive(
            b" " * (MAX_BODY_BYTES + 1), {}, remote=None, session_factory=session_factory, settings=jira_settings, enqueuer=enqueuer, limiter=RefusalLimiter(0)
        )

    ack = deliver(body, {"X-HUB-SIGNATURE": sign(SECRET, body)})  # a valid delivery is never limited; header names in any case
    assert isinstance(ack, WebhookAck) and ack.status == "accepted" and enqueued == [ack.ticket_id] and enqueued.committed == [(ack.ticket_id, 1)]
    assert events(session_factory)[-1].detail["headers"]["x-hub-signature"] == sign(SECRET, body)


def settings_without_secret(settings):
    return settings.model_copy(update={"jira_webhook_secret": SecretStr("")})


def test_without_a_secret_every_delivery_is_refused(settings, session_factory):
    client = TestClient(create_app(settings, session_factory=session_factory, send=lambda _ticket_ids: None))
    body = (FIXTURES / "mattermost-plugin-jira" / "webhook-issue-created.json").read_bytes()
    response = post(client, body)
    assert response.status_code == 503 and "no Jira webhook secret" in response.json()["detail"]
    [event] = events(session_factory)
    assert event.status == "rejected"


def test_oversized_body_is_refused(client, session_factory):
    response = post(client, b'{"pad": "' + b"x" * 1_100_000 + b'"}')
    assert response.status_code == 413
    assert events(session_factory)[0].reason.startswith("body over")


def test_trail_shows_messages_and_status_sync(client, session_factory):
    ticket_id = post(client, (FIXTURES / "mattermost-plugin-jira" / "webhook-issue-created.json").read_bytes()).json()["ticket_id"]
    post(client, (FIXTURES / "mattermost-plugin-jira" / "webhook-cloud-comment-created.json").read_bytes())
    post(client, (FIXTURES / "mattermost-plugin-jira" / "webhook-issue-updated-started-working.json").read_bytes())
    reader = {"Authorization": f"Bearer {api_key(session_factory, 'agent', ('tickets:read',))}"}  # the trail is the team's view
    assert client.get(f"/tickets/{ticket_id}/trail").status_code == 401
    trail = client.get(f"/tickets/{ticket_id}/trail", headers=reader).json()
    assert [m["body"] for m in trail["messages"]] == ["Unit test summary\n\nUnit test description, not that long", "Added a comment"]
    assert trail["external_status"] == "In Progress" and [e["name"] for e in trail["events"]] == ["jira_status"]
    assert client.get("/tickets/999999/trail", headers=reader).status_code == 404


# --- posting replies back: a local HTTP server stands in for Jira Cloud ---------------------------------------------


@pytest.fixture
def fake_jira():
    seen: list[dict] = []
    responses: list[tuple[int, dict, dict]] = []  # (status, json, headers); default 201 with a new comment id

    class Handler(JsonStandIn):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append({"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "json": json.loads(raw)})
            status, payload, headers = responses.pop(0) if responses else (201, {"id": str(20000 + len(seen)), "public": json.loads(raw)["public"]}, {})
            self.answer(status, payload, headers)

    with http_stand_in(Handler) as url:
        yield url, seen, responses


def outbound(public: bool) -> OutboundMessage:
    return OutboundMessage(
        message_id=7, ticket_id=1, ticket_external_id="SD-42", customer="c@example.com", subject="s", body="Your refund is on its way.", public=public
    )


def test_reply_request_is_exact_public_and_internal(fake_jira, settings):
    base, seen, _ = fake_jira
    channel = JiraReplyChannel.from_settings(
        settings.model_copy(update={"jira_base_url": base + "/", "jira_user": "bot@example.com", "jira_api_token": SecretStr("tok-123")})
    )
    assert channel.deliver(outbound(public=True)) == "20001"
    assert channel.deliver(outbound(public=False)) == "20002"
    expected_auth = "Basic " + base64.b64encode(b"bot@example.com:tok-123").decode()
    for request, public in zip(seen, (True, False), strict=True):
        assert (request["method"], request["path"]) == ("POST", "/rest/servicedeskapi/request/SD-42/comment")
        assert request["headers"]["authorization"] == expected_auth
        assert request["headers"]["content-type"] == "application/json" and request["headers"]["accept"] == "application/json"
        assert request["json"] == {"body": "Your refund is on its way.", "public": public}


def test_reply_failures(fake_jira):
    base, _seen, responses = fake_jira
    channel = JiraReplyChannel(base_url=base, user="bot@example.com", api_token="t")
    responses.append((429, {"errorMessage": "Rate limit exceeded"}, {"Retry-After": "30"}))
    with pytest.raises(JiraUnavailable, match="retry after 30 s: Rate limit exceeded") as caught:
        channel.deliver(outbound(True))
    assert caught.value.retry_after == 30.0 and isinstance(caught.value, TransientError)
    for status, message in ((404, "Issue does not exist"), (403, "You do not have permission"), (400, "Comment body is required")):
        responses.append((status, {"errorMessage": message}, {}))
        with pytest.raises(DeliveryRefused, match=f"\\({status}\\): {message}"):
            channel.deliver(outbound(True))
    unreachable = JiraReplyChannel(base_url="http://127.0.0.1:9", user="u", api_token="t")
    with pytest.raises(TransientError, match="unreachable"):
        unreachable.deliver(outbound(True))


def _jira_ticket_with_reply(session_factory) -> tuple[int, int, int]:
    with transaction(session_factory) as db:
        ticket, _ = tickets.submit(db=db, ticket_in=TicketIn(source="jira", external_id="SD-42", customer="c@example.com", body="Refund please"))
        reply = tickets.add_message(db=db, ticket=ticket, direction="outbound", body="Your refund is on its way.")
        note = tickets.add_message(db=db, ticket=ticket, direction="internal", body="Refunded order #W1 through Stripe.")
        return ticket.id, reply.id, note.id


def test_deliver_pending_retries_a_503_then_posts(fake_jira, session_factory):
    base, seen, responses = fake_jira
    ticket_id, reply_id, note_id = _jira_ticket_with_reply(session_factory)
    channels = {"jira": JiraReplyChannel(base_url=base, user="bot@example.com", api_token="t")}
    responses.append((503, {"errorMessage": "Service Unavailable"}, {"Retry-After": "5"}))
    with pytest.raises(TransientError):  # the deliver_replies task retries on this
        deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=channels)
    report = deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=channels)
    assert report.sent == [reply_id] and report.retry == []
    assert [(r["json"]["public"], r["json"]["body"][:4]) for r in seen] == [(True, "Your"), (False, "Refu"), (True, "Your")]
    with session_factory() as db:
        reply, note = db.get(Message, reply_id), db.get(Message, note_id)
        assert reply.delivered_at is not None and reply.external_id == "20003" and reply.delivery_attempts == 2
        assert note.delivered_at is not None and note.external_id == "20002" and note.delivery_attempts == 1


def test_deliver_pending_gives_up_on_a_404(fake_jira, session_factory):
    base, _seen, responses = fake_jira
    ticket_id, reply_id, note_id = _jira_ticket_with_reply(session_factory)
    responses.append((404, {"errorMessage": "Issue does not exist or you do not have permission to see it."}, {}))
    report = deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels={"jira": JiraReplyChannel(base_url=base, user="u", api_token="t")})
    assert report.refused == [reply_id] and report.sent == [note_id]
    with session_factory() as db:
        assert "(404)" in db.get(Message, reply_id).delivery_error and db.get(Message, reply_id).delivered_at is None
        assert [e.name for e in db.execute(select(AuditEvent).where(AuditEvent.kind == "delivery").order_by(AuditEvent.id)).scalars()] == ["refused", "sent"]


# --- the ticket's final status mirrored as a Jira transition (a local server plays the issue's workflow) ------------

WORKFLOW = {  # status -> transitions offered from it: (id, name, to)
    "Waiting for support": [("5", "Resolve this issue", "Resolved"), ("7", "Escalate", "Escalated")],
    "Escalated": [("5", "Resolve this issue", "Resolved")],
    "Resolved": [("9", "Reopen", "Waiting for support")],
}


@pytest.fixture
def jira_workflow():
    """GET /rest/api/3/issue/{key}?fields=status&expand=transitions and POST .../transitions as Jira Cloud answers them
    (an issue in "Waiting for support"); comments are accepted as in fake_jira. `fail`: HTTP statuses for the next
    transition requests."""
    state = {"status": "Waiting for support", "seen": [], "fail": []}

    class Handler(JsonStandIn):
        def do_GET(self):
            state["seen"].append(("GET", self.path, None))
            assert self.path == "/rest/api/3/issue/SD-42?fields=status&expand=transitions", self.path
            offered = [{"id": i, "name": n, "to": {"name": to, "id": "1" + i}} for i, n, to in WORKFLOW[state["status"]]]
            self.answer(200, {"key": "SD-42", "fields": {"status": {"name": state["status"]}}, "transitions": offered})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["seen"].append(("POST", self.path, body))
            if self.path == "/rest/api/3/issue/SD-42/transitions":
                if state["fail"]:
                    return self.answer(state["fail"].pop(0), {"errorMessages": ["Service Unavailable"]})
                [to] = [to for i, _, to in WORKFLOW[state["status"]] if i == body["transition"]["id"]]
                state["status"] = to
                return self.answer(204, None)
            self.answer(201, {"id": str(30000 + len(state["seen"]))})

    with http_stand_in(Handler) as url:
        yield url, state


def _ended_jira_ticket(session_factory, status: str) -> int:
    ticket_id, _, _ = _jira_ticket_with_reply(session_factory)
    with transaction(session_factory) as db:
        db.get(Ticket, ticket_id).status = status
    return ticket_id


def _delivery_events(session_factory, ticket_id: int) -> list[tuple[str, str | None]]:
    with session_factory() as db:
        return [
            (e.name, e.error)
            for e in db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "delivery").order_by(AuditEvent.id)).scalars()
        ]


def test_a_resolved_ticket_moves_its_issue_after_the_reply_and_only_once(jira_workflow, session_factory):
    base, state = jira_workflow
    ticket_id = _ended_jira_ticket(session_factory, "resolved")
    channels = {"jira": JiraReplyChannel(base_url=base, user="u", api_token="t", statuses={"resolved": "resolved", "escalated": "Escalated"})}

    report = deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=channels)
    again = deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=channels)  # a repeated delivery task

    assert report.status == "Resolved" and again.status == "Resolved" and again.sent == []
    assert [(method, path.split("?")[0]) for method, path, _ in state["seen"]] == [
        ("POST", "/rest/servicedeskapi/request/SD-42/comment"),
        ("POST", "/rest/servicedeskapi/request/SD-42/comment"),  # reply, then note
        ("GET", "/rest/api/3/issue/SD-42"),
        ("POST", "/rest/api/3/issue/SD-42/transitions"),  # then the issue moves
        ("GET", "/rest/api/3/issue/SD-42"),
    ]  # the repeat finds it there and moves nothing
    assert state["seen"][3][2] == {"transition": {"id": "5"}} and state["status"] == "Resolved"
    with session_factory() as db:
        assert db.get(Ticket, ticket_id).external_status == "Resolved"
    assert [name for name, _ in _delivery_events(session_factory, ticket_id)] == ["sent", "sent", "status_synced", "status_already"]


def test_an_escalated_ticket_takes_its_own_transition_and_a_missing_one_is_refused_and_recorded(jira_workflow, session_factory):
    base, state = jira_workflow
    escalated = _ended_jira_ticket(session_factory, "escalated")
    channel = JiraReplyChannel(base_url=base, user="u", api_token="t", statuses={"resolved": "Resolved", "escalated": "Escalated"})
    assert deliver_pending(session_factory=session_factory, ticket_id=escalated, channels={"jira": channel}).status == "Escalated"
    assert state["seen"][-1][2] == {"transition": {"id": "7"}}

    state["status"] = "Resolved"  # a workflow with no way from here to Escalated
    with transaction(session_factory) as db:
        db.get(Ticket, escalated).status = "escalated"
        tickets.add_message(db=db, ticket=db.get(Ticket, escalated), direction="internal", body="Needs a person again.")
    report = deliver_pending(session_factory=session_factory, ticket_id=escalated, channels={"jira": channel})
    assert report.status is None and report.sent and state["status"] == "Resolved"
    name, error = _delivery_events(session_factory, escalated)[-1]
    assert name == "status_refused" and error == "Jira offers no transition from Resolved to Escalated on SD-42 (offered: Reopen -> Waiting for support)"


def test_a_503_on_the_transition_is_retried_without_posting_the_reply_again(jira_workflow, session_factory):
    base, state = jira_workflow
    ticket_id = _ended_jira_ticket(session_factory, "resolved")
    channels = {"jira": JiraReplyChannel(base_url=base, user="u", api_token="t", statuses={"resolved": "Resolved"})}
    state["fail"] = [503]
    with pytest.raises(TransientError, match="Jira answered 503 moving SD-42 to Resolved: Service Unavailable"):
        deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=channels)  # the task retries on this
    report = deliver_pending(session_factory=session_factory, ticket_id=ticket_id, channels=channels)
    posts = [path for method, path, _ in state["seen"] if method == "POST"]
    assert report.status == "Resolved" and report.sent == []
    assert posts.count("/rest/servicedeskapi/request/SD-42/comment") == 2 and posts.count("/rest/api/3/issue/SD-42/transitions") == 2
    assert [name for name, _ in _delivery_events(session_factory, ticket_id)] == ["sent", "sent", "status_synced"]
