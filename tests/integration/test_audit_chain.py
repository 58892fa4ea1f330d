"""The audit trail: one hash chain per ticket, sealed into a global log at the end of every run. Intact after real
concurrent writes; broken by any edit, deletion or insertion, including a ticket's whole chain deleted."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, text

from crewdesk.audit import service as audit
from crewdesk.audit.models import AuditEvent
from crewdesk.db import transaction
from crewdesk.llm.factory import LLMFactory
from crews.pipeline import Pipeline

CREWDESK = str(Path(sys.executable).parent / "crewdesk")


@pytest.fixture
def trail(settings, session_factory, make_ticket):
    """Three tickets through the crew: rows appended from CrewAI's handler threads at once."""
    pipeline = Pipeline(settings=settings, session_factory=session_factory, llm_factory=LLMFactory(settings))
    ids = [make_ticket(body) for body in ("Refund my duplicate charge please.", "The app crashes on start.", "My lawyer will contact you.")]
    for ticket_id in ids:
        pipeline.process(ticket_id)
    with session_factory() as db:
        report = audit.verify(db=db)
    assert report.ok, report.problems
    assert report.chains == 3 and report.seals == 3 and report.checked > 15
    return report


def tamper(session_factory, statement: str, table: str = "audit_events") -> None:
    """What a superuser could do: switch the append-only trigger off and change history."""
    trigger = {"audit_events": "audit_events_no_update_delete", "audit_seals": "audit_seals_no_update_delete"}.get(table)
    with session_factory.begin() as db:
        if trigger:
            db.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}"))
        db.execute(text(statement))
        if trigger:
            db.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}"))


def verify_cli(pg_url) -> subprocess.CompletedProcess:
    return subprocess.run([CREWDESK, "audit", "verify"], env={**os.environ, "CREWDESK_DATABASE_URL": pg_url}, capture_output=True, text=True, timeout=120)


def test_verify_passes_on_an_untouched_trail(trail, pg_url):
    result = verify_cli(pg_url)
    assert result.returncode == 0 and f"intact: {trail.checked} rows in 3 chains, 3 seals" in result.stdout


def test_lifecycle_noise_is_not_kept(trail, session_factory):
    """Decisions, not lifecycle: model and tool calls, status changes and replies; no crew/task/agent/flow started rows."""
    with session_factory() as db:
        kinds = {(kind, name) for kind, name in db.execute(select(AuditEvent.kind, AuditEvent.name))}
    assert not [n for _, n in kinds if n.endswith(("_started", "_completed")) and not n.startswith("llm")], kinds
    assert {"llm_call", "status", "reply"} <= {k for k, _ in kinds}


def test_an_edited_row_is_detected(trail, session_factory, pg_url):
    tamper(session_factory, 'UPDATE audit_events SET error = NULL, result = \'{"response": "all fine"}\' WHERE chain = 1 AND seq = 3')
    with session_factory() as db:
        report = audit.verify(db=db)
    assert not report.ok and len(report.problems) == 1 and report.problems[0].startswith("ticket 1 row 3 ") and report.problems[0].endswith("(edited)")
    result = verify_cli(pg_url)
    assert result.returncode == 1 and "ticket 1 row 3" in result.stderr and "BROKEN" in result.stdout


def test_a_deleted_row_is_detected(trail, session_factory):
    tamper(session_factory, "DELETE FROM audit_events WHERE chain = 2 AND seq = 2")
    with session_factory() as db:
        report = audit.verify(db=db)
    assert any(p.startswith("ticket 2 row 3 ") and "links to" in p for p in report.problems)
    assert any(p.startswith("ticket 2 row 3 ") and "deleted" in p for p in report.problems)


def test_a_deleted_tail_is_detected(trail, session_factory):
    tamper(session_factory, "DELETE FROM audit_events WHERE id = (SELECT max(id) FROM audit_events WHERE chain = 3)")
    with session_factory() as db:
        report = audit.verify(db=db)
    assert any(p.startswith("ticket 3:") and "its head" in p for p in report.problems)


def test_a_ticket_chain_deleted_whole_is_detected_by_its_seal(trail, session_factory):
    """Rows and chain head gone: nothing in the chains shows it, the seal log does."""
    tamper(session_factory, "DELETE FROM audit_events WHERE chain = 2")
    tamper(session_factory, "DELETE FROM audit_chains WHERE chain = 2", table="audit_chains")
    with session_factory() as db:
        report = audit.verify(db=db)
    assert report.chains == 2
    assert any(p.startswith("seal 2 (ticket 2") and "deleted or cut" in p for p in report.problems), report.problems


def test_a_deleted_seal_is_detected(trail, session_factory):
    tamper(session_factory, "DELETE FROM audit_seals WHERE id = 2", table="audit_seals")
    with session_factory() as db:
        report = audit.verify(db=db)
    assert any(p.startswith("seal 3 ") and "links to" in p for p in report.problems)
    assert any("seal head counted 3" in p for p in report.problems)


def test_the_append_only_triggers_refuse_changes(trail, session_factory):
    for statement in ("UPDATE audit_events SET error = 'x' WHERE id = 1", "DELETE FROM audit_seals WHERE id = 1"):
        with pytest.raises(Exception, match="append-only"), session_factory.begin() as db:
            db.execute(text(statement))


def test_concurrent_tickets_never_wait_on_one_row(session_factory, make_ticket):
    """An open transaction that appended to ticket A's chain holds A's head row; ticket B appends at once (a lock
    wait would hit the 1 s lock_timeout). Before, every append took the one global chain-head row."""
    a, b = make_ticket("first"), make_ticket("second")
    holding, release = threading.Event(), threading.Event()

    def hold_a():
        with transaction(session_factory) as db:
            audit.record(db=db, ticket_id=a, kind="status", name="holding", actor="test")
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_a)
    holder.start()
    try:
        assert holding.wait(10)
        with transaction(session_factory) as db:
            db.execute(text("SET LOCAL lock_timeout = '1s'"))
            audit.record(db=db, ticket_id=b, kind="status", name="not_waiting", actor="test")
            audit.seal(db=db, ticket_id=b, run_id=None)
    finally:
        release.set()
        holder.join()
    with session_factory() as db:
        report = audit.verify(db=db)
    assert report.ok, report.problems
    assert (report.chains, report.seals, report.checked) == (2, 1, 2)
