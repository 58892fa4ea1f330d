"""The command line as a user meets it: clear one-line errors, `run` and `show` on the scripted model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CREWDESK = str(Path(sys.executable).parent / "crewdesk")


def cli(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CREWDESK, *args], env={**os.environ, **(env or {})}, cwd=ROOT, capture_output=True, text=True, input=stdin, timeout=300)


def test_run_then_show_on_sqlite_quickstart(tmp_path):
    env = {"CREWDESK_HOME": str(tmp_path), "CREWDESK_DATABASE_URL": ""}
    result = cli("run", "examples/tickets.jsonl", "--limit", "8", "--provider", "scripted", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "crewdesk run" in out and "EX-001" in out and "EX-008" in out and "EX-009" not in out
    assert "8 tickets:" in out and "escalated" in out and "resolved" in out
    for needle in ("category", "priority", "outcome", "seconds"):
        assert needle in out
    shown = cli("show", "file:EX-008", env=env)  # the legal threat
    assert shown.returncode == 0, shown.stderr
    assert "status=escalated" in shown.stdout and "legal_threat" in shown.stdout
    assert "audit trail" in shown.stdout and "llm_call" in shown.stdout and "crew runs" in shown.stdout
    again = cli("run", "examples/tickets.jsonl", "--limit", "8", "--provider", "scripted", env=env)
    assert again.returncode == 0 and again.stdout.count("already processed") == 8


def test_bad_input_is_one_clear_line(tmp_path):
    env = {"CREWDESK_HOME": str(tmp_path), "CREWDESK_DATABASE_URL": ""}
    missing = cli("run", str(tmp_path / "nope.jsonl"), "--provider", "scripted", env=env)
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error:") and "no such file" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    unknown = cli("show", "99999", env=env)
    assert unknown.returncode == 2 and "ticket 99999 does not exist" in unknown.stderr and "Traceback" not in unknown.stderr
    stdin = cli("run", "-", "--provider", "scripted", env=env, stdin='{"id": "s1", "body": "Where is my invoice?"}\nnot json\n')
    assert stdin.returncode == 0, stdin.stderr
    assert "line 2: not valid JSON" in stdin.stderr and "1 rejected at intake" in stdin.stdout
    usage = cli("submit", "--bogus", env=env)  # a usage error is click's short message, not a traceback
    assert usage.returncode == 2 and "No such option: --bogus" in usage.stderr and "Traceback" not in usage.stderr and "╭" not in usage.stderr


def test_unreachable_database_is_one_line(tmp_path):
    env = {"CREWDESK_HOME": str(tmp_path), "CREWDESK_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = cli("init", env=env)
    assert result.returncode == 2 and "cannot use the database" in result.stderr and "Traceback" not in result.stderr


def _store_hash(home: Path) -> str:
    from sqlalchemy.orm import Session

    from crewdesk.connectors.builtin_store import state_hash
    from crewdesk.db import make_engine

    engine = make_engine(f"sqlite:///{home / 'crewdesk.db'}")
    try:
        with Session(engine) as db:
            return state_hash(db)
    finally:
        engine.dispose()


def test_demo_store_approvals_and_audit_commands(tmp_path):
    env = {"CREWDESK_HOME": str(tmp_path), "CREWDESK_DATABASE_URL": ""}
    loaded = cli("demo", "load", env=env)
    assert loaded.returncode == 0 and "loaded 500 users, 1000 orders, 50 products" in loaded.stdout
    first = _store_hash(tmp_path)
    again = cli("demo", "load", env=env)  # scripts/demo runs it every time: a second load succeeds and changes nothing
    assert again.returncode == 0 and again.stdout == loaded.stdout and _store_hash(tmp_path) == first
    missing = cli("demo", "load", str(tmp_path / "none.json"), env=env)
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    listed = cli("approvals", "list", env=env)
    assert listed.returncode == 0 and "approvals" in listed.stdout
    unknown = cli("approvals", "approve", "12345", "--inline", env=env)
    assert unknown.returncode == 2 and "approval 12345 does not exist" in unknown.stderr
    verified = cli("audit", "verify", env=env)
    assert verified.returncode == 0 and "audit trail intact: 0 rows in 0 chains, 0 seals" in verified.stdout


def test_every_example_ticket_gets_its_expected_outcome_in_the_customers_language(tmp_path):
    """`crewdesk eval examples` on the demo store: statuses, order states and the reply's detected language, as each
    example states them. Scripted model: the procedures settle these tickets in code; the crew path only escalates."""
    env = {"CREWDESK_HOME": str(tmp_path), "CREWDESK_DATABASE_URL": "", "CREWDESK_PROCEDURES": "true"}
    result = cli("eval", "examples", "--provider", "scripted", env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "13/13 tickets got their expected outcome" in result.stdout


def test_email_import_on_a_fresh_home_creates_the_schema_and_an_old_one_is_upgraded(tmp_path):
    """A new user's path: no `crewdesk init` first. SQLite is the quickstart's database: any command that needs the
    schema creates it, or upgrades one an older crewdesk left."""
    import shutil

    from crewdesk.db import make_engine
    from crewdesk.migrate import downgrade

    mail = tmp_path / "mail"
    shutil.copytree(ROOT / "tests/fixtures/email/recovery", mail, ignore=shutil.ignore_patterns("README*"))
    env = {"CREWDESK_HOME": str(tmp_path / "home"), "CREWDESK_DATABASE_URL": "", "CREWDESK_LOG_LEVEL": "WARNING"}
    imported = cli("email", "import", str(mail), env=env)
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert "created 6, follow-ups 0, duplicates 0, ignored 0, for a person 0, rejected 0" in imported.stdout, imported.stdout
    shown = cli("show", "email:recovery-4@example.com", env=env)
    assert shown.returncode == 0 and "The black king ♚ is missing" in shown.stdout, shown.stderr

    url = f"sqlite:///{tmp_path / 'home' / 'crewdesk.db'}"
    downgrade(url, "0009")  # as a crewdesk before the thread index left it
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one().startswith("0009")
    engine.dispose()
    again = cli("email", "import", str(mail), env=env)
    assert again.returncode == 0 and "duplicates 6" in again.stdout, again.stderr[-2000:]
    for command in (("kpi",), ("approvals", "list"), ("audit", "verify")):
        assert cli(*command, env=env).returncode == 0, command


def test_on_postgresql_without_the_schema_a_command_names_the_command_to_run(tmp_path, redis_url):
    """PostgreSQL is shared by the workers, the API and the poller: a command never migrates it behind their back.
    Without the schema, or with an older one, it says in one line what to run."""
    import uuid

    import psycopg

    from crewdesk.migrate import downgrade
    from tests.conftest import PG_ADMIN_URL

    name = f"crewdesk_test_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "one.eml").write_bytes((ROOT / "tests/fixtures/email/recovery/two-content-type-fields.eml").read_bytes())
    env = {"CREWDESK_HOME": str(tmp_path / "home"), "CREWDESK_DATABASE_URL": url, "CREWDESK_BROKER_URL": redis_url, "CREWDESK_LOG_LEVEL": "WARNING"}
    try:
        fresh = cli("email", "import", str(tmp_path / "mail"), env=env)
        assert fresh.returncode == 2 and fresh.stderr.strip() == "error: the database has no crewdesk schema yet: run `crewdesk init` to create it"
        assert cli("init", env=env).returncode == 0
        imported = cli("email", "import", str(tmp_path / "mail"), env=env)
        assert imported.returncode == 0 and "created 1," in imported.stdout, imported.stderr[-2000:]
        downgrade(url, "0009")
        old = cli("show", "1", env=env)
        assert old.returncode == 2 and len(old.stderr.strip().splitlines()) == 1, old.stderr
        assert old.stderr.startswith("error: the database schema is at revision 0009") and old.stderr.strip().endswith("run `crewdesk init` to upgrade it")
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
