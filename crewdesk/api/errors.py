"""Typed errors to HTTP status codes, in one place: routes raise the domain's errors and never choose a status.

Starlette picks the handler of the nearest class in the exception's MRO, and `status_of` looks the status up the same
way: ApprovalNotFound is a NotFound (404), ApprovalDecided and IllegalTransition are Conflicts (409)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from crewdesk.errors import Conflict, Forbidden, IdentityProviderUnavailable, InvalidTicket, NotFound, Unauthenticated
from crewdesk.intake.jira_webhook import DeliveryMalformed, DeliveryTooLarge, DeliveryUnauthenticated, NoWebhookSecret, RefusalsLimited

STATUS_OF: dict[type[Exception], int] = {
    Unauthenticated: 401,  # problem+json, with WWW-Authenticate (crewdesk/api/auth.py)
    Forbidden: 403,  # problem+json
    IdentityProviderUnavailable: 503,  # the OIDC provider's keys could not be fetched (crewdesk/auth/oidc.py)
    NotFound: 404,
    Conflict: 409,
    InvalidTicket: 422,  # as a body that fails TicketIn's validation
    # Jira webhook refusals (crewdesk/intake/jira_webhook.py)
    DeliveryMalformed: 400,  # a malformed X-Hub-Signature, or a body that is not a JSON object
    DeliveryUnauthenticated: 401,  # a missing or forged X-Hub-Signature
    DeliveryTooLarge: 413,
    RefusalsLimited: 429,  # with Retry-After
    NoWebhookSecret: 503,  # Jira retries later
}


def status_of(exc: Exception) -> int:
    return next(STATUS_OF[cls] for cls in type(exc).__mro__ if cls in STATUS_OF)


async def _answer(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, Unauthenticated | Forbidden):  # RFC 9457 problem details
        status = status_of(exc)
        return JSONResponse(
            {"type": "about:blank", "title": "Unauthorized" if status == 401 else "Forbidden", "status": status, "detail": str(exc)},
            status_code=status,
            media_type="application/problem+json",
            headers={"WWW-Authenticate": 'Bearer realm="crewdesk"'} if status == 401 else None,
        )
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RefusalsLimited) else None
    return JSONResponse({"detail": str(exc)}, status_code=status_of(exc), headers=headers)


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's 405 names only the methods of the first route on the path; a path served by several routes (GET and
    POST /tickets/{id}/messages) lists them all in Allow, as RFC 9110 asks."""
    assert isinstance(exc, HTTPException)
    if exc.status_code != 405:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    methods = sorted({m for route in request.app.router.routes if route.matches(request.scope)[0] != Match.NONE for m in getattr(route, "methods", None) or ()})
    return JSONResponse({"detail": exc.detail}, status_code=405, headers={**(exc.headers or {}), "Allow": ", ".join(methods)})


def install(app: FastAPI) -> None:
    for cls in STATUS_OF:
        app.add_exception_handler(cls, _answer)
    app.add_exception_handler(HTTPException, _method_not_allowed)
