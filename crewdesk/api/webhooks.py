"""Webhooks: a Jira (Service Management) delivery, handed whole to the intake domain (crewdesk/intake/jira_webhook.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from crewdesk.api.common import ErrorView, Responses
from crewdesk.api.deps import ServicesDep
from crewdesk.intake import jira_events
from crewdesk.intake.jira_webhook import MAX_BODY_BYTES, WebhookAck, receive

router = APIRouter()

# The refusals' statuses are chosen in crewdesk/api/errors.py; these document them.
WEBHOOK_ERRORS: Responses = {
    400: {"model": ErrorView, "description": "Malformed X-Hub-Signature, or a body that is not a JSON object."},
    401: {
        "model": ErrorView,
        "description": "Missing, forged or SHA-1 X-Hub-Signature; or a delivery whose timestamp is outside the window (stale, replayed, or absent).",
    },
    413: {"model": ErrorView, "description": "Body over 1 MB."},
    429: {"model": ErrorView, "description": "Too many refused deliveries from this address: counted, not recorded one by one (Retry-After)."},
    503: {"model": ErrorView, "description": "No webhook secret is configured: every delivery is refused (Jira retries it later)."},
}
WEBHOOK_BODY = {
    "requestBody": {
        "required": True,
        "description": "A Jira webhook delivery, signed in X-Hub-Signature.",
        "content": {"application/json": {"schema": jira_events.PAYLOAD_SCHEMA}},
    },
    "parameters": [
        {
            "name": "X-Hub-Signature",
            "in": "header",
            "required": True,
            "description": "sha256=<hex HMAC-SHA256 of the raw body with the webhook secret>",
            "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
        },
        {
            "name": "X-Atlassian-Webhook-Identifier",
            "in": "header",
            "required": False,
            "description": "Jira Cloud's delivery id, repeated on retries: a repeat is processed once.",
            "schema": {"type": "string"},
        },
    ],
}


@router.post("/webhooks/jira", response_model=WebhookAck, status_code=202, responses=WEBHOOK_ERRORS, openapi_extra=WEBHOOK_BODY)
async def jira_webhook(request: Request, services: ServicesDep) -> WebhookAck:
    """A Jira (Service Management) webhook delivery. Answers 202 once the delivery is recorded; every refused
    delivery is recorded too. Without CREWDESK_JIRA_WEBHOOK_SECRET every delivery gets 503, so Jira keeps
    retrying until the secret is set rather than having its deliveries accepted unauthenticated."""
    body = bytearray()
    async for chunk in request.stream():  # stop reading past the cap instead of buffering whatever is sent
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            break
    return await run_in_threadpool(
        receive,
        bytes(body),
        dict(request.headers),
        remote=request.client.host if request.client else None,
        session_factory=services.session_factory,
        settings=services.settings,
        enqueuer=services.enqueuer,
        limiter=services.refusals,
    )
