"""The console's pages: login and logout, the queues, a ticket, the approvals inbox. Every page but the login needs a
logged-in user; every POST checks the session's CSRF token; deciding an approval needs a lead or an admin and goes
through crews.approvals.decide, the same rules as the API and the CLI, with the logged-in user as the decider. On a
ticket a person takes it, replies, notes, hands it back or closes it through crewdesk/tickets/handling.py (its rules);
a reply leaves through the ticket's channel by `deliver` after the commit, a handed-back ticket through `resume`."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from crewdesk.approvals import service as approvals
from crewdesk.approvals.models import Approval
from crewdesk.audit import service as audit
from crewdesk.auth import users
from crewdesk.console.app import ConsoleServices, page
from crewdesk.console.security import CsrfChecked, Lead, LoggedIn
from crewdesk.console.throttle import LoginThrottle
from crewdesk.db import transaction
from crewdesk.effects import service as effects
from crewdesk.logging import get_logger
from crewdesk.tickets import handling, views
from crewdesk.tickets import queues as ticket_queues
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Ticket
from crews.approvals import decide as decide_and_resume

router = APIRouter(include_in_schema=False)
log = get_logger(__name__)
EXCERPT = 600  # characters of a ticket's words shown beside its approval


def _services(request: Request) -> ConsoleServices:
    return request.app.state.console


def _prefix(request: Request) -> str:
    return request.scope.get("root_path", "")


def shown(value: Any) -> str:
    """An audit row's arguments or result as text (escaped by the template like everything else)."""
    if value is None or value == "":
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    return text if len(text) <= 2000 else text[:2000] + " …"


@router.get("/login")
def login_form(request: Request) -> Response:
    return page(request, "login.html", {"error": ""})


@router.post("/login", dependencies=[CsrfChecked])
def login(request: Request, name: Annotated[str, Form(max_length=128)], password: Annotated[str, Form(max_length=1024)]) -> Response:
    if not _services(request).settings.console_password_login:  # OIDC login only (crewdesk/console/oidc.py)
        return page(request, "login.html", {"error": "Passwords are turned off here: sign in with your identity provider."}, status_code=403)
    throttle: LoginThrottle = request.app.state.login_throttle
    address = request.client.host if request.client else ""
    if wait := throttle.retry_after(name, address):
        refused = page(request, "login.html", {"error": f"Too many failed logins: try again in {wait} seconds."}, status_code=429)
        refused.headers["Retry-After"] = str(wait)
        return refused
    with _services(request).session_factory() as db:
        user = users.authenticate(db=db, name=name, password=password)
        if user is None:
            throttle.failed(name, address)
            return page(request, "login.html", {"error": "Wrong name or password."}, status_code=401)
        throttle.succeeded(name)
        request.session.clear()  # a new session at each login: nothing from before it (nor its CSRF token) carries over
        request.session["uid"] = user.id
        request.session["since"] = int(time.time())  # the login's age ends it (security.current_user), not the cookie's
    return RedirectResponse(f"{_prefix(request)}/queues", status_code=303)


@router.post("/logout", dependencies=[CsrfChecked])
def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse(f"{_prefix(request)}/login", status_code=303)


@router.get("/")
def home(request: Request, _user: LoggedIn) -> Response:
    return RedirectResponse(f"{_prefix(request)}/queues", status_code=303)


@router.get("/queues")
def queues(
    request: Request,
    user: LoggedIn,
    queue: str = "escalated",
    source: str = "",
    category: str = "",
    priority: str = "",
    language: str = "",
    q: str = "",
    older: Annotated[int, Query(ge=0, le=24 * 365)] = 0,
) -> Response:
    queue, narrow = ticket_queues.asked(queue=queue, source=source, category=category, priority=priority, language=language, q=q, older=older)
    with _services(request).session_factory() as db:
        listed = ticket_queues.queues(db=db, shown=queue, narrow=narrow)
        return page(
            request,
            "queues.html",
            {"user": user, "queues": listed, "queue": queue, "narrow": narrow, "choices": ticket_queues.choices(db=db), "language_of": _language_of},
        )


def _language_of(ticket: Ticket) -> str:
    return str((ticket.triage or {}).get("language", ""))


@router.get("/tickets/{ticket_id}")
def ticket(request: Request, user: LoggedIn, ticket_id: int, draft: bool = False) -> Response:
    """`draft`: the reply form starts from the reply crewdesk wrote, for the person to edit."""
    with _services(request).session_factory() as db:
        seen = views.view(db=db, ref=str(ticket_id))
        pending = approvals.listing(db=db, status=None, ticket_id=seen.ticket.id)
        chain = audit.verify_ticket(db=db, ticket_id=seen.ticket.id)
        wrote = str((seen.ticket.resolution or {}).get("customer_reply") or "")
        return page(
            request,
            "ticket.html",
            {
                "user": user,
                "view": seen,
                "approvals": pending,
                "chain": chain,
                "shown": shown,
                "approvers": approvals.approvers,
                "channels": _services(request).channels,
                "draft": wrote if draft else "",
                "has_draft": bool(wrote),
                "in_a_run": handling.IN_A_RUN,
                "put_down": handling.PUT_DOWN,
                "done": request.session.pop("ticket_done", ""),
            },
        )


@router.post("/tickets/{ticket_id}/take", dependencies=[CsrfChecked])
def take(request: Request, user: LoggedIn, ticket_id: int) -> Response:
    with transaction(_services(request).session_factory) as db:
        tickets.assign(db=db, ticket_id=ticket_id, to=user.name, by=user.name)
    return RedirectResponse(f"{_prefix(request)}/tickets/{ticket_id}", status_code=303)


@router.post("/tickets/{ticket_id}/release", dependencies=[CsrfChecked])
def release(request: Request, user: LoggedIn, ticket_id: int) -> Response:
    with transaction(_services(request).session_factory) as db:
        tickets.assign(db=db, ticket_id=ticket_id, to=None, by=user.name)
    return RedirectResponse(f"{_prefix(request)}/tickets/{ticket_id}", status_code=303)


def _back_to(request: Request, ticket_id: int, said: str) -> Response:
    request.session["ticket_done"] = said
    return RedirectResponse(f"{_prefix(request)}/tickets/{ticket_id}", status_code=303)


def _send_out(request: Request, ticket_id: int, source: str) -> str:
    """Hand the ticket's unsent messages to its channel after their commit; what to tell the person."""
    services = _services(request)
    if services.deliver is None or source not in services.channels:
        return "kept in the ticket's thread (no reply channel for this source: it is read through the API)"
    try:
        services.deliver(ticket_id)
    except Exception as exc:  # noqa: BLE001 - the message is stored; the person is told it has not gone out yet
        log.warning("console.delivery_not_started", ticket_id=ticket_id, error=f"{type(exc).__name__}: {exc}")
        return f"stored, but not handed to delivery ({type(exc).__name__}): not sent yet; the reconciler sends it later"
    return f"handed to {source} delivery"


@router.post("/tickets/{ticket_id}/reply", dependencies=[CsrfChecked])
def reply(request: Request, user: LoggedIn, ticket_id: int, body: Annotated[str, Form(max_length=handling.MAX_TEXT + 1000)]) -> Response:
    with transaction(_services(request).session_factory) as db:
        message = handling.reply(db=db, ticket_id=ticket_id, body=body, by=user.name)
        source = message.ticket.source
    return _back_to(request, ticket_id, f"Reply {message.id} {_send_out(request, ticket_id, source)}.")


@router.post("/tickets/{ticket_id}/note", dependencies=[CsrfChecked])
def note(request: Request, user: LoggedIn, ticket_id: int, body: Annotated[str, Form(max_length=handling.MAX_TEXT + 1000)]) -> Response:
    with transaction(_services(request).session_factory) as db:
        message = handling.note(db=db, ticket_id=ticket_id, body=body, by=user.name)
        source = message.ticket.source
    if source in _services(request).channels:
        _send_out(request, ticket_id, source)  # Jira keeps it as an internal comment; e-mail sends nothing
    return _back_to(request, ticket_id, f"Note {message.id} added (for the team only, never sent to the customer).")


@router.post("/tickets/{ticket_id}/hand-back", dependencies=[CsrfChecked])
def hand_back(request: Request, user: LoggedIn, ticket_id: int, reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    services = _services(request)
    with transaction(services.session_factory) as db:
        handling.hand_back(db=db, ticket_id=ticket_id, by=user.name, reason=reason)
    services.resume(ticket_id)  # the one way onto the queue, after the commit (a lost send: the reconciler puts it back)
    return _back_to(request, ticket_id, "Handed back to crewdesk: it is on the queue.")


@router.post("/tickets/{ticket_id}/close", dependencies=[CsrfChecked])
def close(request: Request, user: LoggedIn, ticket_id: int, reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    with transaction(_services(request).session_factory) as db:
        ticket = handling.close(db=db, ticket_id=ticket_id, by=user.name, reason=reason)
        source = ticket.source
    if source in _services(request).channels:
        _send_out(request, ticket_id, source)  # anything unsent goes out, and Jira mirrors the closed status
    return _back_to(request, ticket_id, "Closed.")


@router.get("/approvals")
def approvals_inbox(request: Request, user: Lead) -> Response:
    with _services(request).session_factory() as db:
        pending = approvals.listing(db=db, status="pending")
        tickets = {a.ticket_id: db.get(Ticket, a.ticket_id) for a in pending}
        refunds = {a.customer_ref: effects.refunds_of(db=db, customer_ref=a.customer_ref) for a in pending if a.customer_ref}
        return page(
            request,
            "approvals.html",
            {
                "user": user,
                "approvals": pending,
                "tickets": tickets,
                "refunds": refunds,
                "excerpt": EXCERPT,
                "approvers": approvals.approvers,
                "shown": shown,
                "done": request.session.pop("done", ""),
            },
        )


def _decide(request: Request, user: Lead, approval_id: int, reason: str, approve: bool) -> Response:
    services = _services(request)
    approval: Approval
    approval, _ = decide_and_resume(
        gates=services.gates, approval_id=approval_id, approve=approve, by=user.name, reason=reason.replace("\x00", "").strip() or None, resume=services.resume
    )
    what = (
        "approved"
        if approval.status == "approved"
        else "rejected"
        if approval.status == "rejected"
        else "given its first approval (a second person must approve it)"
    )
    request.session["done"] = f"Approval {approval.id} {what}."
    return RedirectResponse(f"{_prefix(request)}/approvals", status_code=303)


@router.post("/approvals/{approval_id}/approve", dependencies=[CsrfChecked])
def approve(request: Request, user: Lead, approval_id: int, reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    return _decide(request, user, approval_id, reason, True)


@router.post("/approvals/{approval_id}/reject", dependencies=[CsrfChecked])
def reject(request: Request, user: Lead, approval_id: int, reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    return _decide(request, user, approval_id, reason, False)
