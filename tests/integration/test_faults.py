"""Faults mid-run, with real servers restarted by their own commands (private instances: tests/servers.py), a real
`crewdesk worker` with beat, and the scripted model (the only stand-in: no model is needed to test recovery).

After each fault every ticket reaches a terminal state with one reply, its audit rows, and an intact audit trail:
- Redis restarted without persistence (its queue lost): the reconciler puts the lost tickets back;
- PostgreSQL restarted (`pg_ctl restart -m fast`): connection errors are transient, the ticket retries."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from crewdesk.audit import service as audit
from crewdesk.audit.models import AuditEvent
from crewdesk.db import make_engine, make_session_factory, transaction
from crewdesk.migrate import upgrade
from crewdesk.runs.models import CrewRun
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket
from crewdesk.tickets.schemas import TicketIn
from tests.helpers import Worker
from tests.servers import PrivatePostgres, PrivateRedis

BODIES = [
    "I was charged twice for my subscription, please refund one charge.",
    "The app crashes when I open settings.",
    "How do I reset my password?",
    "Can I export my report as CSV?",
]
TERMINAL = ("resolved", "escalated", "failed")


def submit(session_factory, n: int, tag: str) -> list[int]:
    with transaction(session_factory) as db:
        return [
            tickets.submit(
                db=db, ticket_in=TicketIn(source="test", external_id=f"{tag}-{i}", customer=f"c{i}@example.com", subject="fault", body=BODIES[i % len(BODIES)])
            )[0].id
            for i in range(n)
        ]


def enqueue_all(broker_url: str, ids: list[int]) -> None:
    from celery import Celery

    sender = Celery("faults-test", broker=broker_url)
    sender.conf.task_routes = {"crewdesk.process_ticket": {"queue": "tickets"}}
    for ticket_id in ids:
        sender.send_task("crewdesk.process_ticket", args=[ticket_id])
    sender.close()


def statuses(session_factory, ids: list[int]) -> dict[str, int]:
    with session_factory() as db:
        rows = db.execute(select(Ticket.status, func.count()).where(Ticket.id.in_(ids)).group_by(Ticket.status)).all()
    return dict(rows)


def wait_terminal(session_factory, ids: list[int], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = statuses(session_factory, ids)
        except Exception:  # noqa: BLE001 - the database may be restarting
            found = {}
        if sum(n for s, n in found.items() if s in TERMINAL) == len(ids):
            return found
        time.sleep(0.5)
    raise AssertionError(f"not every ticket is terminal after {timeout:.0f} s: {statuses(session_factory, ids)}")


def assert_each_answered_once(session_factory, ids: list[int]) -> None:
    with session_factory() as db:
        replies = dict(
            db.execute(
                select(Message.ticket_id, func.count()).where(Message.ticket_id.in_(ids), Message.direction == "outbound").group_by(Message.ticket_id)
            ).all()
        )
        completed = dict(
            db.execute(
                select(CrewRun.ticket_id, func.count()).where(CrewRun.ticket_id.in_(ids), CrewRun.status == "completed").group_by(CrewRun.ticket_id)
            ).all()
        )
        audited = dict(
            db.execute(
                select(AuditEvent.ticket_id, func.count()).where(AuditEvent.ticket_id.in_(ids), AuditEvent.kind == "llm_call").group_by(AuditEvent.ticket_id)
            ).all()
        )
        report = audit.verify(db=db)
    assert {t: replies.get(t, 0) for t in ids} == dict.fromkeys(ids, 1)  # one reply each: none lost, none twice
    assert {t: completed.get(t, 0) for t in ids} == dict.fromkeys(ids, 1)
    assert all(audited.get(t, 0) >= 2 for t in ids), audited  # the model calls of the completed run are in the trail
    assert report.ok, report.problems[:5]


def fault_env(base: dict[str, str], **overrides: str) -> dict[str, str]:
    return {**base, "CREWDESK_RECONCILE_SECONDS": "2", "CREWDESK_RECONCILE_AFTER_SECONDS": "4", **overrides}


def test_redis_restarted_without_persistence_loses_the_queue_and_the_reconciler_brings_it_back(worker_env, pg_url, session_factory, tmp_path):
    redis_server = PrivateRedis(tmp_path / "redis").start()
    worker = Worker(fault_env(worker_env, CREWDESK_BROKER_URL=redis_server.url, CREWDESK_SCRIPTED_LATENCY_MS="150"), tmp_path / "worker.log")
    try:
        ids = submit(session_factory, 16, "redis-loss")
        enqueue_all(redis_server.url, ids)
        worker.start()
        deadline = time.monotonic() + 60
        while sum(n for s, n in statuses(session_factory, ids).items() if s in TERMINAL) < 2:
            assert time.monotonic() < deadline, "no ticket finished"
            time.sleep(0.2)
        redis_server.restart()  # SHUTDOWN NOSAVE and start again: the queued and unacked messages are gone
        assert redis_server.keys() == 0
        lost = sum(n for s, n in statuses(session_factory, ids).items() if s not in TERMINAL)
        assert lost > 0, "every ticket had finished before the restart: the test proved nothing"

        wait_terminal(session_factory, ids, timeout=150)

        assert_each_answered_once(session_factory, ids)
        with session_factory() as db:
            requeued = db.execute(
                select(func.count(func.distinct(AuditEvent.ticket_id))).where(AuditEvent.name == "requeued", AuditEvent.ticket_id.in_(ids))
            ).scalar_one()
        assert requeued >= 1  # the reconciler, not luck, brought them back
    finally:
        worker.stop()
        redis_server.stop()


@pytest.fixture
def private_pg(tmp_path):
    server = PrivatePostgres(tmp_path / "pg").start()
    upgrade(server.url)
    yield server
    server.stop()


def test_postgres_restarted_mid_run_every_ticket_finishes_with_its_audit_rows(worker_env, redis_url, private_pg, tmp_path):
    engine = make_engine(private_pg.url)
    session_factory = make_session_factory(engine)
    env = fault_env(worker_env, CREWDESK_DATABASE_URL=private_pg.url, CREWDESK_SCRIPTED_LATENCY_MS="300")
    worker = Worker(env, tmp_path / "worker.log")
    try:
        ids = submit(session_factory, 10, "pg-restart")
        enqueue_all(redis_url, ids)
        worker.start()
        deadline = time.monotonic() + 60
        while not statuses(session_factory, ids).get("triaging") and not statuses(session_factory, ids).get("in_progress"):
            assert time.monotonic() < deadline, "no ticket started"
            time.sleep(0.1)
        engine.dispose()
        private_pg.restart("fast")  # every connection cut mid-run: AdminShutdown in the worker

        wait_terminal(session_factory, ids, timeout=180)

        found = statuses(session_factory, ids)
        assert found.get("failed", 0) == 0, found  # a database restart is transient: retried, never failed
        assert_each_answered_once(session_factory, ids)
    finally:
        worker.stop()
        engine.dispose()
