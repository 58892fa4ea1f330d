"""The support console in a real headless Chromium (issue 22): Debian's /usr/bin/chromium driven by Playwright's
Python package, against a uvicorn server this test starts on a free loopback port, with the production session
settings (Secure cookies: Chromium keeps them on http://localhost). A lead logs in, opens the approvals inbox, approves
a refund a ticket asked for, and sees it approved, with the write made once and the approval decided under their name;
a ticket whose body holds <script> and <img onerror> shows them as text and runs neither. The queue and a ticket
are photographed into docs/ for the README (a laptop and a phone width).

Skipped only when /usr/bin/chromium is missing outside CI (scripts/services.sh installs it as root); in CI (CI=true)
it must run."""

from __future__ import annotations

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
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import TicketStatus
from crewdesk.tickets.schemas import TicketIn
from tests.security.test_approvals import approval_of, big_order, effects_of, email_of, process, submit
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
