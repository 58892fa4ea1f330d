"""Tickets at the top level: `crewdesk submit`, `run`, `show` and `kpi`."""

from __future__ import annotations

import sys
from contextlib import ExitStack, nullcontext
from datetime import datetime
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.cli.common import console, err, load_config, migrate, sessions, tokens
from crewdesk.cli.interrupts import stoppable
from crewdesk.intake.admit import Stored, admit
from crewdesk.intake.files import iter_file
from crewdesk.intake.service import accept_rows
from crewdesk.llm.local import local_model
from crewdesk.metrics import kpi as kpis
from crewdesk.settings import LLMProvider
from crewdesk.tickets import views as ticket_views
from crewdesk.tickets.schemas import TicketOutcome

app = typer.Typer()


@app.command()
def submit(path: Annotated[str, typer.Argument(help="A .jsonl or .json file of tickets, or - for standard input.")]) -> None:
    """Store tickets and put them on the Celery queue (duplicates are stored and queued once)."""
    from workers.app import enqueuer

    settings = load_config()
    factory = sessions(settings)
    report = accept_rows(session_factory=factory, rows=iter_file(path, stream=sys.stdin))
    admit([Stored(ticket_id, needs_run=True) for ticket_id in report.to_enqueue], enqueuer=enqueuer(settings, factory))
    for _line, reason, ticket_id in report.rejected:
        err.print(f"rejected {reason} (recorded as failed ticket {ticket_id})", highlight=False)
    console.print(f"queued {report.accepted}, duplicates {len(report.duplicates)}, rejected {len(report.rejected)}")
    if report.rejected:
        raise typer.Exit(1)


@app.command()
def kpi(
    since: Annotated[str | None, typer.Option(help="Tickets created from this date or time (ISO, UTC), e.g. 2025-06-01.")] = None,
    days: Annotated[int | None, typer.Option(min=1, help="Tickets created in the last N days (default 30; --since wins).")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML page with charts here.")] = None,
    svg: Annotated[Path | None, typer.Option("--svg", help="Also write the per-day rate chart as an SVG file here.")] = None,
) -> None:
    """Support KPIs by channel, category and day: automated-resolution rate, first-contact resolution, escalation rate,
    median and p95 handle time (created to final status change), cost per resolved ticket."""
    try:
        start = datetime.fromisoformat(since) if since else None
    except ValueError:
        err.print(f"error: --since {since!r} is not an ISO date or time", highlight=False)
        raise typer.Exit(2) from None
    settings = load_config(log_json=False, log_level="WARNING")
    with sessions(settings)() as db:
        report = kpis.report(db=db, since=kpis.window(since=start, days=days))
    console.print(f"tickets created {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC, finished: {report.total.finished:,}", highlight=False)
    for name, groups in report.sections():
        table = Table(title=None if name == "all" else f"by {name}")
        table.add_column(name if name != "all" else "")
        for column in kpis.COLUMNS:
            table.add_column(column, justify="right")
        for group in groups:
            table.add_row(group.key, *kpis.row(group))
        console.print(table)
    if html is not None:
        console.print(f"html report: {kpis.write_html(report, html)}", highlight=False)
    if svg is not None:
        console.print(f"svg chart: {kpis.write_svg(report, svg)}", highlight=False)


@app.command()
def run(
    path: Annotated[str, typer.Argument(help="A .jsonl or .json file of tickets.")],
    limit: Annotated[int, typer.Option(help="Process at most this many tickets (0 = all).")] = 0,
    provider: Annotated[str | None, typer.Option(help="local | openai | anthropic | scripted (default CREWDESK_LLM_PROVIDER).")] = None,
) -> None:
    """Process a batch in this process, with no broker: a progress bar, then a summary table. Ctrl-C (or SIGTERM) stops
    it within seconds and leaves the ticket in flight to the same command run again."""
    with stoppable() as work:
        settings = load_config(llm_provider=provider, log_json=False, log_level="WARNING")
        from crewdesk.llm.factory import LLMFactory  # after load_config: it keeps CrewAI's telemetry off before CrewAI loads
        from crews.pipeline import Pipeline

        migrate(settings)
        factory = work.guard(sessions(settings))
        rows = iter_file(path, stream=sys.stdin)
        report = accept_rows(session_factory=factory, rows=islice(rows, limit) if limit else rows)
        for _line, reason, ticket_id in report.rejected:
            err.print(f"rejected {reason} (recorded as failed ticket {ticket_id})", highlight=False)
        ticket_ids = report.to_enqueue + report.duplicates
        starting = (
            console.status("starting the local model (llama.cpp, Qwen2.5-Coder-1.5B q4_k_m)...")
            if settings.llm_provider is LLMProvider.local
            else nullcontext()
        )
        outcomes = []
        with ExitStack() as serving:
            with starting:
                serving.enter_context(local_model(settings))
            pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings))
            with Progress(
                TextColumn("[bold]tickets"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"), console=console
            ) as progress:
                bar = progress.add_task("", total=len(ticket_ids))
                for ticket_id in ticket_ids:
                    progress.update(bar, description=f"#{ticket_id}")
                    outcomes.append(work.run(partial(pipeline.process, ticket_id)))  # a signal leaves the wait, not the call
                    progress.advance(bar)
        _print_batch(factory, outcomes, rejected=len(report.rejected))


def _print_batch(factory: sessionmaker[Session], outcomes: list[TicketOutcome], *, rejected: int) -> None:
    """Each reply a customer receives (to be read as a support lead would), a table of the tickets, one summary line."""
    with factory() as db:
        report = ticket_views.batch_report(db=db, outcomes=outcomes)
    table = Table(title="crewdesk run")
    for column in ("ticket", "external id", "category", "priority", "outcome", "seconds", "tokens in (cached)/out", "done in the store", "note"):
        table.add_column(column, overflow="fold")
    for done in report.tickets:
        ticket = done.ticket
        table.add_row(
            str(ticket.id),
            ticket.external_id,
            ticket.category or "-",
            ticket.priority or "-",
            ticket.status,
            f"{done.seconds:.1f}",
            tokens(done.run),
            ", ".join(done.done) or "-",
            done.note[:60],
        )
    for done in report.tickets:
        if done.reply is not None:
            console.rule(f"reply to {done.ticket.external_id}")
            console.print(done.reply, highlight=False)
    console.print(table)
    mix = ", ".join(f"{status} {n}" for status, n in report.by_status.items())
    median = f", median {report.median_seconds:.1f}s per ticket" if report.median_seconds is not None else ""
    rejected_note = f"; {rejected} rejected at intake" if rejected else ""
    console.print(f"{len(report.tickets)} tickets: {mix}{median}{rejected_note}")


@app.command()
def show(ticket: Annotated[str, typer.Argument(help="Ticket id, or SOURCE:EXTERNAL_ID.")]) -> None:
    """Print a ticket, its messages, its runs and its audit trail."""
    settings = load_config(log_json=False)
    with sessions(settings)() as db:
        shown = ticket_views.view(db=db, ref=ticket)
    row = shown.ticket
    console.print(
        f"[bold]ticket {row.id}[/] {row.source}:{row.external_id}  status={row.status}  category={row.category}  priority={row.priority}", highlight=False
    )
    console.print(f"customer: {row.customer}\nsubject: {row.subject}", highlight=False)
    if row.status_reason:
        console.print(f"reason: {row.status_reason}", highlight=False)
    if shown.waiting_on():
        console.print(f"waiting on the customer: {shown.waiting_on()}", highlight=False)
    if row.triage:
        console.print(f"triage: {row.triage}", highlight=False)
    for message in shown.messages:
        console.rule(f"{message.direction} · {message.author} · {message.created_at:%Y-%m-%d %H:%M:%S}")
        console.print(message.body, highlight=False)
    runs = Table(title="crew runs")
    for column in ("run", "status", "outcome", "process", "models", "llm calls", "tokens in (cached)/out", "cost $", "latency s", "error"):
        runs.add_column(column, overflow="fold")
    for run in shown.runs:
        runs.add_row(
            str(run.id),
            run.status,
            run.outcome or "-",
            run.process,
            ", ".join(run.models) or "-",
            str(run.llm_calls),
            tokens(run),
            f"{run.cost_usd:.5f}",
            f"{run.latency_s:.2f}" if run.latency_s is not None else "-",
            (run.error or "")[:80],
        )
    console.print(runs)
    trail = Table(title="audit trail")
    for column in ("#", "time", "run", "kind", "name", "actor", "ms", "error"):
        trail.add_column(column, overflow="fold")
    for event in shown.trail:
        trail.add_row(
            str(event.id),
            f"{event.created_at:%H:%M:%S.%f}"[:-3],
            str(event.run_id or "-"),
            event.kind,
            event.name,
            event.actor,
            f"{event.duration_ms:.0f}" if event.duration_ms is not None else "",
            (event.error or "")[:80],
        )
    console.print(trail)
