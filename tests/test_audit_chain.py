"""The hash-chained audit trail: intact after real concurrent writes, broken by any edit or deletion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from crewdesk.audit import service as audit
from crewdesk.llm.factory import LLMFactory
from crews.pipeline import Pipeline

CREWDESK = str(Path(sys.executable).parent / "crewdesk")


@pytest.fixture
def trail(settings, session_factory, make_ticket):
    """Three tickets through the crew: dozens of rows appended from CrewAI's handler threads at once."""
    pipeline = Pipeline(settings=settings, session_factory=session_factory, llm_factory=LLMFactory(settings))
    for body in ("Refund my duplicate charge please.", "The app crashes on start.", "My lawyer will contact you."):
        pipeline.process(make_ticket(body))
    with session_factory() as db:
        report = audit.verify(db=db)
    assert report.ok, report.problems
    assert report.checked > 60
    return report


def tamper(session_factory, statement: str) -> None:
    """What a superuser could do: switch the append-only trigger off and change history."""
    with session_factory.begin() as db:
        db.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete"))
        db.execute(text(statement))
        db.execute(text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete"))


def verify_cli(pg_url) -> subprocess.CompletedProcess:
    return subprocess.run([CREWDESK, "audit", "verify"], env={**os.environ, "CREWDESK_DATABASE_URL": pg_url}, capture_output=True, text=True, timeout=120)


def test_verify_passes_on_an_untouched_trail(trail, pg_url):
    result = verify_cli(pg_url)
    assert result.returncode == 0 and f"intact: {trail.checked} rows" in result.stdout


def test_an_edited_row_is_detected(trail, session_factory, pg_url):
    tamper(session_factory, "UPDATE audit_events SET error = NULL, result = '{\"response\": \"all fine\"}' WHERE id = 10")
    with session_factory() as db:
        report = audit.verify(db=db)
    assert not report.ok and report.problems == ["row 10: content does not match its hash (edited)"]
    result = verify_cli(pg_url)
    assert result.returncode == 1 and "row 10" in result.stderr and "BROKEN" in result.stdout


def test_a_deleted_row_is_detected(trail, session_factory):
    tamper(session_factory, "DELETE FROM audit_events WHERE id = 20")
    with session_factory() as db:
        report = audit.verify(db=db)
    assert any(p.startswith("row 21: links to") for p in report.problems)


def test_a_deleted_tail_is_detected(trail, session_factory):
    tamper(session_factory, "DELETE FROM audit_events WHERE id = (SELECT max(id) FROM audit_events)")
    with session_factory() as db:
        report = audit.verify(db=db)
    assert any("chain head" in p for p in report.problems)
