"""Limits on what one request and one caller may send (issue 20).

- `BodyLimit`, a pure ASGI middleware: a request whose Content-Length is over the limit is answered 413 without
  reading it; one without (chunked) is counted as it streams in and answered 413 as soon as it crosses the limit, so
  no body over the limit is ever held whole. The Jira webhook keeps its own cap (MAX_BODY_BYTES), under which a
  refused delivery is recorded; the middleware leaves it room above that.
- `RateLimits`: per caller (the API key, or the OIDC subject), a maintained limiter (`limits`, moving window) on the
  broker's Redis, shared by every API process. Submitting and writing on tickets count together; deciding approvals
  counts apart. Over the limit: 429 with Retry-After. When Redis cannot be reached the API fails open (the request
  goes on, one warning a minute in the log): a limiter that answered 500 to every call would take the API down with
  Redis, and a lost Redis already stops the queue, which the queue-depth metrics and the reconciler report."""

from __future__ import annotations

import math
import threading
import time
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crewdesk.api.auth import ApprovalDecider, TicketSubmitter
from crewdesk.api.common import Responses
from crewdesk.api.problems import problem, problem_response
from crewdesk.auth.service import Principal
from crewdesk.errors import CrewdeskError
from crewdesk.intake.jira_webhook import MAX_BODY_BYTES as WEBHOOK_MAX_BODY_BYTES
from crewdesk.logging import get_logger

log = get_logger(__name__)

WEBHOOK_PATH = "/webhooks/jira"
WEBHOOK_ROOM = 2 * WEBHOOK_MAX_BODY_BYTES  # the route refuses (and records) anything over its own cap first


TOO_LARGE: Responses = {413: problem_response("The body is over the limit (CREWDESK_API_MAX_BODY_BYTES).")}
RATE_LIMITED: Responses = {
    429: problem_response(
        "This caller is over its rate limit (CREWDESK_API_RATE_LIMIT).",
        {"Retry-After": {"description": "Seconds until the caller may send again.", "schema": {"type": "integer"}}},
    )
}


class _TooLarge(Exception):
    """Raised into the app from `receive` once the body crosses the limit (the 413 is already sent)."""


class BodyLimit:
    """Refuse request bodies over `max_bytes` with a 413 problem, before they are read in full. 0 = no limit."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _limit(self, scope: Scope) -> int:
        return max(self.max_bytes, WEBHOOK_ROOM) if scope.get("path") == WEBHOOK_PATH else self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        received = 0
        refused = started = False

        async def counted() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started:
                        refused = True
                        await self._refuse(scope, receive, send, limit)
                    raise _TooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if refused:  # the 413 went out: whatever the app makes of the interrupted body is dropped
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except _TooLarge:
            pass

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem(413, "Content Too Large", f"the request body is over {limit} bytes", headers={"Connection": "close"})
        await response(scope, receive, send)


# The routes that take no credentials: health, and the webhook, which is signed instead (crewdesk/intake/jira_webhook.py).
OPEN_PATHS = frozenset({"/healthz", WEBHOOK_PATH})
# The support console, mounted when configured, proves its users by a session cookie, not an API key: its own pages
# send a request without a session to its login page (crewdesk/console/security.py).
CONSOLE_PREFIX = "/console"


class CredentialsFirst:
    """A request for any route but the open ones that carries no credentials at all (no Authorization, no X-API-Key)
    is answered 401 here, before anything of it is read or parsed: FastAPI parses a JSON body before the security
    dependencies run, so a malformed body sent without a key was told 400 or 422, and a caller without credentials
    must learn nothing but 401. The credentials a request does carry are verified by the routes' Security
    dependencies. Paths and methods that no route serves are left to the app (404, 405)."""

    def __init__(self, app: ASGIApp, *, router: Router) -> None:
        self.app, self.router = app, router

    def _guarded(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        if path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"):
            return False
        return path not in OPEN_PATHS and any(route.matches(scope)[0] == Match.FULL for route in self.router.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._guarded(scope):
            headers = dict(scope.get("headers") or ())
            if not (headers.get(b"authorization", b"").strip() or headers.get(b"x-api-key", b"").strip()):
                detail = "an API key is required: Authorization: Bearer <key>, or X-API-Key (crewdesk apikey create)"
                await problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="crewdesk"'})(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RateLimited(CrewdeskError):
    """Over the caller's rate limit: answered 429 with Retry-After."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimits:
    """`limit` (e.g. "60/minute", the `limits` notation; several separated by ";") per caller and group, counted on
    the Redis at `redis_url`. Connects lazily: an API whose Redis is down still starts."""

    NAMESPACE = "crewdesk-api"

    def __init__(self, limit: str, redis_url: str, *, warn_every_s: float = 60.0) -> None:
        self.items: list[RateLimitItem] = [parse(part) for part in limit.split(";") if part.strip()]
        self.redis_url = redis_url
        self.warn_every_s = warn_every_s
        self._limiter: MovingWindowRateLimiter | None = None
        self._lock = threading.Lock()
        self._warned_at = -math.inf

    def _strategy(self) -> MovingWindowRateLimiter:
        with self._lock:
            if self._limiter is None:
                storage = storage_from_string(self.redis_url, wrap_exceptions=True, socket_connect_timeout=0.5, socket_timeout=0.5)
                self._limiter = MovingWindowRateLimiter(storage)
            return self._limiter

    def hit(self, group: str, caller: str) -> None:
        """Count one request of `caller` in `group`; raises RateLimited when it is over a limit."""
        if not self.items:
            return
        try:
            limiter = self._strategy()
            for item in self.items:
                if not limiter.hit(item, self.NAMESPACE, group, caller):
                    reset_at, _remaining = limiter.get_window_stats(item, self.NAMESPACE, group, caller)
                    wait = max(1, math.ceil(reset_at - time.time()))
                    raise RateLimited(f"over the rate limit of {item} for {group}; try again in {wait} s", retry_after=wait)
        except (StorageError, OSError) as exc:  # Redis unreachable or failing: fail open, and say so
            now = time.monotonic()
            if now - self._warned_at >= self.warn_every_s:
                self._warned_at = now
                log.warning("ratelimit.unavailable", error=f"{type(exc).__name__}: {str(exc)[:200]}", action="requests are not limited until it answers")


def caller_id(request: Request, principal: Principal) -> str:
    """Whom a limit counts: the API key (its row id and its public prefix, so a key made after another was deleted
    starts afresh), else the principal's name (an OIDC subject)."""
    for header in ("authorization", "x-api-key"):
        words = request.headers.get(header, "").split()
        parts = words[-1].split("_", 2) if words else []
        if len(parts) == 3 and parts[0] == "cdk":
            return f"key:{principal.key_id}:{parts[1]}"
    return f"principal:{principal.name}"


def _hit(request: Request, group: str, principal: Principal) -> None:
    limits: RateLimits = request.app.state.rate_limits
    limits.hit(group, caller_id(request, principal))


def tickets_limit(request: Request, caller: TicketSubmitter) -> None:
    _hit(request, "tickets", caller)


def approvals_limit(request: Request, caller: ApprovalDecider) -> None:
    _hit(request, "approvals", caller)


# A route takes one as a parameter after its caller: `_limit: TicketsLimit`.
TicketsLimit = Annotated[None, Depends(tickets_limit)]
ApprovalsLimit = Annotated[None, Depends(approvals_limit)]


async def _rate_limited(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimited)
    return problem(429, "Too Many Requests", str(exc), headers={"Retry-After": str(exc.retry_after)})


def install(app: FastAPI, *, max_body_bytes: int, rate_limit: str, redis_url: str) -> None:
    """Around the whole app, the credentials check and the body limit; and the rate limits the routes'
    TicketsLimit/ApprovalsLimit count on."""
    app.state.rate_limits = RateLimits(rate_limit, redis_url)
    app.add_exception_handler(RateLimited, _rate_limited)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(CredentialsFirst, router=app.router)  # added last: the outermost, so nothing of a request without credentials is read
