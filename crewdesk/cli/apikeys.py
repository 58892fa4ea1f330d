"""`crewdesk apikey`: who may call the HTTP API. A key is printed once, at creation, and stored only as its hash."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from crewdesk.auth import service as keys
from crewdesk.cli.common import console, err, load_config, sessions
from crewdesk.db import transaction

app = typer.Typer(help="API keys: who may call the HTTP API, with which scopes.", no_args_is_help=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who holds the key (a person or a system); recorded as the actor of what it does.")],
    scopes: Annotated[str, typer.Option(help=f"Comma-separated, of: {', '.join(keys.SCOPES)}.")],
) -> None:
    """Create a key and print it once: it is stored only as its Argon2id hash and cannot be shown again."""
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    try:
        with transaction(sessions(load_config(log_json=False))) as db:
            row, key = keys.create(db=db, name=name, scopes=wanted)
            scoped = ", ".join(row.scopes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scopes") from exc
    err.print(f"API key for {name} ({scoped}); shown once, keep it secret:", highlight=False)  # stderr: stdout is the key alone
    print(key)


@app.command("list")
def listing() -> None:
    """The keys: name, scopes, created, revoked (never the key)."""
    with sessions(load_config(log_json=False))() as db:
        table = Table(title="API keys")
        for column in ("name", "prefix", "scopes", "created", "revoked"):
            table.add_column(column)
        for row in keys.listing(db=db):
            table.add_row(
                row.name, row.prefix, ", ".join(row.scopes), f"{row.created_at:%Y-%m-%d %H:%M}", f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else ""
            )
    console.print(table)


@app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key: refused from then on (within 30 s by an API process that verified it lately)."""
    with transaction(sessions(load_config(log_json=False))) as db:
        keys.revoke(db=db, name=name)
    console.print(f"revoked the API key of {name}")
