"""create_console: the console's sub-application, with its sessions, security headers, templates and error pages.

Sessions are cookies signed with console_secret_key (Starlette's SessionMiddleware, itsdangerous): HttpOnly,
SameSite=Lax, Secure unless console_dev, scoped to /console, expiring after console_session_hours. Without a secret
the console does not start, unless console_dev, which signs with a key made per process (a restart logs everyone out)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker
from starlette.middleware.sessions import SessionMiddleware

from crewdesk.console.security import LoginRequired, SecurityHeaders, csrf_token
from crewdesk.console.throttle import LoginThrottle
from crewdesk.delivery.channels import reply_sources
from crewdesk.errors import Conflict, CrewdeskError, Forbidden, NotFound
from crewdesk.settings import Settings
from crews.approvals import Gates

HERE = Path(__file__).resolve().parent
COOKIE = "crewdesk_console"


class ConsoleMisconfigured(CrewdeskError):
    """The console cannot start safely as configured (no secret to sign its sessions with)."""


@dataclass(frozen=True)
class ConsoleServices:
    settings: Settings
    session_factory: sessionmaker[Session]
    gates: Gates  # a decided approval's write runs through its ticket's gate (crews/approvals.py)
    resume: Callable[[int], object]  # puts a ticket back on the queue (approvals all decided; handed back by a person)
    templates: Jinja2Templates
    deliver: Callable[[int], object] | None = None  # sends a ticket's undelivered messages through its channel (a person's reply)
    channels: frozenset[str] = frozenset()  # the ticket sources with a reply channel (e-mail, Jira): their replies are sent


def session_secret(settings: Settings) -> str | None:
    """The key that signs sessions: console_secret_key; a per-process one only with console_dev; else None (no
    console)."""
    if settings.console_secret_key.get_secret_value():
        return settings.console_secret_key.get_secret_value()
    return secrets.token_hex(32) if settings.console_dev else None


def templates() -> Jinja2Templates:
    """Jinja2 with autoescape on for every template (Starlette's default, for .html; asserted here so that a change of
    default or extension cannot turn it off): a ticket is attacker-written text."""
    found = Jinja2Templates(directory=str(HERE / "templates"))
    found.env.autoescape = True
    return found


def create_console(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session],
    gates: Gates,
    resume: Callable[[int], object],
    deliver: Callable[[int], object] | None = None,
) -> FastAPI:
    """The console, to be mounted at /console. ConsoleMisconfigured without a secret outside console_dev. `deliver(ticket_id)`
    hands a ticket's undelivered messages to its channel (the API passes Celery's deliver_replies); without it a
    person's replies stay in the thread unsent."""
    from crewdesk.console import kpi, live, oidc, pages  # the routes import this module's ConsoleServices

    secret = session_secret(settings)
    if secret is None:
        raise ConsoleMisconfigured("the console needs CREWDESK_CONSOLE_SECRET_KEY (or _FILE) to sign its sessions; CREWDESK_CONSOLE_DEV=true only on a laptop")
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    channels = reply_sources(settings) if deliver is not None else frozenset()
    app.state.console = ConsoleServices(
        settings=settings, session_factory=session_factory, gates=gates, resume=resume, templates=templates(), deliver=deliver, channels=channels
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=COOKIE,
        max_age=int(settings.console_session_hours * 3600),
        path="/console",
        same_site="lax",
        https_only=not settings.console_dev,
    )
    app.add_middleware(SecurityHeaders)  # added last, so outermost: on every response, the session's errors too
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.state.login_throttle = LoginThrottle(settings.console_login_failures_per_minute)  # crewdesk/console/throttle.py
    app.include_router(pages.router)
    app.include_router(live.router)
    app.include_router(kpi.router)
    oidc.install(app, settings)  # OIDC login where console_oidc_issuer is set (crewdesk/console/oidc.py)

    @app.exception_handler(LoginRequired)
    def to_login(request: Request, _exc: LoginRequired) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/login", status_code=303)

    @app.exception_handler(CrewdeskError)
    def error_page(request: Request, exc: CrewdeskError) -> Response:
        status = 403 if isinstance(exc, Forbidden) else 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400
        return page(request, "error.html", {"status": status, "message": str(exc)}, status_code=status)

    return app


def page(request: Request, template: str, context: dict, *, status_code: int = 200) -> HTMLResponse:
    """A template rendered with what every page needs: the URL prefix, the CSRF token and the logged-in user's name."""
    services: ConsoleServices = request.app.state.console
    shared = {"prefix": request.scope.get("root_path", ""), "csrf": csrf_token(request), "user": context.pop("user", None)}
    return services.templates.TemplateResponse(request, template, shared | context, status_code=status_code)
