"""The console's pages: login and logout, the queues, a ticket, the approvals inbox. Every page but the login needs a
logged-in user; every POST checks the session's CSRF token; deciding an approval needs a lead or an admin and goes
through crews.approvals.decide, the same rules as the API and the CLI, with the logged-in user as the decider."""

from __future__ import annotations

import json
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
from crewdesk.tickets import queues as ticket_queues
from crewdesk.tickets import service as tickets
from crewdesk.tickets import views
from crewdesk.tickets.models import Ticket
from crews.approvals import decide as decide_and_resume

router = APIRouter(include_in_schema=False)
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
    queue = queue if queue in ticket_queues.QUEUES else "escalated"
    narrow = ticket_queues.QueueFilter(source=source, category=category, priority=priority, language=language, text=q[:200], older_than_hours=older)
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
def ticket(request: Request, user: LoggedIn, ticket_id: int) -> Response:
    with _services(request).session_factory() as db:
        seen = views.view(db=db, ref=str(ticket_id))
        pending = approvals.listing(db=db, status=None, ticket_id=seen.ticket.id)
        chain = audit.verify_ticket(db=db, ticket_id=seen.ticket.id)
        return page(
            request, "ticket.html", {"user": user, "view": seen, "approvals": pending, "chain": chain, "shown": shown, "approvers": approvals.approvers}
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
