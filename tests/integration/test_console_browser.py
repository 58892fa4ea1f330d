"""The support console in a real headless Chromium (issue 22): Debian's /usr/bin/chromium driven by Playwright's
Python package, against a uvicorn server this test starts on a free loopback port, with the production session
settings (Secure cookies: Chromium keeps them on http://localhost). A lead logs in, opens the approvals inbox, approves
a refund a ticket asked for, and sees it approved, with the write made once and the approval decided under their name;
the resumed ticket then resolves with the order cancelled in the store; a ticket whose body holds <script> and
<img onerror> shows them as text and runs neither. An agent takes an escalated e-mail ticket and sends a reply that
arrives over real SMTP (aiosmtpd) in the customer's thread; a form posted without its CSRF token is refused; the agent
cannot approve. A lead signs in through the OIDC stand-in provider (tests/oidc_provider.py). The queue and a ticket are
photographed into docs/ for the README (a laptop and a phone width).

Skipped only when /usr/bin/chromium is missing outside CI (scripts/services.sh installs it as root); in CI (CI=true)
it must run."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from crewdesk.api import create_app
from crewdesk.auth import users
from crewdesk.db import transaction
from crewdesk.store.models import StoreOrder
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import TicketStatus
from crewdesk.tickets.schemas import TicketIn
from tests.security.test_approvals import approval_of, big_order, effects_of, email_of, process, refunds_on, submit
from tests.security.test_console import PASSWORD, SECRET

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and os.environ.get("CI") != "true", reason="no /usr/bin/chromium (scripts/services.sh installs it as root); CI must run this"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(settings, store):
    """The API with the console on a real socket; returns (base URL, the tickets put back on the queue)."""
    resumed: list[int] = []
    console_settings = settings.model_copy(
        update={"procedures": False, "approval_threshold_usd": 100.0, "second_approval_above_usd": 500.0, "console_secret_key": SECRET}
    )
    app = create_app(console_settings, session_factory=store, send=resumed.extend)
    port = free_port()
    uvi = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uvi.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uvi.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield console_settings, f"http://localhost:{port}", resumed
    uvi.should_exit = True
    thread.join(timeout=10)


def test_a_lead_approves_a_refund_in_the_browser_and_markup_shows_as_text(server, store):
    from playwright.sync_api import expect, sync_playwright

    console_settings, base, resumed = server
    with transaction(store) as db:
        users.create(db=db, name="lena", password=PASSWORD, role="lead")
    user, order_id, amount = big_order(store, 100.0)
    assert amount <= 500.0  # one lead decides it
    ticket_id = submit(store, email_of(store, user), order_id)
    assert process(console_settings, store, ticket_id, order_id) == "awaiting_approval"
    approval_id = approval_of(store, ticket_id).id
    hostile = 'My order never came. <script>window.owned = 1</script> <img src=x onerror="window.owned = 2"> Please help.'
    escalated = []
    for subject, body, customer in (
        ("Where is my parcel?", hostile, "mallory@example.com"),
        ("Wrong size delivered", "I got a medium instead of a large, order #W2378156.", "ana@example.com"),
        ("Lawyer letter", "Mein Anwalt wird sich melden.", "bo@example.com"),
    ):
        with transaction(store) as db:
            ticket, _ = tickets.submit(db=db, ticket_in=TicketIn(external_id=subject[:10], source="email", customer=customer, subject=subject, body=body))
            ticket.status, ticket.status_reason, ticket.category = TicketStatus.escalated, "needs a person: the rules fired", "shipping"
            ticket.triage = {"language": "de" if "Anwalt" in body else "en"}
            escalated.append(ticket.id)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(f"{base}/console/approvals")
            expect(page).to_have_url(f"{base}/console/login")  # no session: the login page
            page.fill("#name", "lena")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base}/console/queues")
            expect(page.locator("h1")).to_contain_text("Needs a person")
            page.screenshot(path=str(DOCS / "console-queues.png"), full_page=True)

            page.goto(f"{base}/console/tickets/{escalated[0]}")
            expect(page.locator(".message .body").first).to_contain_text("<script>window.owned = 1</script>")
            expect(page.locator(".message .body").first).to_contain_text('<img src=x onerror="window.owned = 2">')
            assert page.evaluate("window.owned") is None and dialogs == []  # shown, never run
            assert page.locator(".message img").count() == 0

            page.goto(f"{base}/console/tickets/{ticket_id}")
            expect(page.locator(".status")).to_have_text("awaiting_approval")
            page.screenshot(path=str(DOCS / "console-ticket.png"), full_page=True)

            page.click("text=Approvals")
            card = page.locator(f"#approval-{approval_id}")
            expect(card).to_contain_text(f"Please cancel order {order_id}.")
            expect(card).to_contain_text(f"${amount:.2f}")
            card.locator("input[name=reason]").fill("checked the order")
            card.locator("button.approve").click()
            expect(page.locator(".done")).to_have_text(f"Approval {approval_id} approved.")
            expect(page.locator(f"#approval-{approval_id}")).to_have_count(0)

            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone.context.add_cookies(page.context.cookies())
            phone.goto(f"{base}/console/queues")
            expect(phone.locator("h1")).to_contain_text("Needs a person")
            assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scrolling
            phone.screenshot(path=str(DOCS / "console-queues-phone.png"), full_page=True)
        finally:
            browser.close()

    decided = approval_of(store, ticket_id)
    assert decided.status == "approved" and decided.decided_by == "lena"
    assert len(effects_of(store, ticket_id)) == 1 and resumed == [ticket_id]
    # The worker runs the resumed ticket: it resolves, the order cancelled and refunded once in the store.
    assert process(console_settings, store, ticket_id, order_id) == "resolved"
    with store() as db:
        assert db.get(StoreOrder, order_id).doc["status"] == "cancelled"
    assert refunds_on(store, order_id) == 1 and len(effects_of(store, ticket_id)) == 1


@pytest.fixture
def mail_server():
    from tests.mailservers import SmtpServer

    smtp = SmtpServer().start()
    yield smtp
    smtp.stop()


def test_an_agent_replies_by_email_from_the_browser_and_cannot_approve(settings, store, mail_server):
    """An agent logs in, takes an escalated e-mail ticket, edits crewdesk's draft and sends it: the reply arrives over
    real SMTP (aiosmtpd) in the customer's thread (In-Reply-To: the customer's Message-ID). A form posted without its
    CSRF token is refused; the agent is refused the approvals inbox and a decision, nothing decided."""
    from playwright.sync_api import expect, sync_playwright

    from crewdesk.delivery.channels import reply_channels
    from crewdesk.delivery.service import deliver_pending
    from crewdesk.intake.email.service import ingest_email
    from crewdesk.tickets.models import Message
    from tests.integration.test_email_imap import MTA, SUPPORT, mail

    console_settings = settings.model_copy(
        update={
            "procedures": False,
            "approval_threshold_usd": 100.0,
            "second_approval_above_usd": 500.0,
            "console_secret_key": SECRET,
            "smtp_host": mail_server.host,
            "smtp_port": mail_server.port,
            "smtp_tls": "none",
            "support_address": SUPPORT,
            "email_authserv_id": MTA,
        }
    )
    with transaction(store) as db:
        users.create(db=db, name="arno", password=PASSWORD, role="agent")
    user, order_id, _amount = big_order(store, 100.0)
    waiting = submit(store, email_of(store, user), order_id)
    assert process(console_settings, store, waiting, order_id) == "awaiting_approval"
    approval_id = approval_of(store, waiting).id
    raw, customer_message_id = mail("Parcel lost", "My parcel never arrived. Order #W2378156.", sender="Ana Lima <ana@example.com>")
    ticket_id = ingest_email(session_factory=store, raw=raw, settings=console_settings).ticket_id
    with transaction(store) as db:
        ticket = tickets.get(db=db, ticket_id=ticket_id)
        ticket.status, ticket.status_reason = TicketStatus.escalated, "needs a person: the rules fired"
        ticket.resolution = {"customer_reply": "We are looking into your parcel.", "status": "escalated"}

    channels = reply_channels(console_settings)
    app = create_app(
        console_settings,
        session_factory=store,
        send=lambda _ids: None,
        deliver=lambda tid: deliver_pending(session_factory=store, ticket_id=tid, channels=channels),  # the deliver_replies task, in place
    )
    with serving(app) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/console/login")
            page.fill("#name", "arno")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base}/console/queues")
            expect(page.locator("header nav")).not_to_contain_text("Approvals")
            page.click(f"a[href='/console/tickets/{ticket_id}']")
            expect(page.locator(".taken")).to_contain_text("nobody")
            page.click("text=Take it")
            expect(page.locator(".taken")).to_contain_text("arno")

            page.click("text=Start from the reply crewdesk wrote")
            expect(page.locator("#reply-body")).to_have_value("We are looking into your parcel.")
            page.fill("#reply-body", "Hello Ana,\nthe carrier found your parcel: it arrives tomorrow.\nArno")
            page.click("button.send")
            expect(page.locator(".done")).to_contain_text("handed to email delivery")
            expect(page.locator(".message.outbound").last).to_contain_text("the carrier found your parcel")
            expect(page.locator(".message.outbound .meta").last).to_contain_text("sent")
            page.screenshot(path=str(DOCS / "console-ticket-reply.png"), full_page=True)

            # A form posted without its CSRF token (the hidden field removed from the page) is refused.
            page.evaluate("document.querySelector('form[action$=\"/note\"] input[name=csrf_token]').remove()")
            page.fill("#note-body", "posted without a token")
            page.click("button.note")
            expect(page.locator("h1")).to_have_text("Not allowed")
            expect(page.locator("[role=alert]")).to_contain_text("CSRF token")

            answer = page.goto(f"{base}/console/approvals")
            assert answer is not None and answer.status == 403
            page.goto(f"{base}/console/tickets/{waiting}")
            token = page.locator("input[name=csrf_token]").first.get_attribute("value")
            page.set_content(
                f'<form method="post" action="{base}/console/approvals/{approval_id}/approve">'
                f'<input name="csrf_token" value="{token}"><button type="submit">Approve</button></form>'
            )
            with page.expect_navigation():
                page.click("button")
            assert "needs a lead" in page.content()
        finally:
            browser.close()

    assert len(mail_server.received) == 1
    mailed = mail_server.received[0].message
    assert mail_server.received[0].rcpt_tos == ["ana@example.com"]
    assert mailed["In-Reply-To"] == f"<{customer_message_id}>" and mailed["References"] == f"<{customer_message_id}>"
    assert mailed["Subject"] == f"Re: Parcel lost [crewdesk #{ticket_id}]" and "the carrier found your parcel" in mailed.get_content()
    with store() as db:
        assert [m.author for m in db.query(Message).filter(Message.ticket_id == ticket_id, Message.direction != "inbound")] == ["arno"]  # no note
    assert approval_of(store, waiting).status == "pending" and effects_of(store, waiting) == []


@contextlib.contextmanager
def serving(app):
    """`app` on a real socket (uvicorn in a thread) for the length of the block; yields its base URL."""
    port = free_port()
    uvi = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uvi.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uvi.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://localhost:{port}"
    finally:
        uvi.should_exit = True
        thread.join(timeout=10)


def test_a_lead_signs_in_through_the_oidc_provider_in_the_browser(settings, store):
    """OIDC login in Chromium: the login page offers "Sign in with Stand-in IdP"; the browser goes to the provider (its
    /authorize, a different origin: 127.0.0.1 against the console's localhost), comes back to the callback with the
    code, and lands on the queues as the lead the provider's groups make them; logging out ends the console's session.
    The provider is tests/oidc_provider.py, a STAND-IN (no real identity provider runs here): it "logs in" the person the
    test set, without a page of its own. axe-core checks the login page with the extra button."""
    from playwright.sync_api import expect, sync_playwright

    from tests.integration.test_console_accessibility import AXE, violations
    from tests.oidc_provider import StandInProvider
    from tests.security.test_console_oidc import oidc_settings

    provider = StandInProvider()
    provider.person["groups"] = ["support", "support-leads"]
    app = create_app(oidc_settings(settings, provider), session_factory=store, send=lambda _ids: None)
    try:
        with serving(app) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                context.add_init_script(path=str(AXE))
                page = context.new_page()
                page.goto(f"{base}/console/queues")
                expect(page).to_have_url(f"{base}/console/login")
                assert violations(page) == []
                with page.expect_request(lambda request: request.url.startswith(f"{provider.base}/authorize?")):
                    page.click("text=Sign in with Stand-in IdP")
                expect(page).to_have_url(f"{base}/console/queues")
                expect(page.locator("h1")).to_contain_text("Needs a person")
                expect(page.locator(".who")).to_have_text("oidc:u-1001 (lead)")
                expect(page.locator("header nav")).to_contain_text("Approvals")
                page.click("text=Approvals")
                expect(page).to_have_url(f"{base}/console/approvals")
                page.click("text=Log out")
                expect(page).to_have_url(f"{base}/console/login")
                page.goto(f"{base}/console/queues")
                expect(page).to_have_url(f"{base}/console/login")  # the session is gone
            finally:
                browser.close()
    finally:
        provider.close()
    assert provider.authorize_requests[0]["redirect_uri"] == f"{base}/console/login/oidc/callback"
    assert len(provider.token_requests) == 1 and provider.codes == {}  # the code was exchanged, once
