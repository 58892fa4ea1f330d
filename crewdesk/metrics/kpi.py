"""Support KPIs for `crewdesk kpi` and the console's KPI page: by channel (ticket source), category, language (the one
the router detected; "unknown" before routing) and day (of ticket creation, UTC).

Definitions (the tickets counted are those created in [since, until) that are *finished*: in a final status —
resolved, escalated or failed — and handled by crewdesk, i.e. with a crew run or a status row in the audit trail;
input rejected at intake, stored as failed with no run, is not a handled ticket):

* automated-resolution rate: resolved with no person deciding anything on it (no approval approved or rejected, no
  reply written by a person in the console), over finished. A ticket a person closed in the console counts as what
  crewdesk left it: escalated or failed, with that reason (its ``closed`` status row keeps both);
* first-contact resolution: resolved with exactly one outbound reply, one inbound message (the customer did not
  write again) and no ``reopened`` status row, over finished;
* escalation rate: escalated over finished;
* handle time: from the ticket's created_at to its final status change (the newest ``status`` row of its audit
  trail, which the pipeline writes with every status it sets; tickets.updated_at when there is none); median and
  p95 by linear interpolation;
* cost per resolved ticket: the cost of every run of the group's finished tickets (escalated and failed ones too:
  they were paid for) over the number resolved;
* waiting on the customer: tickets whose run ended with a question to the customer and that have no answer yet (they
  count among the finished: no run acts on them until the customer writes);
* questions per resolution: the questions put to the customers of resolved tickets, over the number resolved (the
  replies a resolution needed of them);
* time waiting: per ticket that asked, the time from each question to its answer (to now while unanswered), summed;
  median over those tickets. Handle time includes it;
* escalation reasons: the escalated tickets counted by their status_reason's gist (``reason_gist``: the text before
  its first " (" or ": ", so the same rule with different details counts once).

One query reads one row per finished ticket of the window (correlated counts over indexed ticket_id columns);
grouping is done here, so it runs the same on PostgreSQL and SQLite.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import DateTime, Integer, String, and_, column, exists, func, or_, select, table
from sqlalchemy.orm import Session

from crewdesk.approvals.models import Approval
from crewdesk.db import JSONType
from crewdesk.runs.models import CrewRun
from crewdesk.tickets.models import TERMINAL, Message, Question, Ticket, TicketStatus

# Typed as audit.models.AuditEvent's columns: an untyped column makes max(created_at) an untyped expression, which
# SQLite (no datetime type of its own) hands back as the stored text; typed, SQLAlchemy parses it on every database.
AUDIT = table(
    "audit_events",
    column("ticket_id", Integer),
    column("kind", String),
    column("name", String),
    column("created_at", DateTime(timezone=True)),
    column("arguments", JSONType),
)
FINAL = tuple(sorted(s.value for s in TERMINAL))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class TicketFacts:
    ticket_id: int
    channel: str
    category: str
    status: str
    day: date
    handle_seconds: float
    automated: bool
    first_contact: bool
    cost_usd: float
    questions: int = 0  # put to the customer on this ticket
    waited_seconds: float = 0.0  # from each question to its answer (to now while open), summed
    language: str = "unknown"  # the router's, from the ticket's triage
    reason: str = ""  # why it is in its status (tickets.status_reason)


@dataclass
class Group:
    key: str
    finished: int = 0
    resolved: int = 0
    automated: int = 0
    first_contact: int = 0
    escalated: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    handle_seconds: list[float] = field(default_factory=list)
    waiting: int = 0
    questions_resolved: int = 0  # questions put to the customers of resolved tickets
    waited_seconds: list[float] = field(default_factory=list)  # per ticket that asked

    def add(self, t: TicketFacts) -> None:
        self.waiting += t.status == TicketStatus.waiting_on_customer
        self.questions_resolved += t.questions if t.status == TicketStatus.resolved else 0
        if t.questions:
            self.waited_seconds.append(t.waited_seconds)
        self.finished += 1
        self.resolved += t.status == TicketStatus.resolved
        self.automated += t.automated
        self.first_contact += t.first_contact
        self.escalated += t.status == TicketStatus.escalated
        self.failed += t.status == TicketStatus.failed
        self.cost_usd += t.cost_usd
        self.handle_seconds.append(t.handle_seconds)

    def _rate(self, n: int) -> float | None:
        return n / self.finished if self.finished else None

    @property
    def automated_rate(self) -> float | None:
        return self._rate(self.automated)

    @property
    def first_contact_rate(self) -> float | None:
        return self._rate(self.first_contact)

    @property
    def escalation_rate(self) -> float | None:
        return self._rate(self.escalated)

    @property
    def handle_p50(self) -> float | None:
        return percentile(self.handle_seconds, 50)

    @property
    def handle_p95(self) -> float | None:
        return percentile(self.handle_seconds, 95)

    @property
    def questions_per_resolution(self) -> float | None:
        return self.questions_resolved / self.resolved if self.resolved else None

    @property
    def waited_p50(self) -> float | None:
        return percentile(self.waited_seconds, 50)

    @property
    def cost_per_resolved(self) -> float | None:
        return self.cost_usd / self.resolved if self.resolved else None


@dataclass
class KpiReport:
    since: datetime
    until: datetime
    total: Group
    by_channel: list[Group]
    by_category: list[Group]
    by_day: list[Group]
    by_language: list[Group] = field(default_factory=list)
    escalation_reasons: list[tuple[str, int]] = field(default_factory=list)  # (gist, escalated tickets), most first

    def sections(self) -> list[tuple[str, list[Group]]]:
        return [("all", [self.total]), ("channel", self.by_channel), ("category", self.by_category), ("language", self.by_language), ("day", self.by_day)]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def ticket_facts(*, db: Session, since: datetime, until: datetime) -> list[TicketFacts]:
    t = Ticket
    inbound = select(func.count()).where(Message.ticket_id == t.id, Message.direction == "inbound").scalar_subquery()
    outbound = select(func.count()).where(Message.ticket_id == t.id, Message.direction == "outbound").scalar_subquery()
    cost = select(func.coalesce(func.sum(CrewRun.cost_usd), 0.0)).where(CrewRun.ticket_id == t.id).scalar_subquery()
    last_status = select(func.max(AUDIT.c.created_at)).where(AUDIT.c.ticket_id == t.id, AUDIT.c.kind == "status").scalar_subquery()
    reopened = exists().where(AUDIT.c.ticket_id == t.id, AUDIT.c.kind == "status", AUDIT.c.name == "reopened")
    by_hand = or_(and_(AUDIT.c.kind == "person", AUDIT.c.name == "replied"), and_(AUDIT.c.kind == "status", AUDIT.c.name == "closed"))
    human = exists().where(Approval.ticket_id == t.id, Approval.status.in_(("approved", "rejected"))) | exists().where(AUDIT.c.ticket_id == t.id, by_hand)
    handled = exists().where(CrewRun.ticket_id == t.id) | exists().where(AUDIT.c.ticket_id == t.id, AUDIT.c.kind == "status")
    stmt = (
        select(
            t.id, t.source, t.category, t.status, t.created_at, t.updated_at, last_status, inbound, outbound, cost, reopened, human, t.triage, t.status_reason
        )
        .where(and_(t.created_at >= since, t.created_at < until, t.status.in_(FINAL), handled))
        .order_by(t.id)
    )
    asked: dict[int, tuple[int, float]] = {}
    now = datetime.now(UTC)
    for qid, opened, answered in db.execute(
        select(Question.ticket_id, Question.created_at, Question.answered_at)
        .join(Ticket, Ticket.id == Question.ticket_id)
        .where(and_(Ticket.created_at >= since, Ticket.created_at < until))
    ):
        n, waited = asked.get(qid, (0, 0.0))
        asked[qid] = (n + 1, waited + max(0.0, (_aware(answered or now) - _aware(opened)).total_seconds()))
    closed = _closed_by_a_person(db=db, since=since, until=until)
    facts = []
    for tid, source, category, status, created, updated, last, n_in, n_out, spent, was_reopened, by_person, triage, why in db.execute(stmt):
        created = _aware(created)
        ended = _aware(last or updated or created)
        if status == "resolved" and tid in closed and closed[tid][0] == last:  # the person's close is its last status
            _at, status, why = closed[tid]  # counted as crewdesk left it, not as the person's resolution
        resolved = status == "resolved"
        facts.append(
            TicketFacts(
                ticket_id=tid,
                channel=source,
                category=category or "none",
                status=status,
                day=created.date(),
                handle_seconds=max(0.0, (ended - created).total_seconds()),
                automated=resolved and not by_person,
                first_contact=resolved and n_out == 1 and n_in == 1 and not was_reopened,
                cost_usd=float(spent or 0.0),
                questions=asked.get(tid, (0, 0.0))[0],
                waited_seconds=asked.get(tid, (0, 0.0))[1],
                language=str(triage.get("language") or "unknown") if isinstance(triage, dict) else "unknown",
                reason=why or "",
            )
        )
    return facts


def _closed_by_a_person(*, db: Session, since: datetime, until: datetime) -> dict[int, tuple[datetime, str, str]]:
    """Tickets of the window a person closed in the console (crewdesk/tickets/handling.py): ticket id -> (when, the
    status it was closed from, crewdesk's reason for it), from each ticket's latest ``closed`` status row."""
    rows = db.execute(
        select(AUDIT.c.ticket_id, AUDIT.c.created_at, AUDIT.c.arguments)
        .join(Ticket, Ticket.id == AUDIT.c.ticket_id)
        .where(and_(Ticket.created_at >= since, Ticket.created_at < until, AUDIT.c.kind == "status", AUDIT.c.name == "closed"))
        .order_by(AUDIT.c.created_at)
    )
    found: dict[int, tuple[datetime, str, str]] = {}
    for ticket_id, at, arguments in rows:
        if isinstance(arguments, dict) and arguments.get("from") in FINAL:
            found[ticket_id] = (at, str(arguments["from"]), str(arguments.get("was") or ""))
    return found


def _grouped(facts: Iterable[TicketFacts], key) -> list[Group]:
    groups: dict[str, Group] = {}
    for fact in facts:
        name = str(key(fact))
        groups.setdefault(name, Group(name)).add(fact)
    return [groups[k] for k in sorted(groups)]


def reason_gist(reason: str) -> str:
    """What an escalation reason says without its details: the text before its first " (" or ": ", at most 80
    characters; "no reason recorded" when empty."""
    gist = reason.strip()
    for cut in (" (", ": "):
        gist = gist.split(cut, 1)[0]
    gist = gist.strip()
    return (gist[:79] + "…" if len(gist) > 80 else gist) or "no reason recorded"


def report(*, db: Session, since: datetime, until: datetime | None = None) -> KpiReport:
    until = until or datetime.now(UTC)
    facts = ticket_facts(db=db, since=since, until=until)
    total = Group("all")
    for fact in facts:
        total.add(fact)
    return KpiReport(
        since=since,
        until=until,
        total=total,
        by_channel=_grouped(facts, lambda f: f.channel),
        by_category=_grouped(facts, lambda f: f.category),
        by_day=_grouped(facts, lambda f: f.day.isoformat()),
        by_language=_grouped(facts, lambda f: f.language),
        escalation_reasons=sorted(Counter(reason_gist(f.reason) for f in facts if f.status == TicketStatus.escalated).items(), key=lambda kv: (-kv[1], kv[0])),
    )


def window(*, since: date | datetime | None, days: int | None, now: datetime | None = None) -> datetime:
    """--since (a date or time, UTC) wins; else the last `days` days (default 30)."""
    if since is not None:
        if not isinstance(since, datetime):
            since = datetime(since.year, since.month, since.day)
        return _aware(since)
    now = now or datetime.now(UTC)
    return now - timedelta(days=30 if days is None else days)


# --- formatting -------------------------------------------------------------------------------------------------


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def money(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


COLUMNS = (
    "finished",
    "resolved",
    "automated resolution",
    "first-contact resolution",
    "escalation",
    "waiting on customer",
    "questions / resolved",
    "time waiting p50",
    "handle p50",
    "handle p95",
    "cost / resolved",
)


def row(group: Group) -> list[str]:
    return [
        f"{group.finished:,}",
        f"{group.resolved:,}",
        pct(group.automated_rate),
        pct(group.first_contact_rate),
        pct(group.escalation_rate),
        f"{group.waiting:,}",
        "-" if group.questions_per_resolution is None else f"{group.questions_per_resolution:.2f}",
        seconds(group.waited_p50),
        seconds(group.handle_p50),
        seconds(group.handle_p95),
        money(group.cost_per_resolved),
    ]


def rate_chart(
    groups: Sequence[Group],
    title: str = "Automated resolution and escalation rate per day",
    note: str = "share of finished tickets created that day (UTC); n = finished tickets",
) -> str:
    """A standalone SVG: per group (day) two bars, automated-resolution rate and escalation rate, 0-100 %."""
    series = (("automated resolution", "#2e7d32", lambda g: g.automated_rate), ("escalation", "#c62828", lambda g: g.escalation_rate))
    left, top, plot_h, bar_w, gap = 56, 62, 220, 18, 22
    slot = len(series) * bar_w + gap
    width = max(480, left + 20 + slot * max(1, len(groups)))
    height = top + plot_h + 58
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{html.escape(title)}" font-family="sans-serif">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, (label, colour, _) in enumerate(series):  # legend
        x = 10 + i * 200
        parts.append(f'<rect x="{x}" y="30" width="12" height="12" fill="{colour}"/><text x="{x + 17}" y="40" font-size="12">{label}</text>')
    for tick in range(0, 101, 25):  # y axis and grid
        y = top + plot_h - plot_h * tick / 100
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#e0e0e0"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{tick}%</text>'
        )
    for i, group in enumerate(groups):
        x0 = left + 10 + i * slot
        for j, (label, colour, value) in enumerate(series):
            rate = value(group) or 0.0
            h = plot_h * rate
            x = x0 + j * bar_w
            y = top + plot_h - h
            parts.append(
                f'<rect x="{x}" y="{y:.1f}" width="{bar_w - 2}" height="{h:.1f}" fill="{colour}">'
                f"<title>{html.escape(group.key)} {label}: {pct(value(group))} of {group.finished}</title></rect>"
                f'<text x="{x + (bar_w - 2) / 2:.1f}" y="{y - 3:.1f}" font-size="9" text-anchor="middle">{round(100 * rate)}</text>'
            )
        label = group.key[5:] if len(group.key) == 10 and group.key[4] == "-" else group.key  # a day: MM-DD
        parts.append(
            f'<text x="{x0 + len(series) * bar_w / 2:.1f}" y="{top + plot_h + 16}" font-size="11" text-anchor="middle">{html.escape(label)}</text>'
            f'<text x="{x0 + len(series) * bar_w / 2:.1f}" y="{top + plot_h + 30}" font-size="9" fill="#666" text-anchor="middle">n={group.finished}</text>'
        )
    if not groups:
        parts.append(f'<text x="{left + 10}" y="{top + plot_h / 2}" font-size="12">no finished tickets in this window</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#333"/>')
    parts.append(f'<text x="10" y="{height - 8}" font-size="10" fill="#666">{html.escape(note)}</text></svg>')
    return "".join(parts)


def handle_chart(groups: Sequence[Group], title: str) -> str:
    """Horizontal bars: median handle time per group, with the p95 as a thin mark."""
    items = [g for g in groups if g.handle_seconds]
    top = max((g.handle_p95 or 0.0 for g in items), default=0.0) or 1.0
    height = 40 + 24 * max(1, len(items))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height}" viewBox="0 0 760 {height}" role="img" aria-label="{html.escape(title)}" '
        'font-family="sans-serif">',
        f'<text x="10" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, group in enumerate(items):
        y = 30 + i * 24
        w50, w95 = 400 * (group.handle_p50 or 0.0) / top, 400 * (group.handle_p95 or 0.0) / top
        parts.append(
            f'<text x="150" y="{y + 13}" font-size="12" text-anchor="end">{html.escape(group.key)}</text>'
            f'<rect x="158" y="{y}" width="{w50:.1f}" height="16" fill="#1565c0"><title>median {seconds(group.handle_p50)}</title></rect>'
            f'<rect x="{158 + w95 - 1:.1f}" y="{y - 2}" width="3" height="20" fill="#0d2f5e"><title>p95 {seconds(group.handle_p95)}</title></rect>'
            f'<text x="{166 + max(w50, w95):.1f}" y="{y + 13}" font-size="11">{seconds(group.handle_p50)} / p95 {seconds(group.handle_p95)}</text>'
        )
    if not items:
        parts.append('<text x="158" y="44" font-size="12">no finished tickets</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(items: Sequence[tuple[str, float, str]], title: str, colour: str = "#1565c0", empty: str = "none in this window") -> str:
    """Horizontal bars, one per (label, value, value as shown), in the order given, scaled to the largest value."""
    top = max((v for _, v, _ in items), default=0.0) or 1.0
    height = 40 + 24 * max(1, len(items))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height}" viewBox="0 0 760 {height}" role="img" aria-label="{html.escape(title)}" '
        'font-family="sans-serif">',
        f'<text x="10" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, (label, value, text) in enumerate(items):
        y = 30 + i * 24
        width = 400 * value / top
        short = label if len(label) <= 24 else label[:23] + "…"
        parts.append(
            f'<text x="150" y="{y + 13}" font-size="12" text-anchor="end">{html.escape(short)}</text>'
            f'<rect x="158" y="{y}" width="{width:.1f}" height="16" fill="{colour}"><title>{html.escape(label)}: {html.escape(text)}</title></rect>'
            f'<text x="{164 + width:.1f}" y="{y + 13}" font-size="11">{html.escape(text)}</text>'
        )
    if not items:
        parts.append(f'<text x="158" y="44" font-size="12">{html.escape(empty)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def write_svg(report: KpiReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rate_chart(report.by_day) + "\n", encoding="utf-8")
    return path


def write_html(report: KpiReport, path: Path) -> Path:
    """One self-contained page: the tables and inline SVG charts (no scripts, no fonts or styles from elsewhere)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    tables = []
    for name, groups in report.sections():
        body = "".join(f"<tr><th>{html.escape(g.key)}</th>" + "".join(f"<td>{html.escape(v)}</td>" for v in row(g)) + "</tr>" for g in groups)
        tables.append(
            f"<h2>By {name}</h2><table id='by-{name}'><tr><th>{name}</th>{head}</tr>{body}</table>"
            if name != "all"
            else f"<table id='all'><tr><th></th>{head}</tr>{body}</table>"
        )
    page = (
        "<!doctype html><html lang='en'><meta charset='utf-8'><title>crewdesk KPIs</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th:first-child{text-align:left}svg{display:block;margin:1em 0}</style>"
        f"<h1>crewdesk KPIs</h1><p>Tickets created {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC that are finished "
        "(resolved, escalated or failed after being handled). Handle time: created to final status change.</p>"
        f"{tables[0]}<h2>Charts</h2>{rate_chart(report.by_day)}"
        f"{rate_chart(report.by_channel, 'Automated resolution and escalation rate per channel', 'share of finished tickets of that channel; n = finished tickets')}"
        f"{handle_chart(report.by_category, 'Handle time per category (median, p95 mark)')}" + "".join(tables[1:]) + "</html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
