"""A real Celery worker (`crewdesk worker`, prefork) on real Redis and PostgreSQL, with the scripted model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from sqlalchemy import func, select

from crewdesk.audit.models import AuditEvent
from crewdesk.db import transaction
from crewdesk.runs.models import CrewRun
from crewdesk.tickets.models import Message, Ticket
from tests.helpers import CREWDESK, ROOT, enqueue, terminal, wait_for


def submit_file(env, tmp_path, lines: list[str]) -> subprocess.CompletedProcess:
    path = tmp_path / f"tickets-{time.monotonic_ns()}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return subprocess.run([CREWDESK, "submit", str(path)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_submit_worker_crew_database(start_worker, worker_env, session_factory, tmp_path):
    worker = start_worker(CREWDESK_LOG_LEVEL="INFO")
    result = submit_file(
        worker_env,
        tmp_path,
        ['{"id": "W-1", "customer": "li@example.com", "subject": "Sync broken", "body": "The desktop app fails to sync with error 500 since the update."}'],
    )
    assert result.returncode == 0, result.stderr
    assert "queued 1" in result.stdout
    with session_factory() as db:
        ticket_id = db.execute(select(Ticket.id).where(Ticket.external_id == "W-1")).scalar_one()
    ticket = wait_for(session_factory, terminal(ticket_id), what="ticket to finish")
    assert ticket.status == "resolved" and ticket.category == "technical"
    with session_factory() as db:
        run = db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket_id)).scalar_one()
        llm_rows = db.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.run_id == run.id, AuditEvent.kind == "llm_call")).scalar_one()
    assert run.celery_task_id and run.status == "completed"
    assert llm_rows == run.llm_calls >= 2
    processed = [json.loads(line) for line in worker.log.read_text().splitlines() if '"ticket.processed"' in line]
    assert processed and processed[0]["ticket_id"] == ticket_id and processed[0]["run_id"] == run.id
    assert processed[0]["celery_task_id"] == run.celery_task_id  # structlog carries the ids bound by task and pipeline
    ready = [json.loads(line) for line in worker.log.read_text().splitlines() if '"worker.child_ready"' in line]
    assert ready and all(entry["pid"] != worker.proc.pid for entry in ready)  # warmed in the child, never the parent


def test_a_dead_model_endpoint_defers_the_ticket_past_max_retries_and_never_fails_it(start_worker, session_factory, settings, make_ticket):
    with socket.socket() as probe:  # a port nothing listens on: every model call is a connection error
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    # No fallback: each try is deferred (failures 1 and 2 wait reset/failures = 2 s, then the open circuit's 4 s), never
    # counted against max_retries=1, never `failed`.
    worker = start_worker(
        CREWDESK_LLM_PROVIDER="openai",
        CREWDESK_OPENAI_BASE_URL=f"http://127.0.0.1:{dead}/v1",
        CREWDESK_TASK_MAX_RETRIES="1",
        CREWDESK_LLM_BREAKER_FAILURES="2",
        CREWDESK_LLM_BREAKER_RESET_SECONDS="4",
    )
    ticket_id = make_ticket("The mobile app will not load my dashboard.")
    enqueue(settings, ticket_id)
    count_runs = lambda db: db.execute(select(func.count()).select_from(CrewRun).where(CrewRun.ticket_id == ticket_id)).scalar_one()  # noqa: E731
    # Between two tries the ticket waits `queued` for its countdown.
    wait_for(session_factory, lambda db: count_runs(db) >= 3 and db.get(Ticket, ticket_id).status == "queued", timeout=60, what="three deferred tries")
    worker.stop()
    with session_factory() as db:
        ticket = db.get(Ticket, ticket_id)
        runs = db.execute(select(CrewRun.status).where(CrewRun.ticket_id == ticket_id)).scalars().all()
        failures = db.execute(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "llm_call", AuditEvent.error.like("%APIConnectionError%"))
        ).scalar_one()
        failed = db.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.name == "failed")).scalar_one()
    assert ticket.status == "queued" and "retry at" in ticket.status_reason, ticket.status_reason
    assert set(runs) == {"error"} and len(runs) >= 3  # more tries than max_retries=1 allows, and not given up
    assert failures >= 2 and failed == 0  # the real connection attempts are audited (no hidden client retries)


def test_duplicate_submit_gives_one_result(start_worker, worker_env, session_factory, settings, tmp_path):
    start_worker()
    line = '{"id": "DUP-1", "customer": "kim@example.com", "subject": "Invoice", "body": "Please send me a copy of my last invoice."}'
    first = submit_file(worker_env, tmp_path, [line, line])
    second = submit_file(worker_env, tmp_path, [line])
    assert "queued 1, duplicates 1" in first.stdout, first.stdout + first.stderr
    assert "queued 0, duplicates 1" in second.stdout, second.stdout + second.stderr
    with session_factory() as db:
        ticket_id = db.execute(select(Ticket.id).where(Ticket.external_id == "DUP-1")).scalar_one()
    enqueue(settings, ticket_id)  # and a duplicate delivery of the task itself
    wait_for(session_factory, terminal(ticket_id), what="ticket to finish")
    time.sleep(2)  # give the duplicate delivery time to run, if it were going to
    with session_factory() as db:
        assert db.execute(select(func.count()).select_from(Ticket).where(Ticket.external_id == "DUP-1")).scalar_one() == 1
        assert db.execute(select(func.count()).select_from(CrewRun).where(CrewRun.ticket_id == ticket_id)).scalar_one() == 1
        assert db.execute(select(func.count()).select_from(Message).where(Message.ticket_id == ticket_id, Message.direction == "outbound")).scalar_one() == 1


def test_sigkill_mid_ticket_then_restart_completes_exactly_once(start_worker, session_factory, settings, make_ticket):
    # Short visibility timeout so Redis hands the unacked ticket back within the test; production uses 1800 s.
    slow = {
        "CREWDESK_SCRIPTED_LATENCY_MS": "1500",
        "CREWDESK_VISIBILITY_TIMEOUT": "6",
        "CREWDESK_TASK_TIME_LIMIT": "5",
        "CREWDESK_UNACKED_RESTORE_INTERVAL": "2",
    }
    worker = start_worker(**slow)
    ticket_id = make_ticket("My payment failed but the money left my account.")
    enqueue(settings, ticket_id)
    wait_for(
        session_factory,
        lambda db: (
            db.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "llm_call")).scalar_one() >= 1
        ),
        what="the crew to be mid-ticket",
    )
    worker.kill()
    with session_factory() as db:
        assert db.get(Ticket, ticket_id).status in ("triaging", "in_progress")
        assert db.execute(select(CrewRun.status).where(CrewRun.ticket_id == ticket_id)).scalars().all() == ["running"]
    start_worker(**{**slow, "CREWDESK_SCRIPTED_LATENCY_MS": "0"})
    ticket = wait_for(session_factory, terminal(ticket_id), timeout=90, what="redelivered ticket to finish")
    assert ticket.status == "resolved"
    time.sleep(8)  # past another visibility timeout: no second redelivery may run it again
    with session_factory() as db:
        runs = db.execute(select(CrewRun.status).where(CrewRun.ticket_id == ticket_id).order_by(CrewRun.id)).scalars().all()
        replies = db.execute(select(func.count()).select_from(Message).where(Message.ticket_id == ticket_id, Message.direction == "outbound")).scalar_one()
    assert runs == ["interrupted", "completed"]
    assert replies == 1


def test_malformed_tickets_fail_with_reason_and_the_worker_keeps_going(start_worker, worker_env, session_factory, settings, make_ticket, tmp_path):
    start_worker()
    bad = submit_file(
        worker_env,
        tmp_path,
        [
            '{"id": "BAD-1", "subject": "no body"}',
            "{not json",
            '{"id": "OK-1", "body": "How do I change my password?"}',
            '{"id": "NUL-1", "body": "PK\\u0000\\u0003binary"}',
        ],
    )
    assert bad.returncode == 1
    assert "line 1: body: Field required" in bad.stderr and "line 2: not valid JSON" in bad.stderr
    assert "line 4: body: Value error, contains NUL bytes" in bad.stderr
    assert "Traceback" not in bad.stderr
    with transaction(session_factory) as db:
        blank = Ticket(source="test", external_id="BLANK-1", body=" \n\t ", status="queued")  # arrived by a path that skipped intake checks
        db.add(blank)
    enqueue(settings, blank.id)
    enqueue(settings, 999_999)  # a ticket id that does not exist
    with session_factory() as db:
        ok_id = db.execute(select(Ticket.id).where(Ticket.external_id == "OK-1")).scalar_one()
        rejected = db.execute(select(Ticket).where(Ticket.external_id == "BAD-1")).scalar_one()
    assert rejected.status == "failed" and "body: Field required" in rejected.status_reason
    failed = wait_for(session_factory, terminal(blank.id), what="blank ticket to fail")
    assert failed.status == "failed" and failed.status_reason == "ticket has no message text"
    good = wait_for(session_factory, terminal(ok_id), what="the next good ticket")
    assert good.status == "resolved"
    later = make_ticket("Where can I download my invoice?")
    enqueue(settings, later)
    assert wait_for(session_factory, terminal(later), what="a ticket after the bad ones").status == "resolved"


def test_the_worker_parent_imports_the_pii_recognizers_before_the_pool_forks(tmp_path):
    """A fresh child used to import presidio (spaCy, transformers, torch: 10-30 s on a busy 2-core host) inside its first
    ticket's time limit, and failed that ticket with SoftTimeLimitExceeded (bench/faults.py found it). The parent now does
    it once on worker_init, before forking; with redaction off it imports nothing."""
    probe = (
        "import sys\n"
        "from celery import signals\n"
        "from crewdesk.settings import load_settings\n"
        "from workers.app import configure\n"
        "import workers.runtime\n"
        "configure(load_settings(pii_redaction=sys.argv[1] == 'on', broker_url='redis://127.0.0.1:1/0'))\n"
        "assert 'presidio_analyzer' not in sys.modules\n"
        "signals.worker_init.send(sender=None)\n"
        "from crewdesk import pii\n"
        "print('presidio_analyzer' in sys.modules, pii._recognizers.cache_info().currsize)\n"
    )
    env = {**os.environ, "CREWDESK_HOME": str(tmp_path)}
    on = subprocess.run([sys.executable, "-c", probe, "on"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    off = subprocess.run([sys.executable, "-c", probe, "off"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert on.stdout.split() == ["True", "1"], on.stderr[-2000:]
    assert off.stdout.split() == ["False", "0"], off.stderr[-2000:]
