"""Every console page on both databases crewdesk runs on (issue 22): a real PostgreSQL and the quickstart's SQLite file,
migrated as `crewdesk init` does. The same tickets, approval and backlog import are made on each; a lead opens the
queues, the live counts fragment, a ticket, the approvals inbox, the KPI page (its figures, charts and tables checked
against the tickets), a backlog import's report and an evaluation report; without a login each is refused.

The console is the API's, in production session settings (Secure cookies, so the client speaks https)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.api import create_app
from crewdesk.approvals.models import Approval
from crewdesk.auth import users
from crewdesk.db import make_engine, make_session_factory, transaction
from crewdesk.inbound.models import BacklogImport
from crewdesk.migrate import upgrade
from crewdesk.settings import Settings
from crewdesk.tickets.models import Ticket
from tests.integration.test_kpi import make
from tests.security.test_console import PASSWORD, SECRET, client, csrf, logged_in


@dataclass(frozen=True)
class Console:
    settings: Settings
    sessions: sessionmaker[Session]
    reports: Path


@pytest.fixture(params=["postgresql", "sqlite"])
def console(request, settings, tmp_path) -> Iterator[Console]:
    home = tmp_path / "home"
    update = {"console_secret_key": SECRET, "home": home}
    if request.param == "postgresql":
        yield Console(settings.model_copy(update=update), request.getfixturevalue("session_factory"), home / "reports")
        return
    url = f"sqlite:///{tmp_path / 'crewdesk.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield Console(settings.model_copy(update={**update, "database_url": url}), make_session_factory(engine), home / "reports")
    engine.dispose()


@pytest.fixture
def tickets(console) -> dict[str, int]:
    """Four finished tickets made a day ago (two resolved on email, two escalated on jira, one of them in German), one
    waiting on an approval, a lead and an agent, a backlog import and an evaluation report in the home's reports/."""
    made = datetime.now(UTC) - timedelta(days=1)
    ids: dict[str, int] = {}
    with transaction(console.sessions) as db:
        for name, role in (("lena", "lead"), ("arno", "agent")):
            users.create(db=db, name=name, password=PASSWORD, role=role)
        for key, source, status, cost, after in (
            ("R1", "email", "resolved", 0.02, 60),
            ("R2", "email", "resolved", 0.04, 180),
            ("E1", "jira", "escalated", 0.01, 120),
            ("E2", "jira", "escalated", 0.01, 600),
        ):
            ids[key] = make(db, key, source=source, category="billing", status=status, created=made, costs=(cost,), statuses=((status, after),))
        for key, language, reason in (
            ("R1", "en", None),
            ("R2", "en", None),
            ("E1", "en", "legal threat (rule: lawyer)"),
            ("E2", "de", "legal threat (rule: Anwalt)"),
        ):
            ticket = db.get(Ticket, ids[key])
            assert ticket is not None
            ticket.triage, ticket.status_reason, ticket.subject = {"language": language}, reason, f"Subject of {key}"
        ids["A1"] = make(db, "A1", source="api", category="billing", status="awaiting_approval", created=made, costs=(0.03,))
        db.add(Approval(ticket_id=ids["A1"], action="return_delivered_order_items", arguments={"order_id": "#W1"}, idempotency_key="k-A1", amount_usd=150.0))
        backlog = BacklogImport(path="old-tickets.csv", sha256="0" * 64, format="csv", rows_done=3, rows_ok=2, rows_bad=1)
        db.add(backlog)
        db.flush()
        ids["backlog"] = backlog.id
    console.reports.mkdir(parents=True)
    (console.reports / "tau2-retail-test-20261207.html").write_text("<!doctype html><title>eval</title><h1>tau2 retail: 65/100</h1>")
    (console.reports / "notes.txt").write_text("not a report")
    return ids


@pytest.fixture
def app(console, tickets):
    return create_app(console.settings, session_factory=console.sessions, send=lambda _ids: None)


def test_without_a_login_every_page_is_refused(app, tickets):
    browser = client(app)
    for path in ("/console/queues", f"/console/tickets/{tickets['E1']}", "/console/approvals", "/console/kpi", f"/console/kpi/backlogs/{tickets['backlog']}"):
        answer = browser.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login", path
    assert browser.get("/console/kpi/reports/tau2-retail-test-20261207.html").status_code == 303
    counts = browser.get("/console/queues/counts")  # htmx's poll: the whole page goes to the login, no form in the tabs
    assert counts.status_code == 204 and counts.headers["hx-redirect"] == "/console/login"
    assert browser.get("/console/login").status_code == 200


def test_queues_live_counts_ticket_and_approvals(app, tickets, console):
    lena = logged_in(app, "lena")
    queues = lena.get("/console/queues")
    assert queues.status_code == 200
    assert re.search(r'Needs a person <span class="count">2</span>', queues.text) and 'id="queue-count">2</span>' in queues.text
    assert f"/console/tickets/{tickets['E1']}" in queues.text and "Subject of E2" in queues.text
    assert 'hx-get="/console/queues/counts?queue=escalated&amp;source=&amp;' in queues.text and 'hx-trigger="every 10s"' in queues.text
    assert '<script src="/console/static/htmx.min.js" defer></script>' in queues.text

    fragment = lena.get("/console/queues/counts", params={"queue": "approval", "source": "api"})
    assert fragment.status_code == 200 and "<html" not in fragment.text and "Log out" not in fragment.text
    assert re.search(r'Awaiting approval <span class="count">1</span>', fragment.text) and re.search(
        r'Needs a person <span class="count">0</span>', fragment.text
    )
    assert '<span class="count" id="queue-count" hx-swap-oob="true">1</span>' in fragment.text
    with transaction(console.sessions) as db:  # a new escalation: the next poll counts it
        ticket = db.get(Ticket, tickets["R1"])
        assert ticket is not None
        ticket.status = "escalated"
    assert re.search(r'Needs a person <span class="count">3</span>', lena.get("/console/queues/counts").text)

    ticket = lena.get(f"/console/tickets/{tickets['E1']}")
    assert ticket.status_code == 200 and "Subject of E1" in ticket.text and "legal threat (rule: lawyer)" in ticket.text
    inbox = lena.get("/console/approvals")
    assert inbox.status_code == 200 and "return_delivered_order_items · $150.00" in inbox.text and f"/console/tickets/{tickets['A1']}" in inbox.text
    assert logged_in(app, "arno").get("/console/approvals").status_code == 403


def test_the_kpi_page(app, tickets):
    arno = logged_in(app, "arno")  # an agent sees the KPIs too
    page = arno.get("/console/kpi")
    assert page.status_code == 200
    text = page.text
    assert '<strong id="finished">4</strong>' in text  # the ticket awaiting approval is not finished
    assert "<dt>Automated resolution</dt><dd>50.0%</dd>" in text and "<dt>Escalation</dt><dd>50.0%</dd>" in text
    assert "<dt>Cost per resolved ticket</dt><dd>$0.0400</dd>" in text  # 0.08 over the 4 finished tickets' runs / 2 resolved
    assert "<dt>Handle time p50</dt><dd>2.5 min</dd>" in text  # 60, 120, 180, 600 s
    assert text.count("<svg") == 9 and "<script>" not in text
    assert 'aria-label="Automated resolution and escalation rate per language"' in text and "de automated resolution: 0.0% of 1" in text
    assert '<table class="kpi" id="reasons">' in text and '<tr><th scope="row">legal threat</th><td data-label="Tickets">2</td></tr>' in text

    def cells(table: str, key: str) -> list[str]:
        body = text.split(f'id="by-{table}"', 1)[1].split("</table>", 1)[0]
        found = re.search(rf'<tr><th scope="row">{re.escape(key)}</th>(.*?)</tr>', body)
        assert found, (table, key)
        return re.findall(r"<td[^>]*>(.*?)</td>", found.group(1))

    assert cells("channel", "email")[:5] == ["2", "2", "100.0%", "100.0%", "0.0%"] and cells("channel", "email")[-1] == "$0.0300"
    assert cells("channel", "jira")[:5] == ["2", "0", "0.0%", "0.0%", "100.0%"] and cells("channel", "jira")[-1] == "-"
    assert cells("language", "en")[:2] == ["3", "2"] and cells("language", "de")[:5] == ["1", "0", "0.0%", "0.0%", "100.0%"]
    assert cells("category", "billing")[:2] == ["4", "2"]
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert cells("day", day)[:2] == ["4", "2"]
    assert cells("all", "all")[:5] == ["4", "2", "50.0%", "50.0%", "50.0%"]

    assert '<strong id="finished">0</strong>' in arno.get("/console/kpi", params={"days": 1}).text  # made a day ago: outside
    assert '<strong id="finished">4</strong>' in arno.get("/console/kpi", params={"days": 12345}).text  # not offered: 30

    assert 'href="/console/kpi/reports/tau2-retail-test-20261207.html"' in text and "notes.txt" not in text
    report = arno.get("/console/kpi/reports/tau2-retail-test-20261207.html")
    assert report.status_code == 200 and "tau2 retail: 65/100" in report.text
    assert report.headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
    assert report.headers.get_list("content-security-policy") == [report.headers["content-security-policy"]]  # one policy, the report's
    for name in ("notes.txt", "..%2F..%2Fcrewdesk.db", "missing.html"):
        assert arno.get(f"/console/kpi/reports/{name}").status_code == 404, name

    assert f'href="/console/kpi/backlogs/{tickets["backlog"]}">Import {tickets["backlog"]}: old-tickets.csv</a>' in text
    backlog = arno.get(f"/console/kpi/backlogs/{tickets['backlog']}")
    assert backlog.status_code == 200 and "old-tickets.csv (csv)" in backlog.text and '<th scope="row">rows read</th><td>3</td>' in backlog.text
    assert arno.get("/console/kpi/backlogs/999").status_code == 404
    assert csrf(page)  # the page carries the logout form's token like every page
