"""Running the service, at the top level: `crewdesk init`, `worker`, `api` and `status`."""

from __future__ import annotations

import time
from typing import Annotated

import redis
import typer
import uvicorn
from rich.table import Table

from crewdesk.cli.common import console, err, load_config, migrate, redact, require_schema
from crewdesk.llm import breaker
from crewdesk.llm.local import local_model
from crewdesk.metrics.worker import prepare_multiproc_dir, serve
from crewdesk.migrate import grant_app_role
from crewdesk.queues import Queue, queue_depths

app = typer.Typer()


@app.command()
def init(
    app_role: Annotated[
        str | None,
        typer.Option(help="PostgreSQL: then create this login role and grant it only what the API and workers do (default CREWDESK_APP_DB_ROLE)."),
    ] = None,
) -> None:
    """Create or upgrade the database schema (Alembic migrations), as the tables' owner; with an app role, grant it
    the application's privileges on every table (again after every upgrade, so new tables are covered)."""
    settings = load_config(app_db_role=app_role)
    migrate(settings)
    console.print(f"database ready: {redact(settings.database_url)}")
    if settings.app_db_role:
        tables = grant_app_role(settings.database_url, settings.app_db_role, settings.app_db_password.get_secret_value())
        console.print(f"app role {settings.app_db_role}: granted on {len(tables)} tables, owns none (audit tables append-only)")


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Worker processes (default CREWDESK_WORKER_CONCURRENCY).")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    pool: Annotated[str, typer.Option(help="Celery pool: prefork (default), solo, threads.")] = "prefork",
    metrics_port: Annotated[int | None, typer.Option(help="Serve the workers' Prometheus metrics (aggregated over the children) on this port.")] = None,
    metrics_host: Annotated[str, typer.Option(help="Interface for --metrics-port.")] = "127.0.0.1",
) -> None:
    """Run the Celery worker for the tickets queue (starts the local model server when that is the provider)."""
    settings = load_config(worker_concurrency=concurrency)
    require_schema(settings)  # its tasks read and write tickets: SQLite is upgraded, PostgreSQL must have had `crewdesk init`
    # Before anything imports prometheus_client: the children inherit multiprocess mode and write per-pid files.
    metrics_dir = prepare_multiproc_dir(settings)
    from workers.app import configure

    celery_app = configure(settings)
    if metrics_port is not None:
        serve(metrics_port, metrics_dir, host=metrics_host)  # a daemon thread reading files; no CrewAI state in the parent
    with local_model(settings):  # a subprocess: no CrewAI state is created in this parent
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


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Serve the HTTP API (submit tickets, read status and audit trail) and, when configured, the support console at /console."""
    from crewdesk.api import create_app
    from crewdesk.api.app import console_configured

    settings = load_config()
    require_schema(settings)
    if console_configured(settings):
        err.print(f"support console: http{'' if settings.console_dev else 's'}://{host}:{port}/console (crewdesk user add NAME --role lead)", highlight=False)
    else:
        err.print("support console off: set CREWDESK_CONSOLE_SECRET_KEY (or _FILE) to serve it under /console", highlight=False)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@app.command()
def status() -> None:
    """Each model endpoint's circuit breaker (closed, open, half-open) and the broker's queue depths."""
    settings = load_config(log_json=False, log_level="ERROR")
    shared = breaker.shared_store_url(settings)
    client = redis.Redis.from_url(settings.broker_url, socket_timeout=2.0, socket_connect_timeout=2.0) if shared else None
    reachable = True
    if client is not None:
        try:
            client.ping()
        except redis.RedisError as exc:
            reachable = False
            err.print(
                f"error: the broker's Redis at {redact(settings.broker_url)} is unreachable ({exc}); breaker states below are this process's only",
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
    for queue, waiting in queue_depths(client, [q.value for q in Queue]).items():
        queues.add_row(queue, str(waiting))
    queues.add_row("reserved by workers (incl. deferred, not yet due)", str(client.hlen("unacked")))
    console.print(queues)
