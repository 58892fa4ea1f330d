"""The support console's users (issue 22): Argon2id-hashed passwords, roles, and `crewdesk user add`, whose password
comes from a prompt or a file, never from the command line."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from crewdesk.auth import users
from crewdesk.auth.models import UserRole
from crewdesk.db import transaction
from crewdesk.errors import Conflict
from tests.integration.test_cli import cli


def test_a_user_is_proved_by_their_password_only(session_factory):
    with transaction(session_factory) as db:
        users.create(db=db, name="lena", password="correct horse battery", role="lead")
    with session_factory() as db:
        user = users.authenticate(db=db, name="lena", password="correct horse battery")
        assert user is not None and user.role is UserRole.lead
        assert user.password_hash.startswith("$argon2id$") and "correct horse" not in user.password_hash
        assert users.authenticate(db=db, name="lena", password="wrong horse battery") is None
        assert users.authenticate(db=db, name="nobody", password="correct horse battery") is None
    with transaction(session_factory) as db, pytest.raises(Conflict):
        users.create(db=db, name="lena", password="another long password", role="agent")
    for name, password, role in (("a:b", "long enough password", "agent"), ("ok", "short", "agent"), ("ok", "long enough password", "boss")):
        with transaction(session_factory) as db, pytest.raises(ValueError):
            users.create(db=db, name=name, password=password, role=role)
    with transaction(session_factory) as db:
        users.disable(db=db, name="lena")
    with session_factory() as db:
        assert users.authenticate(db=db, name="lena", password="correct horse battery") is None


def test_user_add_reads_the_password_from_a_file_or_a_prompt(tmp_path):
    env = {"CREWDESK_HOME": str(tmp_path), "CREWDESK_DATABASE_URL": ""}  # the SQLite quickstart: migrates itself
    secret = tmp_path / "pw"
    secret.write_text("a long lead password\n")
    added = cli("user", "add", "lena", "--role", "lead", "--password-file", str(secret), env=env)
    assert added.returncode == 0, added.stderr
    prompted = cli("user", "add", "arno", "--role", "agent", env=env, stdin="an agent's password\nan agent's password\n")
    assert prompted.returncode == 0, prompted.stderr
    refused = cli("user", "add", "kim", "--role", "agent", env=env, stdin="short\nshort\n")
    assert refused.returncode != 0 and "12 characters" in refused.stderr and "Traceback" not in refused.stderr
    assert "--password " not in cli("user", "add", "--help", env=env).stdout  # no way to pass it in argv
    listed = cli("user", "list", env=env)
    assert "lena" in listed.stdout and "lead" in listed.stdout and "arno" in listed.stdout
    [database] = list(tmp_path.glob("*.db")) or list(tmp_path.rglob("*.db"))
    with create_engine(f"sqlite:///{database}").connect() as conn:
        rows = dict(conn.execute(text("SELECT name, password_hash FROM users")).all())
    assert set(rows) == {"lena", "arno"} and all(h.startswith("$argon2id$") for h in rows.values())
    assert "a long lead password" not in rows["lena"]
