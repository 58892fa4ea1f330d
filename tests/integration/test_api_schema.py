"""The published OpenAPI schema, checked by schemathesis: every operation's generated cases (valid and invalid) run
against the ASGI app and the real PostgreSQL, and every response must match the schema and never be a 5xx.

The queue is a no-op `enqueue`. Webhook bodies are signed with the test secret here (schemathesis cannot compute an
HMAC), so the webhook's processing is fuzzed too; its refusals are covered in tests/integration/test_jira_webhook.py."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr
from schemathesis.specs.openapi.checks import negative_data_rejection
from sqlalchemy import update

import crews.approvals  # noqa: F401  (imports CrewAI now: its first import takes seconds, too long inside a request)
from crewdesk.api import create_app
from crewdesk.approvals.models import Approval
from crewdesk.db import transaction
from crewdesk.intake.jira_webhook import sign
from crewdesk.settings import load_settings
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Ticket
from tests.helpers import api_key

SECRET = "schema-test-secret"


# The schema is loaded once from an app on an unused engine (the schema does not depend on settings), because
# schemathesis' lazy `from_fixture` loader breaks on pytest 9 (it rewrites `node._nodeid`). Each generated case is
# then sent to `live_app`, built per operation on the test database.
# The document is read from the app itself: /openapi.json is served only to a key holder (crewdesk/api/auth.py).
_schema_app = create_app(load_settings(database_url="sqlite://"), send=lambda _ticket_ids: None)
schema = schemathesis.openapi.from_dict(_schema_app.openapi())
schema.app = _schema_app  # cases go through the ASGI transport (call_and_validate(app=...)), as from_asgi sets it


KEY: dict[str, str] = {}


@schema.auth(refresh_interval=None).apply_to(path_regex="^/(?!webhooks/)")  # the webhook is authenticated by its HMAC signature
class ApiKeyAuth:
    """Every case is sent with a real admin key of the test database (crewdesk/api/auth.py); schemathesis' ignored_auth
    check also sends them without it and with a wrong one, and expects 401."""

    def get(self, case, context):
        return KEY.get("current", "cdk_collecting_none")  # before the fixture: a refusal, refetched on 401 (retry_on)

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture
def live_app(settings, session_factory, make_ticket):
    # Rows with small ids, so generated ids sometimes hit something: a ticket with a reply, and a pending approval.
    ticket_id = make_ticket("Cancel my order")
    with transaction(session_factory) as db:
        tickets.add_message(db=db, ticket=db.get(Ticket, ticket_id), direction="outbound", body="Done.")
        db.execute(update(Ticket).values(status="awaiting_approval"))
        db.add(
            Approval(
                ticket_id=ticket_id, action="calculate", arguments={"expression": "2*21"}, idempotency_key="k-schema", requested_by="billing", reason="test"
            )
        )
    app = create_app(settings.model_copy(update={"jira_webhook_secret": SecretStr(SECRET)}), session_factory=session_factory, send=lambda _ticket_ids: None)
    assert app.openapi() == schema.raw_schema
    KEY["current"] = api_key(session_factory, "schemathesis", ("admin",))  # this operation's cases are sent with it
    return app


@schema.parametrize()
@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case, live_app):
    excluded = []
    # Sign only where the case carries a signature header: a case without one tests that it is required.
    if case.path == "/webhooks/jira" and "X-Hub-Signature" in (case.headers or {}) and case.body is not None:
        try:
            # What `requests` sends for json=: json.dumps with its default separators, UTF-8.
            raw = json.dumps(case.body, allow_nan=False).encode()
        except (TypeError, ValueError):
            raw = None
        if raw is not None:
            case.headers = {**case.headers, "X-Hub-Signature": sign(SECRET, raw)}
            # A signed delivery is answered 202 whatever its shape (recorded as ignored or rejected with a reason):
            # Jira retries, and finally disables, a webhook that keeps answering 4xx. The documented body is what we
            # read, not a contract we enforce. Every other check, "never a 5xx" included, still applies.
            excluded.append(negative_data_rejection)
    case.call_and_validate(app=live_app, excluded_checks=excluded, timeout=60)  # 2 busy cores: schemathesis' 10 s default is too tight
