"""`crewdesk demo`: the demo system of record."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crewdesk.cli.common import console, load_config, migrate, sessions
from crewdesk.db import transaction
from crewdesk.store.service import DEFAULT_DB_JSON, load_store, read_store

app = typer.Typer(help="The demo system of record (tau2-bench retail store).", no_args_is_help=True)


@app.command("load")
def demo_load(
    path: Annotated[Path | None, typer.Argument(help="db.json (default: the tau2-bench retail store shipped in crewdesk/store/tau2/db.json).")] = None,
) -> None:
    """Load the store's users, orders and products into the database, replacing what is there (running it again
    resets the store to the file)."""
    settings = load_config(log_json=False)
    migrate(settings)
    data = read_store(path or DEFAULT_DB_JSON)
    with transaction(sessions(settings)) as db:
        counts = load_store(db=db, data=data)
    console.print(f"loaded {counts['users']} users, {counts['orders']} orders, {counts['products']} products")
