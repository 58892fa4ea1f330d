"""One Jira webhook delivery, start to finish: refuse what cannot be authenticated or read (recording each refusal, within
the per-address limit), then parse, record and apply it in one short transaction and queue what needs a run after the
commit. Faces hand over the raw body and headers and answer with the WebhookAck, or with the status their error table
gives each WebhookRefused subclass (crewdesk/api/errors.py); the crew runs on the queue."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.db import transaction
from crewdesk.errors import CrewdeskError
from crewdesk.intake import jira
from crewdesk.intake.admit import admit
from crewdesk.intake.enqueue import Enqueuer
from crewdesk.intake.jira_events import parse_event
from crewdesk.ratelimit import TokenBucket
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


class DeliveryStale(DeliveryUnauthenticated):
    """A signed delivery whose payload timestamp is outside the window (old, or ahead of our clock), or absent: a
    replay of a captured delivery looks like this. Answered as an unauthenticated one (401)."""


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
    limiter: RefusalLimiter,
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
        verify_signature(settings.jira_webhook_secret.get_secret_value(), body, headers.get("x-hub-signature"))
    except WebhookNotConfigured as exc:
        raise refuse(NoWebhookSecret, str(exc)) from exc
    except SignatureMalformed as exc:
        raise refuse(DeliveryMalformed, str(exc)) from exc
    except SignatureError as exc:  # missing, forged, or signed with SHA-1
        raise refuse(DeliveryUnauthenticated, str(exc)) from exc
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise refuse(DeliveryMalformed, f"body is not JSON: {str(exc)[:200]}") from exc
    if not isinstance(payload, dict):
        raise refuse(DeliveryMalformed, f"body is JSON {type(payload).__name__}, not an object")
    stale = staleness(payload.get("timestamp"), max_age_s=settings.jira_webhook_max_age_seconds, now_ms=time.time() * 1000)
    if stale:
        raise refuse(DeliveryStale, stale)
    event = parse_event(payload)
    delivery_id = jira.delivery_key(body=body, identifier=headers.get("x-atlassian-webhook-identifier"))
    with transaction(session_factory) as session:
        outcome = jira.handle_event(db=session, event=event, delivery_id=delivery_id, settings=settings, detail=evidence)
    admit([outcome], enqueuer=enqueuer)  # after the commit: the worker always finds the ticket and its message
    return WebhookAck(status=outcome.status, ticket_id=outcome.ticket_id, reason=outcome.reason)


class SignatureError(CrewdeskError):
    """A delivery whose signature cannot be accepted; the subclass says why (the HTTP face maps it to a status)."""


class WebhookNotConfigured(SignatureError):
    """No webhook secret is configured, so no delivery can be authenticated."""


class SignatureMissing(SignatureError):
    pass


class SignatureMalformed(SignatureError):
    pass


class SignatureForged(SignatureError):
    pass


class SignatureWeak(SignatureError):
    """Signed with HMAC-SHA1, which is no longer taken."""


_DIGESTS = {"sha256": (hashlib.sha256, 64)}
_HEX = re.compile(r"[0-9a-fA-F]+")
FUTURE_SKEW_S = 60  # a sender's clock may run this far ahead of ours


def staleness(timestamp: object, *, max_age_s: float, now_ms: float) -> str | None:
    """Why a delivery with this payload `timestamp` (Jira's, ms since the epoch) is not fresh, or None when it is.
    The timestamp is inside the signed body, so a replay of a captured delivery cannot change it."""
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        return "the delivery has no timestamp (ms since the epoch): a fresh delivery cannot be told from a replay"
    age_s = (now_ms - timestamp) / 1000
    if age_s > max_age_s:
        return f"the delivery is {age_s:.0f} s old, older than {max_age_s:.0f} s (CREWDESK_JIRA_WEBHOOK_MAX_AGE_SECONDS): stale or replayed"
    if age_s < -FUTURE_SKEW_S:
        return f"the delivery is stamped {-age_s:.0f} s in the future (over {FUTURE_SKEW_S} s ahead of our clock)"
    return None


def verify_signature(secret: str, body: bytes, header: str | None) -> None:
    """Check `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body>` (Atlassian's format). sha1 signatures, which
    older senders make, are refused (SignatureWeak). Raises a SignatureError subclass; returns None when the body was
    signed with `secret`."""
    if not secret:
        raise WebhookNotConfigured("no Jira webhook secret is configured (CREWDESK_JIRA_WEBHOOK_SECRET): every delivery is refused")
    if header is None or not header.strip():
        raise SignatureMissing(f"no {jira.SIGNATURE_HEADER} header")
    method, sep, signature = header.strip().partition("=")
    method = method.strip().lower()
    signature = signature.strip()
    if sep and method == "sha1":
        raise SignatureWeak(f"{jira.SIGNATURE_HEADER} is signed with sha1, which is refused: configure the webhook to sign with sha256")
    if not sep or method not in _DIGESTS:
        raise SignatureMalformed(f"{jira.SIGNATURE_HEADER} must be sha256=<hex> (got method {method[:16]!r})")
    digest, length = _DIGESTS[method]
    if len(signature) != length or not _HEX.fullmatch(signature):
        raise SignatureMalformed(f"{jira.SIGNATURE_HEADER} {method} signature must be {length} hex digits")
    expected = hmac.new(secret.encode(), body, digest).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise SignatureForged(f"{jira.SIGNATURE_HEADER} does not match the body: not signed with our webhook secret")


def sign(secret: str, body: bytes) -> str:
    """The header value Jira sends for `body` (tests, the benchmark's load generator)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class _Client:
    bucket: TokenBucket
    suppressed: int = 0  # refusals answered 429 since the last recorded one


class RefusalLimiter:
    """Per client address, at most `per_minute` refused deliveries are recorded (a token bucket); past that the API
    answers 429 and only counts them, so a flood of forged requests cannot flood the database. The count is written
    with the next refusal that is recorded. Deliveries with a valid signature are never limited. In-process: each
    API process keeps its own buckets, for at most `max_clients` addresses (the least recently seen go first)."""

    def __init__(self, per_minute: int, *, max_clients: int = 10_000, clock=time.monotonic) -> None:
        self.per_minute, self.max_clients, self.clock = per_minute, max_clients, clock
        self._buckets: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, client: str | None) -> tuple[bool, int]:
        """(record this refusal?, refusals suppressed since the last recorded one, returned once when admitted)."""
        if self.per_minute <= 0:
            return True, 0
        key = client or "(unknown)"
        with self._lock:
            entry = self._buckets.pop(key, None) or _Client(TokenBucket(self.per_minute / 60.0, capacity=float(self.per_minute), clock=self.clock))
            self._buckets[key] = entry
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            if not entry.bucket.try_take():
                entry.suppressed += 1
                return False, 0
            count, entry.suppressed = entry.suppressed, 0
            return True, count

    def retry_after(self, client: str | None) -> int:
        """Seconds until this client's next refusal would be recorded."""
        with self._lock:
            entry = self._buckets.get(client or "(unknown)")
            return 1 if entry is None else max(1, int(entry.bucket.wait() + 0.999))
