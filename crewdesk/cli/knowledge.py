"""What crewdesk knows: `crewdesk kb` (the knowledge base the agents search) and `crewdesk memory` (what it remembers
about customers, and forgetting it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crewdesk.cli.common import console, load_config, migrate, sessions
from crewdesk.db import transaction
from crewdesk.errors import CrewdeskError
from crewdesk.memory.base import MemoryBackend
from crewdesk.memory.schemas import KBFilters
from crewdesk.memory.service import DEMO_KB, customer_key, every_backend, forget, ingest, open_backend, purge
from crewdesk.settings import Settings
from crewdesk.tickets.erasure import erase_customer, remove_files

kb_app = typer.Typer(help="The knowledge base agents search with the kb_search tool.", no_args_is_help=True)
memory_app = typer.Typer(help="What crewdesk remembers about customers (summaries of their earlier tickets).", no_args_is_help=True)


def _memory_backend(settings: Settings) -> MemoryBackend:
    backend = open_backend(settings=settings)
    if backend is None:
        raise CrewdeskError("memory is off (CREWDESK_MEMORY_BACKEND=off)")
    return backend


@kb_app.command("add")
def kb_add(
    paths: Annotated[list[Path] | None, typer.Argument(help="Markdown, HTML or text files, ABCD guidelines.json / kb.json, or directories of them.")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Also the demo KB: tau2 retail policy.md and the ABCD guidelines.")] = False,
) -> None:
    """Ingest documents; re-ingesting an unchanged file changes nothing, a changed one replaces its old chunks."""
    settings = load_config(log_json=False, log_level="WARNING")
    targets = [*(paths or []), *(DEMO_KB if demo else ())]
    if not targets:
        raise typer.BadParameter("give a PATH or --demo")
    backend = _memory_backend(settings)
    with console.status(f"embedding with {backend.embedder.name}..."):
        reports = ingest(backend=backend, paths=targets, chunk_chars=settings.kb_chunk_chars, overlap=settings.kb_chunk_overlap)
        if hasattr(backend, "optimize"):
            backend.optimize()
    for report in reports:
        console.print(f"{report.source}: added {report.added}, removed {report.removed}, unchanged {report.unchanged}", highlight=False)
    console.print(f"knowledge base: {backend.count('kb')} chunks in {backend.kind} ({backend.embedder.version})")


@kb_app.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(help="What to look up.")],
    k: Annotated[int, typer.Option("--k", "-k", help="Passages to show.")] = 5,
    source: Annotated[str | None, typer.Option(help="Only this source (its absolute path).")] = None,
) -> None:
    """Hybrid (keyword + vector) search, as the kb_search tool does it."""
    settings = load_config(log_json=False, log_level="WARNING")
    hits = _memory_backend(settings).search_kb(query, k=k, filters=KBFilters(source=source))
    table = Table(title=f"kb: {query}")
    for column in ("#", "score", "source > section", "text"):
        table.add_column(column, overflow="fold")
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), f"{hit.score:.3f}", f"{Path(hit.chunk.source).name} > {hit.chunk.heading}", " ".join(hit.chunk.text.split())[:300])
    console.print(table)


@kb_app.command("reindex")
def kb_reindex() -> None:
    """Re-embed everything stored with another embedding model or dimension (after changing CREWDESK_EMBEDDING_*)."""
    settings = load_config(log_json=False, log_level="WARNING")
    backend = _memory_backend(settings)
    with console.status(f"re-embedding with {backend.embedder.version}..."):
        moved = backend.reindex()
    console.print(f"re-embedded {moved} rows with {backend.embedder.version}")


@memory_app.command("forget")
def memory_forget(
    customer: Annotated[str, typer.Option("--customer", help="The customer id tickets carry, e.g. their e-mail address.")],
    keep_tickets: Annotated[bool, typer.Option("--keep-tickets", help="Erase only what memory holds, not the customer's tickets in the database.")] = False,
) -> None:
    """Right to erasure: delete everything remembered about this customer from every configured backend, and erase
    their ended tickets in the database (what they wrote, what we wrote them, attachments, PII tokens). Exit code 1
    while some of their tickets are still being worked on: run it again once they end."""
    settings = load_config(log_json=False, log_level="WARNING")
    secret = settings.memory_key_secret.get_secret_value()
    counts = forget(backends=every_backend(settings=settings), customer=customer, secret=secret)
    done = ", ".join(f"{n} in {backend}" for backend, n in counts.items()) or "no memory backend configured"
    console.print(f"forgotten: {done}")
    if keep_tickets:
        return
    migrate(settings)
    with transaction(sessions(settings)) as db:
        erased = erase_customer(
            db=db, customer=customer, customer_key=customer_key(customer=customer, secret=secret), attachments_dir=settings.home / "attachments"
        )
    console.print(remove_files(erased).summary(), highlight=False)
    if erased.still_open:
        raise typer.Exit(1)


@memory_app.command("purge")
def memory_purge(days: Annotated[int | None, typer.Option(help="Keep this many days (default CREWDESK_MEMORY_RETENTION_DAYS).")] = None) -> None:
    """Retention: erase customer summaries older than the retention period from every configured backend."""
    settings = load_config(log_json=False, log_level="WARNING")
    retention = settings.memory_retention_days if days is None else days
    counts = purge(backends=every_backend(settings=settings), retention_days=retention)
    console.print(f"purged (older than {retention} days): " + (", ".join(f"{n} in {b}" for b, n in counts.items()) or "no memory backend configured"))
