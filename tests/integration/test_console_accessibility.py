"""The console's main pages in a real headless Chromium (issue 22): axe-core (tests/vendor/axe-core, vendored from npm)
checks the login, queues, ticket (before and after taking it, with its forms), approvals and KPI pages and finds no
serious or critical violation; the queues'
counts update live through htmx under the console's CSP (no violation reported), and without JavaScript the page
still shows them; the KPI page is photographed into docs/ for the README.

The server is tests/integration/test_console_browser.py's: the API with the console on a real socket."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crewdesk.approvals.models import Approval
from crewdesk.auth import users
from crewdesk.db import transaction
from crewdesk.tickets.models import Ticket
from tests.integration import test_console_browser as browser_tests
from tests.integration.test_kpi import make
from tests.security.test_console import PASSWORD

AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")
CHROMIUM, DOCS = browser_tests.CHROMIUM, browser_tests.DOCS
server = browser_tests.server  # the fixture: the API with the console on a real socket
pytestmark = browser_tests.pytestmark  # skipped only without Chromium outside CI


def violations(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now (WCAG 2.1 A and AA, and best practices)."""
    results = page.evaluate(
        "async () => await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
    )
    assert results["testEngine"]["version"] == "4.14.1" and len(results["passes"]) > 10  # axe ran and checked something
    print(page.url, [(v["id"], v["impact"], len(v["nodes"])) for v in results["violations"]])  # every impact, in the log
    found = results["violations"]
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]} for v in found if v["impact"] in SERIOUS]


def some_tickets(store) -> dict[str, int]:
    """Finished tickets of the last days in three languages and two channels, escalations with reasons, and a refund
    waiting for approval: enough for every chart of the KPI page to draw something."""
    now = datetime.now(UTC)
    ids: dict[str, int] = {}
    with transaction(store) as db:
        users.create(db=db, name="lena", password=PASSWORD, role="lead")
        rows = (
            ("K1", "email", "billing", "resolved", 3, 0.012, 60, "en", None),
            ("K2", "email", "billing", "resolved", 3, 0.020, 300, "en", None),
            ("K3", "jira", "technical", "escalated", 3, 0.006, 120, "en", "legal threat (rule: lawyer)"),
            ("K4", "email", "shipping", "resolved", 2, 0.015, 90, "de", None),
            ("K5", "api", "account", "resolved", 2, 0.010, 1800, "es", None),
            ("K6", "email", "shipping", "escalated", 1, 0.008, 240, "de", "angry repeat contact: third message"),
            ("K7", "jira", "billing", "resolved", 1, 0.030, 7200, "en", None),
            ("K8", "email", "billing", "escalated", 1, 0.004, 45, "en", "billing asked for a human"),
        )
        for key, source, category, status, days_ago, cost, after, language, reason in rows:
            created = now - timedelta(days=days_ago, hours=2)
            ids[key] = make(db, key, source=source, category=category, status=status, created=created, costs=(cost,), statuses=((status, after),))
            ticket = db.get(Ticket, ids[key])
            assert ticket is not None
            ticket.triage, ticket.status_reason, ticket.subject, ticket.customer = (
                {"language": language},
                reason,
                f"Order question {key}",
                f"{key.lower()}@example.com",
            )
        ids["A1"] = make(db, "A1", source="email", category="billing", status="awaiting_approval", created=now - timedelta(hours=3), costs=(0.02,))
        ticket = db.get(Ticket, ids["A1"])
        assert ticket is not None
        ticket.subject, ticket.customer, ticket.body = "Refund for a broken lamp", "ana@example.com", "The lamp arrived broken, please refund it."
        db.add(
            Approval(ticket_id=ids["A1"], action="return_delivered_order_items", arguments={"order_id": "#W2378156"}, idempotency_key="k-A1", amount_usd=154.5)
        )
    return ids


def test_main_pages_pass_axe_and_counts_update_live(server, store):
    from playwright.sync_api import expect, sync_playwright

    _settings, base, _resumed = server
    ids = some_tickets(store)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_init_script(path=str(AXE))  # before any page script, outside the page's CSP
            page = context.new_page()
            reported: list[str] = []  # CSP violations and script errors, as the browser's console reports them
            page.on("console", lambda message: reported.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: reported.append(str(error)))
            page.on("response", lambda response: reported.append(f"{response.status} {response.url}") if response.status >= 400 else None)

            found: dict[str, list[dict]] = {}
            page.goto(f"{base}/console/login")
            found["login"] = violations(page)
            page.fill("#name", "lena")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base}/console/queues")
            for name, path in (
                ("queues", "/console/queues"),
                ("ticket", f"/console/tickets/{ids['K3']}"),
                ("approvals", "/console/approvals"),
                ("kpi", "/console/kpi"),
            ):
                page.goto(base + path)
                found[name] = violations(page)
            page.goto(f"{base}/console/tickets/{ids['K3']}")
            page.click("button:has-text('Take it')")  # taken: the page shows the reply, note, hand-back and close forms
            expect(page.locator(".taken")).to_contain_text("lena")
            found["ticket taken"] = violations(page)
            assert found == {name: [] for name in found}, json.dumps(found, indent=1)

            page.goto(f"{base}/console/kpi")
            expect(page.locator("#finished")).to_have_text("8")
            assert page.locator("figure.chart svg").count() == 9
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            page.screenshot(path=str(DOCS / "console-kpi.png"), full_page=True)
            phone = context.new_page()
            phone.set_viewport_size({"width": 390, "height": 844})
            phone.goto(f"{base}/console/kpi")
            expect(phone.locator("#finished")).to_have_text("8")
            assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scrolling
            phone.close()

            page.goto(f"{base}/console/queues")
            tab = page.locator("#queue-tabs a", has_text="Needs a person").locator(".count")
            expect(tab).to_have_text("3")
            assert page.evaluate("typeof htmx") == "object" and page.evaluate("htmx.config.includeIndicatorStyles") is False
            with transaction(store) as db:  # a ticket escalates while the page is open
                ticket = db.get(Ticket, ids["K1"])
                assert ticket is not None
                ticket.status = "escalated"
            expect(tab).to_have_text("4", timeout=25_000)  # the next poll (every 10 s) brings it
            expect(page.locator("#queue-count")).to_have_text("4")
            assert reported == [], reported  # htmx ran under the CSP: no refused inline style or script, no error

            plain = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
            plain.add_cookies(context.cookies())
            still = plain.new_page()
            still.goto(f"{base}/console/queues")
            expect(still.locator("#queue-tabs a", has_text="Needs a person").locator(".count")).to_have_text("4")
            still.click("text=Order question K3")
            expect(still.locator("h1")).to_contain_text("Order question K3")
        finally:
            browser.close()
