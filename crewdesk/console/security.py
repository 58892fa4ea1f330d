"""What keeps the console safe by default: the logged-in user read back on every request, role checks, the CSRF
token every form carries, and the response headers (a Content-Security-Policy with no inline script)."""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crewdesk.auth import users
from crewdesk.auth.models import User, UserRole
from crewdesk.errors import Forbidden

# No inline script or style anywhere: scripts and styles come from /console/static only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Adds HEADERS to every console response (pages, redirects, errors and static files alike)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # a response that set a policy of its own (a stored report, crewdesk/console/kpi.py) keeps it alone: two
                # policies would both apply, the stricter one winning
                own = any(name.lower() == b"content-security-policy" for name, _ in headers)
                message["headers"] = [*headers, *(h for h in HEADERS if not (own and h[0] == b"content-security-policy"))]
            await send(message)

        await self.app(scope, receive, with_headers)


class LoginRequired(Exception):
    """No valid session: the console answers with a redirect to its login page."""


class CsrfRefused(Forbidden):
    """A form posted without the session's CSRF token."""


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made once per session (a new one at each login)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


async def check_csrf(request: Request) -> None:
    """Every POST carries the session's token in its form field csrf_token; else 403."""
    form = await request.form()
    sent = form.get("csrf_token")
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused("the form's CSRF token is missing or does not match this session: reload the page and try again")


def current_user(request: Request) -> User:
    """The logged-in user, read from the database on every request: a disabled user is logged out at once. A login
    lasts console_session_hours from the moment it was made (the session's `since`), however busy the page: the cookie's
    own expiry is renewed by every response, the queues' counts polled every 10 s among them."""
    user_id = request.session.get("uid")
    if not isinstance(user_id, int):
        raise LoginRequired
    since = request.session.get("since")
    if not isinstance(since, int | float) or time.time() - since > request.app.state.console.settings.console_session_hours * 3600:
        request.session.clear()
        raise LoginRequired
    with request.app.state.console.session_factory() as db:
        user = users.active(db=db, user_id=user_id)
        if user is None:
            request.session.clear()
            raise LoginRequired
        db.expunge(user)
    return user


def lead(user: Annotated[User, Depends(current_user)]) -> User:
    """A lead or an admin: who may decide approvals."""
    if user.role not in (UserRole.lead, UserRole.admin):
        raise Forbidden(f"{user.name} is an {user.role.value}: deciding approvals needs a lead or an admin")
    return user


LoggedIn = Annotated[User, Depends(current_user)]
Lead = Annotated[User, Depends(lead)]
CsrfChecked = Depends(check_csrf)
