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


# The application's database role (PostgreSQL): it owns no table, so it cannot drop or alter one, drop or disable a
# trigger, or TRUNCATE (which would skip the audit trigger); it gets the DML crewdesk does. Every table in the schema gets
# APP_DEFAULT_PRIVILEGES unless listed here: the audit trail is append-only (the rows and the seal log are inserted and
# read, never updated or deleted; a chain's head is created and moved), and the schema's version is only read. A new
# table that must be append-only is added here.
APP_DEFAULT_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
APP_TABLE_PRIVILEGES = {
    "audit_events": "SELECT, INSERT",
    "audit_seals": "SELECT, INSERT",
    "audit_chains": "SELECT, INSERT, UPDATE",
    "audit_seal_head": "SELECT, UPDATE",
    "alembic_version": "SELECT",
}


class AppRoleRefused(CrewdeskError):
    """The application's role cannot be set up as asked (not PostgreSQL, or a role that would keep more power)."""


def grant_app_role(url: str, role: str, password: str = "") -> list[str]:
    """Create the login role `role` if it does not exist (and set its password when one is given, sent as a SCRAM
    verifier, never in clear), then grant it exactly the privileges above on every table of the schema and USAGE,
    SELECT on its sequences, after revoking whatever it had: run as the tables' owner after every upgrade (`crewdesk
    init`), so new tables are covered. Returns the tables granted. SQLite has no roles: refused."""
    from sqlalchemy import text

    if make_url(url).get_backend_name() != "postgresql":
        raise AppRoleRefused("an application role needs PostgreSQL: SQLite has no roles (the file's permissions are its only guard)")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            quote = conn.dialect.identifier_preparer.quote
            me, schema, database = conn.execute(text("SELECT current_user, current_schema(), current_database()")).one()
            if role == me:
                raise AppRoleRefused(f"{role} is the role running the migrations (the tables' owner): the application needs another role")
            found = conn.execute(text("SELECT rolsuper, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = :role"), {"role": role}).first()
            if found is not None and any(found):
                raise AppRoleRefused(f"{role} is a superuser or may create roles: grants would not bind it")
            owned = (
                conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = :schema AND tableowner = :role ORDER BY tablename"),
                    {"schema": schema, "role": role},
                )
                .scalars()
                .all()
            )
            if owned:
                raise AppRoleRefused(f"{role} owns {', '.join(owned)}: make the migrating role their owner first (ALTER TABLE ... OWNER TO {me})")
            ident = quote(role)
            if found is None:
                conn.execute(text(f"CREATE ROLE {ident} LOGIN"))
            if password:
                verifier = conn.connection.driver_connection.pgconn.encrypt_password(password.encode(), role.encode(), None)  # type: ignore[union-attr]
                conn.exec_driver_sql(f"ALTER ROLE {ident} LOGIN PASSWORD '{verifier.decode()}'")  # not text(): a verifier has colons
            tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :schema ORDER BY tablename"), {"schema": schema}).scalars().all()
            where = quote(schema)
            conn.execute(text(f"GRANT CONNECT ON DATABASE {quote(database)} TO {ident}"))
            conn.execute(text(f"GRANT USAGE ON SCHEMA {where} TO {ident}"))
            conn.execute(text(f"REVOKE CREATE ON SCHEMA {where} FROM PUBLIC, {ident}"))
            conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {where} FROM {ident}"))
            conn.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {where} FROM {ident}"))
            for table in tables:
                conn.execute(text(f"GRANT {APP_TABLE_PRIVILEGES.get(table, APP_DEFAULT_PRIVILEGES)} ON {where}.{quote(table)} TO {ident}"))
            conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {where} TO {ident}"))
    finally:
        engine.dispose()
    return list(tables)
