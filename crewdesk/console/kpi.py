"""The console's KPI page (issue 22): what `crewdesk kpi` computes (crewdesk/metrics/kpi.py), for a window of days, as
tables and inline SVG charts rendered here (no script), with links to the eval reports under the home's reports/
folder and to each backlog import's report. Any logged-in user sees it, as the queues."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from markupsafe import Markup
from sqlalchemy import select

from crewdesk.console.app import ConsoleServices, page
from crewdesk.console.security import LoggedIn
from crewdesk.errors import NotFound
from crewdesk.inbound.models import BacklogImport
from crewdesk.intake.backlog_report import BacklogNotFound, summarise
from crewdesk.metrics import kpi

router = APIRouter(include_in_schema=False)
WINDOWS = (1, 7, 30, 90, 365)  # days the page offers
REPORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.html")
# A report is a file a command wrote (crewdesk eval): shown with its own inline styles, no script of any kind, sandboxed.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
BACKLOGS_SHOWN = 20


def _services(request: Request) -> ConsoleServices:
    return request.app.state.console


def reports_dir(request: Request) -> Path:
    return _services(request).settings.home / "reports"


def eval_reports(folder: Path) -> list[str]:
    """The HTML reports in the home's reports/ folder (where `crewdesk eval` writes by default), newest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_file() and REPORT_NAME.fullmatch(p.name)]
    return [p.name for p in sorted(found, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)]


def charts(report: kpi.KpiReport) -> list[tuple[Markup, bool]]:
    """The page's charts, built by crewdesk/metrics/kpi.py from escaped text (Markup: not escaped again), each with
    whether it takes a whole row (the horizontal bars: labels on the left, figures on the right)."""
    rates = "share of finished tickets; n = finished tickets"
    shown = [
        kpi.rate_chart(report.by_day),
        kpi.rate_chart(report.by_channel, "Automated resolution and escalation rate per channel", rates),
        kpi.rate_chart(report.by_category, "Automated resolution and escalation rate per category", rates),
        kpi.rate_chart(report.by_language, "Automated resolution and escalation rate per language", rates),
        kpi.bar_chart(
            [(reason, float(n), f"{n:,}") for reason, n in report.escalation_reasons], "Escalations by reason (tickets)", "#c62828", "no escalations"
        ),
        kpi.handle_chart(report.by_channel, "Handle time per channel (median, p95 mark)"),
        kpi.handle_chart(report.by_category, "Handle time per category (median, p95 mark)"),
        kpi.bar_chart(
            [(g.key, g.cost_per_resolved or 0.0, kpi.money(g.cost_per_resolved)) for g in report.by_channel],
            "Cost per resolved ticket per channel (USD)",
            "#6a1b9a",
            "no finished tickets",
        ),
        kpi.bar_chart(
            [(g.key, g.waited_p50 or 0.0, kpi.seconds(g.waited_p50)) for g in report.by_channel if g.waited_seconds],
            "Time waiting on the customer per channel (median)",
            "#a36b00",
            "no questions to customers",
        ),
    ]
    return [(Markup(svg), i >= 4) for i, svg in enumerate(shown)]  # every label in them went through html.escape


@router.get("/kpi")
def kpi_page(request: Request, user: LoggedIn, days: int = 30) -> Response:
    days = days if days in WINDOWS else 30
    until = datetime.now(UTC)
    with _services(request).session_factory() as db:
        report = kpi.report(db=db, since=until - timedelta(days=days), until=until)
        backlogs = list(db.scalars(select(BacklogImport).order_by(BacklogImport.id.desc()).limit(BACKLOGS_SHOWN)))
        db.expunge_all()
    return page(
        request,
        "kpi.html",
        {
            "user": user,
            "report": report,
            "days": days,
            "windows": WINDOWS,
            "columns": kpi.COLUMNS,
            "row": kpi.row,
            "charts": charts(report),
            "eval_reports": eval_reports(reports_dir(request)),
            "backlogs": backlogs,
        },
    )


@router.get("/kpi/reports/{name}")
def eval_report(request: Request, _user: LoggedIn, name: str) -> Response:
    """One report file of the listing; any other name is not found (no path leaves the folder)."""
    if name not in eval_reports(reports_dir(request)):
        raise NotFound(f"no report {name!r} in the reports folder")
    return FileResponse(reports_dir(request) / name, media_type="text/html", headers={"content-security-policy": REPORT_CSP})


@router.get("/kpi/backlogs/{import_id}")
def backlog(request: Request, user: LoggedIn, import_id: int) -> Response:
    with _services(request).session_factory() as db:
        try:
            summary = summarise(db=db, import_id=import_id)
        except BacklogNotFound as exc:
            raise NotFound(str(exc)) from exc
    return page(request, "backlog.html", {"user": user, "summary": summary})
