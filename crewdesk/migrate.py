"""Run Alembic migrations programmatically (crewdesk init, tests), and make sure a database has the schema a command
needs (ensure_schema: every command that opens the database goes through it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from crewdesk.db import make_engine
from crewdesk.errors import CrewdeskError
from crewdesk.settings import project_path

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported where it is used: every CLI module reaches this one, and `crewdesk --help` should not load it.
MIGRATE_COMMAND = "crewdesk init"


class SchemaNotReady(CrewdeskError):
    """The database lacks the schema this crewdesk needs, and it is not upgraded behind the operator's back."""


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config(str(project_path("alembic.ini")))
    config.set_main_option("script_location", str(project_path("migrations")))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def upgrades_itself(url: str) -> bool:
    """SQLite is the quickstart's database, one file under CREWDESK_HOME: any command creates or upgrades its schema.
    PostgreSQL is shared by the workers, the API and the poller: its schema is upgraded by `crewdesk init` (the
    compose file's migrate service), never as a side effect of another command."""
    return make_url(url).get_backend_name() == "sqlite"


def ensure_schema(url: str) -> None:
    """The database at `url` has the schema at head when this returns. SQLite: created or upgraded here. PostgreSQL:
    SchemaNotReady, whose one line names the command to run, when it has no schema or an older one."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config(url))
    heads = set(scripts.get_heads())
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
    if current == heads:
        return
    if upgrades_itself(url):
        upgrade(url)
        return
    if not current:
        raise SchemaNotReady(f"the database has no crewdesk schema yet: run `{MIGRATE_COMMAND}` to create it")
    known = {script.revision for script in scripts.walk_revisions()}
    at = ", ".join(sorted(current))
    if not current <= known:
        raise SchemaNotReady(f"the database schema is at revision {at}, which this crewdesk does not know: it is newer than this install")
    raise SchemaNotReady(
        f"the database schema is at revision {at}, older than this crewdesk's {', '.join(sorted(heads))}: run `{MIGRATE_COMMAND}` to upgrade it"
    )
