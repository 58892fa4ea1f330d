"""`crewdesk user`: the people who log in to the support console. A password is read from a prompt or a file, never
from the command line (argv is visible to every user of the machine and kept in shell history)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crewdesk.auth import users
from crewdesk.auth.models import UserRole
from crewdesk.cli.common import console, load_config, sessions
from crewdesk.db import transaction

app = typer.Typer(help="Users of the support console: a name, a password (Argon2id-hashed) and a role.", no_args_is_help=True)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The user's name: what they log in with, recorded as the actor of what they do.")],
    role: Annotated[UserRole, typer.Option(help="agent: queues and tickets; lead: also decides approvals; admin: everything.")],
    password_file: Annotated[
        Path | None, typer.Option(help="Read the password from this file's first line (e.g. a secret file); default: prompt for it.", dir_okay=False)
    ] = None,
) -> None:
    """Add a user; the password is stored only as its Argon2id hash."""
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        password = lines[0] if lines else ""
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with transaction(sessions(load_config(log_json=False))) as db:
            users.create(db=db, name=name, password=password, role=role)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    console.print(f"added {name} ({role.value})", highlight=False)


@app.command("list")
def listing() -> None:
    """The users: name, role, how they log in (a password, or the OIDC issuer whose subject they are), created, disabled
    (never a password)."""
    with sessions(load_config(log_json=False))() as db:
        table = Table(title="Console users")
        for column in ("name", "role", "login", "created", "disabled"):
            table.add_column(column)
        for user in users.listing(db=db):
            login = f"OIDC {user.oidc_issuer}" if user.oidc_issuer else "password"
            table.add_row(
                user.name, user.role.value, login, f"{user.created_at:%Y-%m-%d %H:%M}", f"{user.disabled_at:%Y-%m-%d %H:%M}" if user.disabled_at else ""
            )
    console.print(table)


@app.command("disable")
def disable(name: Annotated[str, typer.Argument(help="The user's name.")]) -> None:
    """Disable a user: their next request in the console is sent to the login page, and they cannot log in again."""
    with transaction(sessions(load_config(log_json=False))) as db:
        users.disable(db=db, name=name)
    console.print(f"disabled {name}", highlight=False)
