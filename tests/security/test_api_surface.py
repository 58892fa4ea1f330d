"""The whole OpenAPI surface scanned by schemathesis without credentials, issue 20: every generated case (valid and
invalid bodies, paths and queries) is sent with no API key and no webhook signature, and every answer must be a 401,
except /healthz's 200 (and 405 for a method the path does not have). (The scan with a key, where no answer may be a 5xx, is tests/integration/test_api_schema.py.)"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr

from crewdesk.api import create_app
from crewdesk.settings import load_settings

_schema_app = create_app(load_settings(database_url="sqlite://"), send=lambda _ticket_ids: None)
schema = schemathesis.openapi.from_dict(_schema_app.openapi())

CREDENTIALS = {"authorization", "x-api-key", "x-hub-signature"}


@pytest.fixture
def bare_app(settings, session_factory, make_ticket):
    make_ticket("Cancel my order")  # ticket 1 exists: an unauthenticated caller still learns nothing about it
    update = {"jira_webhook_secret": SecretStr("surface-secret"), "jira_refusals_per_minute": 0}
    app = create_app(settings.model_copy(update=update), session_factory=session_factory, send=lambda _ticket_ids: None)
    assert app.openapi() == schema.raw_schema
    return app


@schema.parametrize()
@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_without_credentials_every_route_but_health_answers_401(case, bare_app):
    case.headers = {name: value for name, value in (case.headers or {}).items() if name.lower() not in CREDENTIALS}

    response = case.call(app=bare_app, timeout=60)

    # schemathesis also tries methods a path does not have: a 405 says nothing but the documented ones.
    documented = case.method.upper() == case.operation.method.upper()
    expected = 405 if not documented else 200 if case.path == "/healthz" else 401
    assert response.status_code == expected, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    if expected == 401 and case.path != "/webhooks/jira":
        [content_type] = response.headers["content-type"]  # schemathesis keeps each header's values in a list
        assert content_type.startswith("application/problem+json")
