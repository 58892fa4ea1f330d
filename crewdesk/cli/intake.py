"""Intake besides `crewdesk submit`: `crewdesk email` (stored mail, the IMAP mailbox) and `crewdesk backlog` (batch
exports, and the report on one)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from crewdesk.cli.common import console, err, load_config, sessions
from crewdesk.errors import CrewdeskError, TransientError
from crewdesk.intake.admit import Stored, admit
from crewdesk.intake.backlog import BacklogInterrupted, BacklogProgress, import_backlog
from crewdesk.intake.backlog_report import bad_rows, summarise, write_html
from crewdesk.intake.email.poller import poll_mailbox, wait_for_mail
from crewdesk.intake.email.service import ingest_email
from crewdesk.intake.email.sources import iter_messages

email_app = typer.Typer(help="E-mail intake.", no_args_is_help=True)
backlog_app = typer.Typer(help="Batch backlogs: import a CSV, JSONL, Zendesk or Jira export, and report on it.", no_args_is_help=True)
BAD_ROWS_SHOWN = 20


@email_app.command("import")
def email_import(path: Annotated[Path, typer.Argument(help="An .eml file, a directory of them (recursive), an mbox or a Maildir.")]) -> None:
    """Turn stored mail into tickets and follow-ups, threaded like live mail; re-importing the same mail changes nothing."""
    from workers.app import enqueuer

    settings = load_config()
    factory = sessions(settings)
    counts: Counter[str] = Counter()
    to_enqueue: dict[int, None] = {}  # ordered and unique: a thread imported at once runs once, with all its messages
    for ref, raw in iter_messages(path):
        result = ingest_email(session_factory=factory, raw=raw, settings=settings, source_ref=ref)
        counts[result.status] += 1
        if result.status == "rejected":
            err.print(f"rejected {ref}: {result.reason} (recorded as failed ticket {result.ticket_id})", highlight=False)
        elif result.status == "needs_person":
            err.print(f"for a person {ref}: {result.reason} (escalated ticket {result.ticket_id})", highlight=False)
        if result.ticket_id is not None and (result.needs_run or result.status == "created"):
            to_enqueue[result.ticket_id] = None
    admit([Stored(ticket_id, needs_run=True) for ticket_id in to_enqueue], enqueuer=enqueuer(settings, factory))
    console.print(
        f"created {counts['created']}, follow-ups {counts['follow_up']}, duplicates {counts['duplicate']}, "
        f"ignored {counts['ignored']}, for a person {counts['needs_person']}, rejected {counts['rejected']}; queued {len(to_enqueue)}"
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
    from workers.app import enqueuer

    settings = load_config()
    if not settings.imap_host:
        raise CrewdeskError("no mailbox configured: set CREWDESK_IMAP_HOST, CREWDESK_IMAP_USER and CREWDESK_IMAP_PASSWORD")
    factory = sessions(settings)
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


@backlog_app.command("import")
def backlog_import(
    path: Annotated[Path, typer.Argument(help="The export file.")],
    fmt: Annotated[str, typer.Option("--format", help="auto | csv | jsonl | zendesk | jira-csv.")] = "auto",
    source: Annotated[str | None, typer.Option(help="Ticket source for de-duplication (default: file, or zendesk / jira for those exports).")] = None,
) -> None:
    """Store and queue a backlog in chunks under a rate limit; run it again to resume after Ctrl-C or a crash."""
    from workers.app import configure, ticket_sender

    settings = load_config(log_json=False, log_level="WARNING")
    factory = sessions(settings)
    clock, worked = time.monotonic(), [False]
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

        def progress(p: BacklogProgress) -> None:
            worked[0] = True  # never called for an import that was already finished
            speed = (p.rows_done - p.resumed_from) / max(1e-6, time.monotonic() - clock)
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
    seconds = time.monotonic() - clock
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
    settings = load_config(log_json=False, log_level="WARNING")
    with sessions(settings)() as db:
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
