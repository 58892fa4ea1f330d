"""The application's database role owns no table (issue 20): `crewdesk init --app-role` (run as the tables' owner)
makes a login role with only the DML crewdesk does, so the API and the workers can run tickets and append to the audit
trail but cannot drop or disable its trigger, truncate it, rewrite or delete its rows, or change the schema. On real
PostgreSQL, with a real `crewdesk worker` and `crewdesk submit` logged in as that role."""

from __future__ import annotations

import os
import secrets
import subprocess
import uuid

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from crewdesk.audit import service as audit
from crewdesk.audit.models import AuditEvent, AuditSeal
from crewdesk.db import make_engine, make_session_factory, transaction
from crewdesk.migrate import AppRoleRefused, grant_app_role
from crewdesk.tickets.models import Ticket
from tests.helpers import CREWDESK, ROOT, terminal, wait_for


def _psycopg(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _init(pg_url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CREWDESK, "init", *args],
        env={**os.environ, "CREWDESK_DATABASE_URL": pg_url, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def app_role(pg_url, session_factory):
    """A fresh app role on this session's database (roles are the cluster's: a unique name, dropped after), made by
    `crewdesk init` as the tables' owner; returns the URL that logs in as it."""
    role = f"crewdesk_app_{uuid.uuid4().hex[:8]}"
    done = _init(pg_url, "--app-role", role, CREWDESK_APP_DB_PASSWORD=secrets.token_hex(16))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"app role {role}: granted on" in done.stdout
    yield make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    with psycopg.connect(_psycopg(pg_url), autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{role}"')  # its grants on this database
        conn.execute(f'DROP ROLE "{role}"')


def test_a_worker_and_submit_logged_in_as_the_app_role_run_a_ticket_and_append_the_audit_trail(app_role, start_worker, worker_env, session_factory, tmp_path):
    env = {**worker_env, "CREWDESK_DATABASE_URL": app_role}
    worker = start_worker(CREWDESK_DATABASE_URL=app_role)
    tickets = tmp_path / "tickets.jsonl"
    tickets.write_text('{"id": "ROLE-1", "customer": "li@example.com", "subject": "Sync broken", "body": "The desktop app fails to sync with error 500."}\n')
    submitted = subprocess.run([CREWDESK, "submit", str(tickets)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert submitted.returncode == 0 and "queued 1" in submitted.stdout, submitted.stdout + submitted.stderr
    with session_factory() as db:
        ticket_id = db.execute(select(Ticket.id).where(Ticket.external_id == "ROLE-1")).scalar_one()
    ticket = wait_for(session_factory, terminal(ticket_id), what="the ticket to finish")
    worker.stop()
    assert ticket.status == "resolved", (ticket.status, ticket.status_reason, worker.log.read_text()[-3000:])
    assert "permission denied" not in worker.log.read_text()
    with session_factory() as db:
        rows = db.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.ticket_id == ticket_id)).scalar_one()
        seals = db.execute(select(func.count()).select_from(AuditSeal).where(AuditSeal.chain == ticket_id)).scalar_one()
    assert rows >= 3 and seals >= 1  # model calls, status changes, the reply; the chain sealed at the run's end
    verified = subprocess.run([CREWDESK, "audit", "verify"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and "audit trail intact" in verified.stdout, verified.stdout + verified.stderr
    key = subprocess.run(
        [CREWDESK, "apikey", "create", "prometheus", "--scopes", "metrics:read"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert key.returncode == 0 and key.stdout.strip(), key.stderr  # the secrets README makes Prometheus's key this way


REFUSED = {
    "drop the audit trigger": "DROP TRIGGER audit_events_no_update_delete ON audit_events",
    "disable the audit trigger": "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete",
    "drop the trigger function": "DROP FUNCTION audit_append_only() CASCADE",
    "truncate the audit trail (no row trigger fires)": "TRUNCATE audit_events",
    "truncate the seal log": "TRUNCATE audit_seals",
    "rewrite an audit row": "UPDATE audit_events SET actor = 'someone else'",
    "delete an audit row": "DELETE FROM audit_events",
    "rewrite a seal": "UPDATE audit_seals SET count = 0",
    "delete a seal": "DELETE FROM audit_seals",
    "delete a chain's head": "DELETE FROM audit_chains",
    "drop a table": "DROP TABLE tickets CASCADE",
    "alter a table": "ALTER TABLE tickets ADD COLUMN note text",
    "create a table": "CREATE TABLE shadow (id int)",
    "move the schema's version": "UPDATE alembic_version SET version_num = '0001'",
    "make itself superuser": "ALTER ROLE CURRENT_USER SUPERUSER",
}


def test_the_app_role_cannot_drop_disable_truncate_or_rewrite_the_audit_trail(app_role, pg_url, session_factory, make_ticket):
    ticket_id = make_ticket("Where is my order?")
    app_sessions = make_session_factory(engine := make_engine(app_role))
    try:
        with transaction(app_sessions) as db:  # what the pipeline does to the trail: append a row, seal the chain
            audit.record(db=db, kind="status", name="test", ticket_id=ticket_id, actor="test")
            assert audit.seal(db=db, ticket_id=ticket_id, run_id=None) is not None
    finally:
        engine.dispose()
    refused = []
    with psycopg.connect(_psycopg(app_role)) as conn:
        for what, statement in REFUSED.items():
            try:
                conn.execute(statement)
            except errors.InsufficientPrivilege:
                refused.append(what)
            finally:
                conn.rollback()
    assert refused == list(REFUSED)
    with psycopg.connect(_psycopg(pg_url)) as owner:  # the tables' owner, as the app connected before: it could
        owner.execute(REFUSED["drop the audit trigger"])
        owner.execute(REFUSED["truncate the audit trail (no row trigger fires)"])
        owner.rollback()
    with session_factory() as db:
        assert db.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.ticket_id == ticket_id)).scalar_one() >= 1


def test_init_grants_again_after_an_upgrade_so_a_new_table_is_covered(app_role, pg_url):
    role = make_url(app_role).username
    with psycopg.connect(_psycopg(pg_url), autocommit=True) as owner:  # what a new migration does
        owner.execute("CREATE TABLE issue20_new_table (id serial PRIMARY KEY, note text)")
    try:
        with psycopg.connect(_psycopg(app_role)) as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute("INSERT INTO issue20_new_table (note) VALUES ('x')")
        again = _init(pg_url, "--app-role", role)
        assert again.returncode == 0, again.stdout + again.stderr
        with psycopg.connect(_psycopg(app_role)) as conn:
            conn.execute("INSERT INTO issue20_new_table (note) VALUES ('x')")
            assert conn.execute("SELECT count(*) FROM issue20_new_table").fetchone() == (1,)
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("DROP TABLE issue20_new_table")
    finally:
        with psycopg.connect(_psycopg(pg_url), autocommit=True) as owner:
            owner.execute("DROP TABLE issue20_new_table")


def test_an_app_role_is_refused_where_it_cannot_bind(pg_url, tmp_path):
    with pytest.raises(AppRoleRefused, match="SQLite has no roles"):
        grant_app_role(f"sqlite:///{tmp_path / 'crewdesk.db'}", "crewdesk_app")
    with pytest.raises(AppRoleRefused, match="the tables' owner"):
        grant_app_role(pg_url, make_url(pg_url).username or "postgres")
