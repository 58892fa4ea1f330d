"""What the commands share: the two consoles, settings, database sessions and the schema."""

from __future__ import annotations

import sys

from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.db import make_engine, make_session_factory
from crewdesk.logging import configure_logging
from crewdesk.migrate import ensure_schema, upgrade
from crewdesk.runs.service import RunSummary
from crewdesk.settings import Settings, load_settings, quiet_crewai_env

console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def load_config(**overrides: object) -> Settings:
    """The settings from the environment, with the options a command was given (None: not given) over them; the home
    directory made and logging configured."""
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    settings.home.mkdir(parents=True, exist_ok=True)
    quiet_crewai_env(settings)
    configure_logging(level=settings.log_level, json=settings.log_json)
    return settings


def sessions(settings: Settings) -> sessionmaker[Session]:
    """Sessions on a database that has the schema: SQLite (the quickstart) is created or upgraded first; PostgreSQL
    without it ends the command with one line naming `crewdesk init` (crewdesk.migrate.ensure_schema)."""
    ensure_schema(settings.database_url)
    return make_session_factory(make_engine(settings.database_url))


def require_schema(settings: Settings) -> None:
    """For a command that reaches the database through something else (the worker, the API): the same check, first."""
    ensure_schema(settings.database_url)


def migrate(settings: Settings) -> None:
    """Create or upgrade the schema (Alembic)."""
    upgrade(settings.database_url)


def redact(url: str) -> str:
    """A database or broker URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - any unparsable URL is shown as given
        return url


def tokens(run: RunSummary | None) -> str:
    """A run's tokens as the tables show them: in (cached)/out."""
    return f"{run.tokens_in} ({run.tokens_cached})/{run.tokens_out}" if run else "-"
