"""What a backlog import found and what became of its tickets: one summary for the terminal table and an HTML page
with SVG charts, so both show the same numbers."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crewdesk.errors import CrewdeskError
from crewdesk.inbound.models import BacklogImport, InboundEvent
from crewdesk.intake.backlog import CHANNEL, latest_import
from crewdesk.runs.models import CrewRun, RunStatus
from crewdesk.tickets.models import Ticket, TicketStatus

FINAL = (TicketStatus.resolved, TicketStatus.escalated, TicketStatus.failed)


class BacklogNotFound(CrewdeskError):
    pass


@dataclass(frozen=True)
class BadRow:
    record: int  # position in the file, counting every row read
    line: int  # where the row starts in the file
    kind: str  # bad_row | duplicate
    external_id: str
    reason: str
    ticket_id: int | None  # for a duplicate: the ticket that already had its id


@dataclass
class BacklogSummary:
    import_id: int
    path: str
    format: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows_done: int
    rows_ok: int
    rows_bad: int
    rows_duplicate: int
    rows_enqueued: int
    by_status: dict[str, int]  # a report's labels
    by_category: dict[str, int]
    runs: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latencies: list[float] = field(repr=False)  # seconds of each completed crew run
    bad_rows: list[BadRow] = field(repr=False)

    @property
    def tickets(self) -> int:
        return sum(self.by_status.values())

    @property
    def finished(self) -> int:
        return sum(self.by_status.get(s, 0) for s in FINAL)

    def rate(self, status: str) -> float | None:
        """Share of this import's finished tickets (resolved, escalated or failed) that ended in `status`."""
        return self.by_status.get(status, 0) / self.finished if self.finished else None

    @property
    def latency_p50(self) -> float | None:
        return percentile(self.latencies, 50)

    @property
    def latency_p95(self) -> float | None:
        return percentile(self.latencies, 95)

    def facts(self) -> list[tuple[str, str]]:
        """The summary as label/value pairs: the terminal table and the HTML page both print these."""

        def rate(status: str) -> str:
            value = self.rate(status)
            return "-" if value is None else f"{value:.1%} ({self.by_status.get(status, 0)}/{self.finished})"

        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f} s"

        def mix(counts: dict[str, int]) -> str:
            return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"

        return [
            ("import", f"#{self.import_id} {self.path} ({self.format})"),
            (
                "status",
                f"{self.status}, started {self.started_at:%Y-%m-%d %H:%M:%S}"
                + (f", finished {self.finished_at:%Y-%m-%d %H:%M:%S}" if self.finished_at else ""),
            ),
            ("rows read", f"{self.rows_done:,}"),
            ("rows ok (new tickets)", f"{self.rows_ok:,}"),
            ("rows bad", f"{self.rows_bad:,}"),
            ("rows duplicate", f"{self.rows_duplicate:,}"),
            ("tickets queued", f"{self.rows_enqueued:,}"),
            ("tickets by status", mix(self.by_status)),
            ("category mix", mix(self.by_category)),
            ("resolution rate", rate(TicketStatus.resolved)),
            ("escalation rate", rate(TicketStatus.escalated)),
            ("crew runs", f"{self.runs:,}"),
            ("tokens in / out", f"{self.tokens_in:,} / {self.tokens_out:,}"),
            ("cost", f"${self.cost_usd:.5f}"),
            ("latency p50 / p95", f"{seconds(self.latency_p50)} / {seconds(self.latency_p95)}"),
        ]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def bad_rows(*, db: Session, import_id: int, kind: str | None = None, limit: int | None = None) -> list[BadRow]:
    """Bad (kind bad_row) and duplicate (kind duplicate) rows of an import, in file order (recorded in that order)."""
    stmt = select(InboundEvent).where(InboundEvent.channel == CHANNEL, InboundEvent.external_id.like(f"{import_id}:%")).order_by(InboundEvent.id)
    if kind is not None:
        stmt = stmt.where(InboundEvent.kind == kind)
    if limit is not None:
        stmt = stmt.limit(limit)
    rows = []
    for event in db.execute(stmt).scalars():
        detail = event.detail or {}
        rows.append(
            BadRow(
                record=int(detail.get("record", 0)),
                line=int(detail.get("line", 0)),
                kind=event.kind,
                external_id=str(detail.get("external_id", "")),
                reason=event.reason or "",
                ticket_id=event.ticket_id,
            )
        )
    return rows


def summarise(*, db: Session, import_id: int | None = None) -> BacklogSummary:
    backlog = db.get(BacklogImport, import_id) if import_id is not None else latest_import(db=db)
    if backlog is None:
        raise BacklogNotFound(f"no backlog import {import_id}" if import_id is not None else "no backlog import yet")
    mine = Ticket.backlog_id == backlog.id
    by_status = {status.value: count for status, count in db.execute(select(Ticket.status, func.count()).where(mine).group_by(Ticket.status)).tuples()}
    category = func.coalesce(Ticket.category, "untriaged")
    by_category = dict(db.execute(select(category, func.count()).where(mine).group_by(category)).all())
    runs, tokens_in, tokens_out, cost = db.execute(
        select(
            func.count(CrewRun.id),
            func.coalesce(func.sum(CrewRun.tokens_in), 0),
            func.coalesce(func.sum(CrewRun.tokens_out), 0),
            func.coalesce(func.sum(CrewRun.cost_usd), 0.0),
        )
        .join(Ticket, CrewRun.ticket_id == Ticket.id)
        .where(mine)
    ).one()
    latencies = [
        latency
        for latency in db.execute(
            select(CrewRun.latency_s)
            .join(Ticket, CrewRun.ticket_id == Ticket.id)
            .where(mine, CrewRun.status == RunStatus.completed, CrewRun.latency_s.is_not(None))
        ).scalars()
        if latency is not None  # excluded by the query already; narrows the type
    ]
    return BacklogSummary(
        import_id=backlog.id,
        path=backlog.path,
        format=backlog.format,
        status=backlog.status,
        started_at=backlog.started_at,
        finished_at=backlog.finished_at,
        rows_done=backlog.rows_done,
        rows_ok=backlog.rows_ok,
        rows_bad=backlog.rows_bad,
        rows_duplicate=backlog.rows_duplicate,
        rows_enqueued=backlog.rows_enqueued,
        by_status=by_status,
        by_category=by_category,
        runs=runs,
        tokens_in=int(tokens_in),
        tokens_out=int(tokens_out),
        cost_usd=float(cost),
        latencies=latencies,
        bad_rows=bad_rows(db=db, import_id=backlog.id),
    )


# --- HTML ----------------------------------------------------------------------------------------------------------


def _bar_chart(title: str, counts: dict[str, int], colour: str) -> str:
    """Horizontal bars, one per label, largest first."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    top = max((v for _, v in items), default=0) or 1
    height = 30 + 22 * max(1, len(items))
    bars = []
    for i, (label, value) in enumerate(items):
        y = 24 + i * 22
        width = 520 * value / top
        bars.append(
            f'<text x="150" y="{y + 14}" text-anchor="end" font-size="12">{html.escape(str(label))}</text>'
            f'<rect x="158" y="{y}" width="{width:.1f}" height="16" fill="{colour}"><title>{html.escape(str(label))}: {value}</title></rect>'
            f'<text x="{164 + width:.1f}" y="{y + 13}" font-size="11">{value:,}</text>'
        )
    if not items:
        bars.append('<text x="158" y="38" font-size="12">no tickets</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height}" role="img" aria-label="{html.escape(title)}">'
        f'<text x="10" y="14" font-size="13" font-weight="bold">{html.escape(title)}</text>{"".join(bars)}</svg>'
    )


def _histogram(title: str, values: Sequence[float], bins: int = 12) -> str:
    if not values:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="60"><text x="10" y="14" font-size="13" font-weight="bold">'
            f'{html.escape(title)}</text><text x="10" y="40" font-size="12">no completed crew runs yet</text></svg>'
        )
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int((value - low) / span * bins))] += 1
    top, width = max(counts), 680 / bins
    bars = []
    for i, n in enumerate(counts):
        h = 160 * n / top
        start, end = low + span * i / bins, low + span * (i + 1) / bins
        bars.append(
            f'<rect x="{50 + i * width:.1f}" y="{200 - h:.1f}" width="{width - 2:.1f}" height="{h:.1f}" fill="#1565c0">'
            f"<title>{start:.2f}-{end:.2f} s: {n} runs</title></rect>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="240" role="img" aria-label="{html.escape(title)}">'
        f'<text x="10" y="14" font-size="13" font-weight="bold">{html.escape(title)}</text>{"".join(bars)}'
        f'<line x1="50" y1="200" x2="730" y2="200" stroke="#333"/><text x="50" y="218" font-size="11">{low:.2f} s</text>'
        f'<text x="730" y="218" font-size="11" text-anchor="end">{high:.2f} s</text>'
        f'<text x="10" y="40" font-size="11">{top} runs</text></svg>'
    )


def write_html(summary: BacklogSummary, path: Path) -> Path:
    """The facts table, charts of the category mix, outcomes and run latency, and every bad or duplicate row."""
    facts = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary.facts())
    rows = "".join(
        f"<tr><td>{r.line}</td><td>{'bad' if r.kind == 'bad_row' else 'duplicate'}</td><td>{html.escape(r.external_id)}</td>"
        f"<td>{html.escape(r.reason)}</td><td>{r.ticket_id or ''}</td></tr>"
        for r in summary.bad_rows
    )
    page = (
        f"<!doctype html><meta charset='utf-8'><title>crewdesk backlog import #{summary.import_id}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}svg{display:block;margin:1em 0}</style>"
        f"<h1>Backlog import #{summary.import_id}</h1><table id='facts'>{facts}</table>"
        f"<h2>Charts</h2>{_bar_chart('Category mix (tickets)', summary.by_category, '#6a1b9a')}"
        f"{_bar_chart('Outcome (tickets by status)', summary.by_status, '#2e7d32')}"
        f"{_histogram('Crew run latency (seconds)', summary.latencies)}"
        f"<h2>Bad and duplicate rows ({len(summary.bad_rows):,})</h2>"
        f"<table id='bad-rows'><tr><th>line</th><th>kind</th><th>id</th><th>reason</th><th>existing ticket</th></tr>{rows}</table>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
