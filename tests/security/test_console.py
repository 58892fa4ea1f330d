"""The support console, safe by default (issue 22): every page needs a login, a wrong password is refused, roles
scope what a user sees and does, every form needs its CSRF token, every response carries a Content-Security-Policy
with no inline script, a ticket's attacker-written text shows as text, and an approval decided in the console is
decided by the logged-in user under the rules of crewdesk/approvals/service.py.

Real PostgreSQL and the demo store; the approval comes from the real pipeline and gate on the crew path, with a
scripted model that makes the write the ticket asks for (tests/security/test_approvals.py). Sessions are the
production ones: Secure cookies, so the client speaks https."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from crewdesk.api import create_app
from crewdesk.audit.models import AuditEvent
from crewdesk.auth import users
from crewdesk.console import ConsoleMisconfigured, create_console
from crewdesk.db import transaction
from crewdesk.effects.models import ToolEffect
from tests.security.test_approvals import approval_of, big_order, effects_of, email_of, process, submit

SECRET = SecretStr("console-test-secret-" + "x" * 32)
PASSWORD = "a long enough password"


@pytest.fixture
def console_settings(settings):
    """The crew path, approvals above $100, a second approver above $500, and a console secret."""
    return settings.model_copy(update={"procedures": False, "approval_threshold_usd": 100.0, "second_approval_above_usd": 500.0, "console_secret_key": SECRET})


@pytest.fixture
def people(session_factory):
    with transaction(session_factory) as db:
        for name, role in (("arno", "agent"), ("lena", "lead"), ("max", "lead"), ("root", "admin")):
            users.create(db=db, name=name, password=PASSWORD, role=role)


@pytest.fixture
def resumed() -> list[int]:
    return []


@pytest.fixture
def app(console_settings, session_factory, people, resumed):
    return create_app(console_settings, session_factory=session_factory, send=resumed.extend)


def client(app) -> TestClient:
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


def csrf(response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
    assert found, response.text[:500]
    return found.group(1)


def logged_in(app, name: str) -> TestClient:
    browser = client(app)
    form = browser.get("/console/login")
    answer = browser.post("/console/login", data={"name": name, "password": PASSWORD, "csrf_token": csrf(form)})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/queues", answer.text
    return browser


def test_every_page_needs_a_login_and_a_wrong_password_is_refused(app):
    browser = client(app)
    for path in ("/console/", "/console/queues", "/console/tickets/1", "/console/approvals"):
        answer = browser.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login", path
    form = browser.get("/console/login")
    assert form.status_code == 200 and 'type="password"' in form.text
    for name, password in (("lena", "not the password"), ("nobody", PASSWORD)):
        refused = browser.post("/console/login", data={"name": name, "password": password, "csrf_token": csrf(form)})
        assert refused.status_code == 401 and "Wrong name or password." in refused.text
    assert browser.get("/console/queues").status_code == 303
    # logged in, out again: the session no longer opens a page
    lena = logged_in(app, "lena")
    queues = lena.get("/console/queues")
    assert queues.status_code == 200 and "lena (lead)" in queues.text
    assert lena.post("/console/logout", data={"csrf_token": csrf(queues)}).status_code == 303
    assert lena.get("/console/queues").status_code == 303


def test_session_cookie_is_secure_httponly_samesite_lax_and_signed(app):
    browser = client(app)
    form = browser.get("/console/login")
    answer = browser.post("/console/login", data={"name": "lena", "password": PASSWORD, "csrf_token": csrf(form)})
    cookie = answer.headers["set-cookie"].lower()
    assert cookie.startswith("crewdesk_console=") and "; secure" in cookie and "; httponly" in cookie and "samesite=lax" in cookie
    assert "path=/console" in cookie
    forged = client(app)
    forged.cookies.set("crewdesk_console", answer.cookies["crewdesk_console"][:-4] + "AAAA", domain="testserver", path="/console")
    assert forged.get("/console/queues").status_code == 303  # a tampered cookie is no session


def test_the_console_does_not_start_without_a_secret_except_in_dev(settings, session_factory):
    assert "/console" not in {getattr(r, "path", "") for r in create_app(settings, session_factory=session_factory, send=lambda _ids: None).routes}
    with pytest.raises(ConsoleMisconfigured):
        create_console(settings, session_factory=session_factory, gates=None, resume=lambda _id: None)  # type: ignore[arg-type]
    dev = create_console(settings.model_copy(update={"console_dev": True}), session_factory=session_factory, gates=None, resume=lambda _id: None)  # type: ignore[arg-type]
    answer = TestClient(dev).get("/login")
    assert answer.status_code == 200 and "secure" not in answer.headers["set-cookie"].lower()  # plain http on a laptop


def test_a_form_without_its_csrf_token_is_refused(app):
    browser = client(app)
    browser.get("/console/login")
    assert browser.post("/console/login", data={"name": "lena", "password": PASSWORD}).status_code == 403
    assert browser.post("/console/login", data={"name": "lena", "password": PASSWORD, "csrf_token": "forged"}).status_code == 403
    lena = logged_in(app, "lena")
    assert lena.post("/console/logout", data={}).status_code == 403
    assert lena.post("/console/approvals/1/approve", data={"reason": "ok"}).status_code == 403
    assert lena.get("/console/queues").status_code == 200  # still logged in: the refused logout did nothing


def test_every_response_carries_a_csp_without_inline_script(app):
    browser = client(app)
    for answer in (browser.get("/console/login"), browser.get("/console/queues"), browser.get("/console/static/console.css")):
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
    page = logged_in(app, "lena").get("/console/queues").text
    # the one script is htmx, a file from /console/static (crewdesk/console/static/VENDORED.md): no inline script
    assert re.findall(r"<script[^>]*>[^<]*</script>", page) == ['<script src="/console/static/htmx.min.js" defer></script>']
    assert page.count("<script") == 1 and " style=" not in page and "onclick" not in page


def test_a_tickets_markup_shows_as_text(app, make_ticket, session_factory):
    body = 'Hello <script>alert("owned")</script> and <img src=x onerror="alert(1)"> bye'
    ticket_id = make_ticket(body, subject="<b>urgent</b><script>steal()</script>", customer="<img src=x onerror=alert(2)>@example.com")
    from crewdesk.tickets import service as tickets
    from crewdesk.tickets.models import TicketStatus

    with transaction(session_factory) as db:
        ticket = tickets.get(db=db, ticket_id=ticket_id)
        ticket.status, ticket.status_reason = TicketStatus.escalated, "<script>reason()</script>"
    arno = logged_in(app, "arno")
    for page in (arno.get(f"/console/tickets/{ticket_id}").text, arno.get("/console/queues?queue=escalated").text):
        assert "<script>" not in page and "<img src=x" not in page and "<b>urgent" not in page
        assert "&lt;script&gt;" in page
    shown = arno.get(f"/console/tickets/{ticket_id}").text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in shown


def test_queues_count_filter_and_search(app, make_ticket, session_factory):
    from crewdesk.tickets import service as tickets
    from crewdesk.tickets.models import TicketStatus

    ids = {
        "refund": make_ticket("Refund order #W2378156 please", customer="ana@example.com"),
        "legal": make_ticket("My lawyer will call", customer="bo@example.com", source="api"),
        "failed": make_ticket("Something broke"),
    }
    with transaction(session_factory) as db:
        for key, status in (("refund", TicketStatus.escalated), ("legal", TicketStatus.escalated), ("failed", TicketStatus.failed)):
            row = tickets.get(db=db, ticket_id=ids[key])
            row.status, row.category, row.triage = status, "billing" if key == "refund" else "general", {"language": "de" if key == "legal" else "en"}
            row.priority = "urgent" if key == "legal" else "normal"
            row.updated_at = row.updated_at - timedelta(hours=30 if key == "legal" else 0)
    arno = logged_in(app, "arno")
    page = arno.get("/console/queues").text
    assert re.search(r"Needs a person <span class=\"count\">2</span>", page) and re.search(r"Failed <span class=\"count\">1</span>", page)
    assert f"/console/tickets/{ids['refund']}" in page and f"/console/tickets/{ids['legal']}" in page
    searched = arno.get("/console/queues", params={"q": "W2378156"}).text
    assert f"/console/tickets/{ids['refund']}" in searched and f"/console/tickets/{ids['legal']}" not in searched
    for params in ({"language": "de"}, {"source": "api"}, {"category": "general"}, {"priority": "urgent"}, {"older": 24}, {"q": "bo@example"}):
        narrowed = arno.get("/console/queues", params=params).text
        assert f"/console/tickets/{ids['legal']}" in narrowed and f"/console/tickets/{ids['refund']}" not in narrowed, params
    assert f"/console/tickets/{ids['failed']}" in arno.get("/console/queues", params={"queue": "failed"}).text


def test_an_agent_cannot_approve_and_a_lead_approves_as_themselves(app, console_settings, store, resumed):
    """The refund waits for a person; the agent is refused the inbox and the decision (403, nothing decided); the lead
    sees the ticket's words and the amount, approves with a reason, and the approval is decided by that lead's name:
    the write is made once and the ticket resumes. The ticket page shows the trail with the decision."""
    user, order_id, amount = big_order(store, 100.0)
    amount_ok = amount <= 500.0
    if not amount_ok:
        pytest.skip("the demo store has no pending order between $100 and $500")  # it has: this guards the choice below
    ticket_id = submit(store, email_of(store, user), order_id)
    assert process(console_settings, store, ticket_id, order_id) == "awaiting_approval"
    approval_id = approval_of(store, ticket_id).id

    arno = logged_in(app, "arno")
    assert arno.get("/console/approvals").status_code == 403
    token = csrf(arno.get("/console/queues"))
    refused = arno.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": token, "reason": "looks fine"})
    assert refused.status_code == 403 and "lead" in refused.text
    assert approval_of(store, ticket_id).status == "pending" and effects_of(store, ticket_id) == []

    lena = logged_in(app, "lena")
    assert "none recorded" in lena.get("/console/approvals").text  # the customer's earlier refunds
    with transaction(store) as db:
        db.add(
            ToolEffect(idempotency_key="earlier-refund", ticket_id=None, tool="return_delivered_order_items", arguments={}, customer_ref=user, refund_usd=12.5)
        )
    inbox = lena.get("/console/approvals")
    assert inbox.status_code == 200 and f"Please cancel order {order_id}." in inbox.text and f"${amount:.2f}" in inbox.text
    assert "$12.50 · return_delivered_order_items" in inbox.text
    answer = lena.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": csrf(inbox), "reason": "checked the order"})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/approvals"
    assert f"Approval {approval_id} approved." in lena.get("/console/approvals").text

    decided = approval_of(store, ticket_id)
    assert decided.status == "approved" and decided.decided_by == "lena" and "checked the order" in decided.reason
    assert len(effects_of(store, ticket_id)) == 1 and resumed == [ticket_id]
    with store() as db:
        row = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "approval")).scalar_one()
    assert (row.name, row.actor) == ("approved", "lena")
    shown = lena.get(f"/console/tickets/{ticket_id}").text
    assert "cancel_pending_order" in shown and "lena" in shown and "approved" in shown
    again = lena.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": csrf(inbox)})
    assert again.status_code == 409  # decided once


def test_above_the_limit_a_second_lead_approves_and_nobody_approves_their_own_request(app, console_settings, store, resumed):
    user, order_id, _amount = big_order(store, 500.0)
    ticket_id = submit(store, email_of(store, user), order_id, submitted_by="max")  # max's API key submitted it
    assert process(console_settings, store, ticket_id, order_id) == "awaiting_approval"
    approval_id = approval_of(store, ticket_id).id

    max_ = logged_in(app, "max")
    own = max_.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": csrf(max_.get("/console/approvals"))})
    assert own.status_code == 403 and "nobody approves their own request" in own.text
    lena = logged_in(app, "lena")
    token = csrf(lena.get("/console/approvals"))
    assert lena.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": token}).status_code == 303
    assert approval_of(store, ticket_id).status == "pending" and effects_of(store, ticket_id) == [] and resumed == []
    assert "given its first approval" in lena.get("/console/approvals").text
    assert lena.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": token}).status_code == 403  # not twice
    root = logged_in(app, "root")
    assert root.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": csrf(root.get("/console/approvals"))}).status_code == 303
    decided = approval_of(store, ticket_id)
    assert decided.status == "approved" and (decided.first_approved_by, decided.decided_by) == ("lena", "root")
    assert len(effects_of(store, ticket_id)) == 1 and resumed == [ticket_id]


def test_the_ticket_page_verifies_its_audit_chain(app, settings, session_factory, make_ticket):
    """The trail's hash chain is checked when the page is shown: intact after a run; an edited row (what a superuser
    could do with the append-only trigger off) makes the page say BROKEN and which row."""
    from crewdesk.llm.factory import LLMFactory
    from crews.pipeline import Pipeline
    from tests.integration.test_audit_chain import tamper

    ticket_id = make_ticket("The app crashes on start.")
    Pipeline(settings=settings, session_factory=session_factory, llm_factory=LLMFactory(settings)).process(ticket_id)
    arno = logged_in(app, "arno")
    assert "Audit chain intact:" in arno.get(f"/console/tickets/{ticket_id}").text
    tamper(session_factory, f"UPDATE audit_events SET actor = 'someone else' WHERE chain = {ticket_id} AND seq = 2")
    page = arno.get(f"/console/tickets/{ticket_id}").text
    assert "Audit chain BROKEN" in page and f"ticket {ticket_id} row 2: content does not match its hash (edited)" in page


def test_a_person_takes_a_ticket_under_their_name(app, make_ticket, session_factory):
    """Take, take over, let go: each on the ticket and in its audit trail under the logged-in user's name; a POST
    without the CSRF token does nothing."""
    ticket_id = make_ticket("Please call me back.")
    arno, lena = logged_in(app, "arno"), logged_in(app, "lena")
    page = arno.get(f"/console/tickets/{ticket_id}")
    assert "nobody" in page.text and "Take it" in page.text
    assert arno.post(f"/console/tickets/{ticket_id}/take", data={}).status_code == 403
    assert arno.post(f"/console/tickets/{ticket_id}/take", data={"csrf_token": csrf(page)}).status_code == 303
    assert "Let it go" in arno.get(f"/console/tickets/{ticket_id}").text
    assert "Take it over" in (taken := lena.get(f"/console/tickets/{ticket_id}")).text
    assert lena.post(f"/console/tickets/{ticket_id}/take", data={"csrf_token": csrf(taken)}).status_code == 303
    assert lena.post(f"/console/tickets/{ticket_id}/release", data={"csrf_token": csrf(taken)}).status_code == 303
    with session_factory() as db:
        rows = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "person").order_by(AuditEvent.seq)).scalars()
        assert [(r.name, r.actor, r.arguments) for r in rows] == [
            ("took", "arno", {"from": None, "to": "arno"}),
            ("took", "lena", {"from": "arno", "to": "lena"}),
            ("released", "lena", {"from": "lena", "to": None}),
        ]
        from crewdesk.tickets.models import Ticket

        assert db.get(Ticket, ticket_id).assigned_to is None
