"""One Jira webhook delivery, start to finish: refuse what cannot be authenticated or read (recording each refusal, within
the per-address limit), then parse, record and apply it in one short transaction and queue what needs a run after the
commit. Faces hand over the raw body and headers and answer with the WebhookAck, or with the status their error table
gives each WebhookRefused subclass (crewdesk/api/errors.py); the crew runs on the queue."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.db import transaction
from crewdesk.errors import CrewdeskError
from crewdesk.intake import jira
from crewdesk.intake.admit import admit
from crewdesk.intake.enqueue import Enqueuer
from crewdesk.settings import JiraSettings

MAX_BODY_BYTES = 1_000_000  # the largest fixture is 47 kB; anything near this is not a Jira delivery
# Request headers kept as evidence with every delivery (each cut to 200 characters, NUL bytes dropped).
EVIDENCE_HEADERS = ("user-agent", "content-type", "x-hub-signature", "x-atlassian-webhook-identifier", "x-atlassian-webhook-retry", "x-forwarded-for")


class WebhookAck(BaseModel):
    status: Literal["accepted", "duplicate", "ignored", "rejected"]
    ticket_id: int | None
    reason: str | None = None


class WebhookRefused(CrewdeskError):
    """A delivery refused before processing. It was recorded as a rejected InboundEvent, except a RefusalsLimited one."""


class NoWebhookSecret(WebhookRefused):
    """No webhook secret is configured: no delivery can be authenticated (Jira retries until one is)."""


class DeliveryUnauthenticated(WebhookRefused):
    """The signature is missing, or does not match the body."""


class DeliveryMalformed(WebhookRefused):
    """A signature header that is not `sha256=<hex>`, or a body that is not a JSON object."""


class DeliveryTooLarge(WebhookRefused):
    """A body over MAX_BODY_BYTES."""


class RefusalsLimited(WebhookRefused):
    """Too many refused deliveries from this address: this one is counted, not recorded. `retry_after`: seconds until
    the next refusal from it would be recorded."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def receive(
    body: bytes,
    headers: Mapping[str, str],
    *,
    remote: str | None,
    session_factory: sessionmaker[Session],
    settings: JiraSettings,
    enqueuer: Enqueuer,
    limiter: jira.RefusalLimiter,
) -> WebhookAck:
    """Authenticate, record and apply one delivery. `body` is the raw body, or as much of it as the face read: one
    over MAX_BODY_BYTES is refused without reading the rest. `headers` as received (names in any case); `remote` is the
    sender's address, which the refusal `limiter` counts by. Raises a WebhookRefused subclass for a refused delivery."""
    headers = {name.lower(): value for name, value in headers.items()}
    evidence = {
        "remote": remote,
        "bytes": len(body),
        "headers": {k: v[:200].replace("\x00", "") for k, v in headers.items() if k in EVIDENCE_HEADERS},
    }

    def refuse(kind: type[WebhookRefused], reason: str) -> WebhookRefused:
        admitted, suppressed = limiter.admit(remote)
        if not admitted:
            return RefusalsLimited(
                f"too many refused deliveries from {remote}; this one ({reason}) is counted, not recorded", retry_after=limiter.retry_after(remote)
            )
        with transaction(session_factory) as session:
            jira.record_refused(db=session, body=body, reason=reason, detail={**evidence, "suppressed_before": suppressed} if suppressed else evidence)
        return kind(reason)

    if len(body) > MAX_BODY_BYTES:
        raise refuse(DeliveryTooLarge, f"body over {MAX_BODY_BYTES} bytes")
    try:
        jira.verify_signature(settings.jira_webhook_secret.get_secret_value(), body, headers.get("x-hub-signature"))
    except jira.WebhookNotConfigured as exc:
        raise refuse(NoWebhookSecret, str(exc)) from exc
    except jira.SignatureMalformed as exc:
        raise refuse(DeliveryMalformed, str(exc)) from exc
    except jira.SignatureError as exc:  # missing or forged
        raise refuse(DeliveryUnauthenticated, str(exc)) from exc
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise refuse(DeliveryMalformed, f"body is not JSON: {str(exc)[:200]}") from exc
    if not isinstance(payload, dict):
        raise refuse(DeliveryMalformed, f"body is JSON {type(payload).__name__}, not an object")
    event = jira.parse_event(payload)
    delivery_id = jira.delivery_key(body=body, identifier=headers.get("x-atlassian-webhook-identifier"))
    with transaction(session_factory) as session:
        outcome = jira.handle_event(db=session, event=event, delivery_id=delivery_id, settings=settings, detail=evidence)
    admit([outcome], enqueuer=enqueuer)  # after the commit: the worker always finds the ticket and its message
    return WebhookAck(status=outcome.status, ticket_id=outcome.ticket_id, reason=outcome.reason)
