"""The console's OIDC login (issue 22), on when console_oidc_issuer is set: the login page links "Sign in with <name>"
to /login/oidc, which keeps a new state, nonce and PKCE verifier in the signed session and sends the person to the
provider; the provider sends them back to /login/oidc/callback, where crewdesk/auth/oidc_login.py exchanges the code,
verifies the ID token and finds (or creates) the console user, and a new session begins as after a password login.

The start is a link (GET), not a form: a form's redirect to another origin would be blocked by the CSP's form-action
'self'. It changes nothing but the session's pending login; the callback's state binds the answer to the browser that
started it, so another person's code cannot log this browser in."""

from __future__ import annotations

import time

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from crewdesk.auth.oidc_login import LoginConfig, LoginRefused, OidcLogin, Pending, sign_in
from crewdesk.console.app import page
from crewdesk.errors import IdentityProviderUnavailable
from crewdesk.logging import get_logger
from crewdesk.settings import Settings

router = APIRouter(include_in_schema=False)
log = get_logger(__name__)
PENDING = "oidc_pending"


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the OIDC login on the console when it is configured, and tell the login page (its template globals) which
    buttons to show."""
    config = LoginConfig.from_settings(settings)
    app.state.oidc = OidcLogin(config) if config is not None else None
    globals_ = app.state.console.templates.env.globals
    globals_["oidc_name"] = config.name if config is not None else ""
    globals_["password_login"] = settings.console_password_login
    if config is not None:
        app.include_router(router)


def _refused(request: Request, message: str, status: int) -> Response:
    return page(request, "login.html", {"error": message}, status_code=status)


@router.get("/login/oidc", name="oidc_start")
def start(request: Request) -> Response:
    oidc: OidcLogin = request.app.state.oidc
    redirect_uri = oidc.config.redirect_url or str(request.url_for("oidc_callback"))
    try:
        pending, url = oidc.start(redirect_uri)
    except IdentityProviderUnavailable as exc:
        log.error("console_oidc_unavailable", error=str(exc))
        return _refused(request, f"{oidc.config.name} cannot be reached just now: try again later.", 503)
    request.session[PENDING] = pending.as_session()
    return RedirectResponse(url, status_code=303)


@router.get("/login/oidc/callback", name="oidc_callback")
def callback(request: Request, state: str = "", code: str = "", error: str = "", error_description: str = "") -> Response:
    oidc: OidcLogin = request.app.state.oidc
    pending = Pending.from_session(request.session.pop(PENDING, None))  # one answer per started login
    address = request.client.host if request.client else ""
    if error:
        log.warning("console_oidc_login_failed", reason=f"provider:{error[:64]}", detail=error_description[:200], address=address)
        return _refused(request, f"{oidc.config.name} did not log you in ({error[:64]}).", 403 if error == "access_denied" else 400)
    try:
        identity = oidc.finish(pending, state=state, code=code)
    except LoginRefused as refused:
        log.warning("console_oidc_login_failed", reason=refused.reason, address=address)
        return _refused(request, str(refused), refused.status)
    except IdentityProviderUnavailable as exc:
        log.error("console_oidc_unavailable", error=str(exc), address=address)
        return _refused(request, f"{oidc.config.name} cannot be reached just now: try again later.", 503)
    with request.app.state.console.session_factory() as db:
        try:
            user = sign_in(db=db, identity=identity)
        except LoginRefused as refused:
            db.commit()  # the refusal's audit row
            return _refused(request, str(refused), refused.status)
        db.commit()
        request.session.clear()  # a new session at each login, as after a password (crewdesk/console/pages.py)
        request.session["uid"] = user.id
        request.session["since"] = int(time.time())
    return RedirectResponse(f"{request.scope.get('root_path', '')}/queues", status_code=303)
