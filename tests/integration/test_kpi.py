"""`crewdesk kpi`: exact rates for a known set of tickets, and the HTML page with its charts, on both databases crewdesk
runs on (a real PostgreSQL and the quickstart's SQLite file); and the KPIs of tickets `crewdesk run` processed, checked
against the rows it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.approvals.models import Approval
from crewdesk.audit import service as audit
from crewdesk.audit.models import AuditEvent
from crewdesk.db import make_engine, make_session_factory, transaction
from crewdesk.metrics import kpi
from crewdesk.migrate import upgrade
from crewdesk.runs.models import CrewRun
from crewdesk.store.service import load_store
from crewdesk.tickets.models import Message, Question, Ticket

ROOT = Path(__file__).resolve().parents[2]
CREWDESK = str(Path(sys.executable).parent / "crewdesk")
D1 = datetime(2025, 3, 3, tzinfo=UTC)
SINCE = datetime(2025, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Database:
    url: str
    sessions: sessionmaker[Session]


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request, tmp_path) -> Iterator[Database]:
    """Each KPI test runs on PostgreSQL (emptied) and on a fresh SQLite file migrated as `crewdesk init` does: SQLite
    hands datetimes back as text unless the column expression is typed, so what reads right on one may not on the
    other."""
    if request.param == "postgresql":
        yield Database(request.getfixturevalue("pg_url"), request.getfixturevalue("session_factory"))
        return
    url = f"sqlite:///{tmp_path / 'crewdesk.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield Database(url, make_session_factory(engine))
    engine.dispose()


def table_rows(out: str) -> dict[str, list[str]]:
    """The rows of `crewdesk kpi`'s tables: first cell (group) -> the 11 figures of kpi.COLUMNS."""
    return {cells[0]: cells[1:] for line in out.splitlines() if (cells := [c.strip() for c in line.strip("│┃ ").split("│")]) and len(cells) == 12}


def make(
    db,
    key: str,
    *,
    source: str,
    category: str | None,
    status: str,
    created: datetime,
    inbound: int = 1,
    outbound: int = 1,
    costs: tuple[float, ...] = (),
    statuses: tuple[tuple[str, float], ...] = (),
    approval: str | None = None,
) -> int:
    """One ticket with its messages, runs (one per cost), approval and status audit rows (name, seconds after creation)."""
    ticket = Ticket(source=source, external_id=key, body="help", category=category, status=status, created_at=created, updated_at=created)
    db.add(ticket)
    db.flush()
    for i in range(inbound):
        db.add(Message(ticket_id=ticket.id, direction="inbound", body=f"question {i}", created_at=created + timedelta(seconds=i)))
    for i in range(outbound):
        db.add(Message(ticket_id=ticket.id, direction="outbound", body=f"answer {i}", created_at=created + timedelta(seconds=10 + i)))
    for i, cost in enumerate(costs):
        db.add(
            CrewRun(
                ticket_id=ticket.id,
                status="completed",
                outcome=status,
                cost_usd=cost,
                latency_s=5.0,
                started_at=created,
                finished_at=created + timedelta(seconds=5 + i),
            )
        )
    if approval:
        db.add(
            Approval(
                ticket_id=ticket.id,
                action="return_delivered_order_items",
                arguments={},
                idempotency_key=f"k-{key}",
                status=approval,
                decided_by="maria" if approval != "pending" else None,
            )
        )
    db.flush()
    for name, after in statuses:
        audit.record(db=db, ticket_id=ticket.id, kind="status", name=name, actor="pipeline", at=created + timedelta(seconds=after))
    return ticket.id


@pytest.fixture
def known_tickets(database):
    """Six finished tickets over three days (and three that must not count)."""
    d2, d3 = D1 + timedelta(days=1), D1 + timedelta(days=2)
    with transaction(database.sessions) as db:
        # email: two automated resolutions, one of them with two replies (not first-contact)
        make(db, "T1", source="email", category="billing", status="resolved", created=D1 + timedelta(hours=9), costs=(0.012,), statuses=(("resolved", 60),))
        make(
            db,
            "T2",
            source="email",
            category="billing",
            status="resolved",
            created=D1 + timedelta(hours=10),
            outbound=2,
            costs=(0.020,),
            statuses=(("resolved", 300),),
        )
        # jira: one escalation, one resolution a person approved (first-contact, not automated)
        make(
            db, "T3", source="jira", category="technical", status="escalated", created=D1 + timedelta(hours=11), costs=(0.006,), statuses=(("escalated", 120),)
        )
        make(
            db,
            "T4",
            source="jira",
            category="billing",
            status="resolved",
            created=d2 + timedelta(hours=9),
            costs=(0.030,),
            statuses=(("awaiting_approval", 30), ("resolved", 7200)),
            approval="approved",
        )
        # api: a resolution reopened by the customer (two runs), and a ticket that failed after retries (no run)
        make(
            db,
            "T5",
            source="api",
            category="account",
            status="resolved",
            created=d2 + timedelta(hours=12),
            inbound=2,
            outbound=2,
            costs=(0.010, 0.010),
            statuses=(("resolved", 100), ("reopened", 200), ("resolved", 400)),
        )
        make(db, "T6", source="api", category=None, status="failed", created=d3 + timedelta(hours=8), outbound=0, statuses=(("failed", 30),))
        # not counted: still queued; rejected at intake (no run, no status row); created before the window
        make(db, "T7", source="email", category="billing", status="queued", created=d3 + timedelta(hours=9), costs=(0.5,))
        make(db, "T8", source="file", category=None, status="failed", created=d3 + timedelta(hours=10), inbound=0, outbound=0)
        make(db, "T9", source="email", category="billing", status="resolved", created=SINCE - timedelta(days=5), costs=(0.7,), statuses=(("resolved", 10),))
    return database


def test_kpis_of_a_known_set(known_tickets):
    with known_tickets.sessions() as db:
        report = kpi.report(db=db, since=SINCE, until=D1 + timedelta(days=30))
    total = report.total
    assert (total.finished, total.resolved, total.automated, total.first_contact, total.escalated, total.failed) == (6, 4, 3, 2, 1, 1)
    assert total.automated_rate == pytest.approx(0.5) and total.first_contact_rate == pytest.approx(2 / 6) and total.escalation_rate == pytest.approx(1 / 6)
    assert sorted(total.handle_seconds) == [30, 60, 120, 300, 400, 7200]  # created -> last status row (T5: the second resolution)
    assert total.handle_p50 == pytest.approx(210.0) and total.handle_p95 == pytest.approx(400 + (7200 - 400) * 0.75)
    assert total.cost_per_resolved == pytest.approx(0.088 / 4)

    channels = {g.key: g for g in report.by_channel}
    assert list(channels) == ["api", "email", "jira"]
    assert [(g.finished, g.automated_rate, g.first_contact_rate, g.escalation_rate) for g in channels.values()] == [
        (2, 0.5, 0.0, 0.0),
        (2, 1.0, 0.5, 0.0),
        (2, 0.0, 0.5, 0.5),
    ]
    assert channels["email"].cost_per_resolved == pytest.approx(0.016) and channels["jira"].cost_per_resolved == pytest.approx(0.036)
    assert channels["api"].cost_per_resolved == pytest.approx(0.020) and channels["jira"].handle_p50 == pytest.approx((120 + 7200) / 2)

    days = {g.key: g for g in report.by_day}
    assert list(days) == ["2025-03-03", "2025-03-04", "2025-03-05"]
    assert days["2025-03-03"].automated_rate == pytest.approx(2 / 3) and days["2025-03-03"].escalation_rate == pytest.approx(1 / 3)
    assert days["2025-03-04"].automated_rate == pytest.approx(0.5) and days["2025-03-04"].escalation_rate == 0.0
    assert days["2025-03-05"].finished == 1 and days["2025-03-05"].automated_rate == 0.0 and days["2025-03-05"].cost_per_resolved is None

    categories = {g.key: (g.finished, g.resolved) for g in report.by_category}
    assert categories == {"account": (1, 1), "billing": (3, 3), "none": (1, 0), "technical": (1, 0)}


def test_window():
    now = datetime(2025, 6, 10, 12, tzinfo=UTC)
    assert kpi.window(since=None, days=None, now=now) == now - timedelta(days=30)
    assert kpi.window(since=None, days=7, now=now) == datetime(2025, 6, 3, 12, tzinfo=UTC)
    assert kpi.window(since=datetime(2025, 6, 1), days=7, now=now) == datetime(2025, 6, 1, tzinfo=UTC)


def test_kpi_command_prints_the_figures_and_writes_html_with_charts(known_tickets, tmp_path):
    page, chart = tmp_path / "kpi.html", tmp_path / "kpi.svg"
    env = {**os.environ, "CREWDESK_DATABASE_URL": known_tickets.url, "CREWDESK_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    shown = subprocess.run(
        [CREWDESK, "kpi", "--since", "2025-03-01", "--html", str(page), "--svg", str(chart)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "finished: 6" in out
    # all: finished, resolved, automated, first-contact, escalation, waiting on customer, questions per resolution,
    # time waiting p50, handle p50, p95, cost per resolved
    rows = table_rows(out)
    assert rows["all"] == ["6", "4", "50.0%", "33.3%", "16.7%", "0", "0.00", "-", "3.5 min", "91.7 min", "$0.0220"]
    assert rows["email"] == ["2", "2", "100.0%", "50.0%", "0.0%", "0", "0.00", "-", "3.0 min", "4.8 min", "$0.0160"]
    assert rows["jira"][:5] == ["2", "1", "0.0%", "50.0%", "50.0%"] and rows["jira"][-1] == "$0.0360"
    assert rows["2025-03-05"] == ["1", "0", "0.0%", "0.0%", "0.0%", "0", "-", "-", "30.0 s", "30.0 s", "-"]
    assert rows["none"][:2] == ["1", "0"] and rows["billing"][:2] == ["3", "3"]

    html = page.read_text()
    assert html.count("<svg") == 3 and "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert (
        "<tr><th>all</th><td>6</td><td>4</td><td>50.0%</td><td>33.3%</td><td>16.7%</td><td>0</td><td>0.00</td><td>-</td><td>3.5 min</td>"
        "<td>91.7 min</td><td>$0.0220</td></tr>"
    ) in html
    assert "<tr><th>2025-03-03</th><td>3</td><td>2</td><td>66.7%</td><td>33.3%</td><td>33.3%</td>" in html
    assert "2025-03-03 automated resolution: 66.7% of 3" in html and "2025-03-03 escalation: 33.3% of 3" in html
    svg = chart.read_text()
    assert svg.startswith("<svg") and svg.count("<rect") >= 2 + 2 * 3 and "03-04" in svg

    bad = subprocess.run([CREWDESK, "kpi", "--since", "yesterday"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not an ISO date" in bad.stderr


def test_questions_to_the_customer_count_as_waiting_replies_needed_and_time_waited(database):
    """A ticket waiting on the customer counts among the finished (no run acts on it) and as waiting; a resolution that
    needed two answers counts two questions; the time waited is question to answer (to now while open)."""
    with transaction(database.sessions) as db:
        done = make(db, "Q1", source="api", category="billing", status="resolved", created=D1, inbound=3, outbound=3, statuses=(("resolved", 900),))
        waits = make(db, "Q2", source="api", category="billing", status="waiting_on_customer", created=D1, statuses=(("waiting_on_customer", 20),))
        for turn, (opened, answered) in enumerate(((60, 180), (300, 420)), start=1):
            db.add(
                Question(
                    ticket_id=done,
                    turn=turn,
                    status="answered",
                    state={},
                    created_at=D1 + timedelta(seconds=opened),
                    answered_at=D1 + timedelta(seconds=answered),
                )
            )
        db.add(Question(ticket_id=waits, turn=1, status="open", state={}, created_at=datetime.now(UTC) - timedelta(hours=1)))
    with database.sessions() as db:
        total = kpi.report(db=db, since=SINCE).total
    assert (total.finished, total.resolved, total.waiting) == (2, 1, 1)
    assert total.questions_per_resolution == pytest.approx(2.0)
    assert sorted(total.waited_seconds)[0] == pytest.approx(240.0) and sorted(total.waited_seconds)[1] == pytest.approx(3600.0, abs=60)
    assert total.first_contact == 0  # three messages each way: no first-contact resolution


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def test_kpis_of_tickets_crewdesk_processed(database, store_data, tmp_path):
    """The quickstart's path, on each database: `crewdesk run` processes the first 8 example tickets on the scripted
    model against the demo store (as configured by default: procedures, writes confirmed by the customer), then
    `crewdesk kpi` prints, and kpi.report returns, the figures the rows it wrote give, recomputed here by hand."""
    with transaction(database.sessions) as db:
        load_store(db=db, data=store_data)
    env = {**os.environ, "CREWDESK_DATABASE_URL": database.url, "CREWDESK_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    for test_only in ("CREWDESK_PROCEDURES", "CREWDESK_CONFIRM_WRITES", "CREWDESK_WRITE_CHECK", "CREWDESK_IDENTITY_CLAIMED_WRITES"):
        env.pop(test_only, None)  # conftest's settings for other tests; the quickstart runs with the defaults
    ran = subprocess.run(
        [CREWDESK, "run", "examples/tickets.jsonl", "--limit", "8", "--provider", "scripted"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]

    with database.sessions() as db:  # what the KPIs must say, from the rows themselves (ORM-typed, no aggregate in SQL)
        tickets = list(db.scalars(select(Ticket).order_by(Ticket.id)))
        last_status: dict[int, datetime] = {}
        reopened: set[int] = set()
        for tid, name, at in db.execute(select(AuditEvent.ticket_id, AuditEvent.name, AuditEvent.created_at).where(AuditEvent.kind == "status")):
            last_status[tid] = max(last_status.get(tid, _utc(at)), _utc(at))
            reopened |= {tid} if name == "reopened" else set()
        messages = [(m.ticket_id, m.direction) for m in db.scalars(select(Message))]
        questions = [q.ticket_id for q in db.scalars(select(Question))]
        decided = {a.ticket_id for a in db.scalars(select(Approval)) if a.status in ("approved", "rejected")}
        cost = sum(r.cost_usd or 0.0 for r in db.scalars(select(CrewRun)))
    assert len(tickets) == 8
    statuses = [str(t.status) for t in tickets]
    assert {"resolved", "escalated", "waiting_on_customer"} <= set(statuses), statuses  # every kind of finish to count
    assert all(s in ("resolved", "escalated", "failed", "waiting_on_customer") for s in statuses), statuses  # all finished
    handle = sorted((last_status[t.id] - _utc(t.created_at)).total_seconds() for t in tickets)
    assert all(h >= 0 for h in handle) and handle[-1] > 0
    resolved = [t.id for t in tickets if t.status == "resolved"]
    first_contact = [tid for tid in resolved if messages.count((tid, "outbound")) == 1 and messages.count((tid, "inbound")) == 1 and tid not in reopened]
    expected = {
        "finished": 8,
        "resolved": len(resolved),
        "automated": len([tid for tid in resolved if tid not in decided]),
        "first_contact": len(first_contact),
        "escalated": statuses.count("escalated"),
        "failed": statuses.count("failed"),
        "waiting": statuses.count("waiting_on_customer"),
        "questions_resolved": len([q for q in questions if q in resolved]),
    }

    with database.sessions() as db:
        report = kpi.report(db=db, since=datetime.now(UTC) - timedelta(days=1))
    total = report.total
    assert {name: getattr(total, name) for name in expected} == expected
    assert sorted(total.handle_seconds) == pytest.approx(handle, abs=1e-3)
    assert total.cost_usd == pytest.approx(cost) and total.cost_per_resolved == pytest.approx(cost / len(resolved))
    assert len(total.waited_seconds) == len(set(questions)) and all(w >= 0 for w in total.waited_seconds)
    assert [g.key for g in report.by_channel] == ["file"] and sum(g.finished for g in report.by_day) == 8
    assert [g.key for g in report.by_day] == sorted({_utc(t.created_at).date().isoformat() for t in tickets})

    page, chart = tmp_path / "kpi.html", tmp_path / "kpi.svg"
    shown = subprocess.run(
        [CREWDESK, "kpi", "--days", "1", "--html", str(page), "--svg", str(chart)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "Traceback" not in shown.stderr and "finished: 8" in shown.stdout
    figures = [
        "8",
        str(expected["resolved"]),
        kpi.pct(expected["automated"] / 8),
        kpi.pct(expected["first_contact"] / 8),
        kpi.pct(expected["escalated"] / 8),
        str(expected["waiting"]),
        f"{expected['questions_resolved'] / len(resolved):.2f}",
        None,  # time waiting p50: open questions wait until now
        kpi.seconds(kpi.percentile(handle, 50)),
        kpi.seconds(kpi.percentile(handle, 95)),
        kpi.money(cost / len(resolved)),
    ]
    rows = table_rows(shown.stdout)
    assert [None if i == 7 else cell for i, cell in enumerate(rows["all"])] == figures, shown.stdout
    assert rows["file"][:6] == figures[:6]
    html = page.read_text()
    assert "<tr><th>all</th>" + "".join(f"<td>{v}</td>" for v in figures[:7]) in html and html.count("<svg") == 3
    svg = chart.read_text()
    assert svg.startswith("<svg") and "n=8" in svg


def test_kpis_by_language_and_escalation_reasons(database):
    """By the language the router detected ("unknown" before routing), and the escalations counted by their reason's
    gist: the same rule with different details counts once."""
    with transaction(database.sessions) as db:
        for key, status, language, reason in (
            ("L1", "resolved", "en", None),
            ("L2", "escalated", "en", "legal threat (rule: lawyer)"),
            ("L3", "escalated", "de", "legal threat (rule: Anwalt)"),
            ("L4", "escalated", "de", "billing asked for a human"),
            ("L5", "escalated", None, ""),
            ("L6", "resolved", None, None),
        ):
            tid = make(db, key, source="email", category="billing", status=status, created=D1, statuses=((status, 30),))
            ticket = db.get(Ticket, tid)
            ticket.triage, ticket.status_reason = ({"language": language} if language else None), reason
    with database.sessions() as db:
        report = kpi.report(db=db, since=SINCE, until=D1 + timedelta(days=1))
    languages = {g.key: (g.finished, g.resolved, g.escalated) for g in report.by_language}
    assert languages == {"de": (2, 0, 2), "en": (2, 1, 1), "unknown": (2, 1, 1)}
    assert report.escalation_reasons == [("legal threat", 2), ("billing asked for a human", 1), ("no reason recorded", 1)]
    assert [name for name, _ in report.sections()] == ["all", "channel", "category", "language", "day"]
    assert kpi.reason_gist("specialist asked for a human: customer wants a manager") == "specialist asked for a human"
    assert kpi.reason_gist("x" * 100) == "x" * 79 + "…"
