"""Prometheus metrics: the API's scrape-time collector on a real PostgreSQL and Redis, the workers' multiprocess files
written by several processes and served aggregated (and by a real `crewdesk worker --metrics-port`), a real
Prometheus scraping the API, and the deploy/ configuration (promtool, when installed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import types
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import column, func, select, table, text, update

import crewdesk.metrics
from crewdesk.api import create_app
from crewdesk.approvals.models import Approval
from crewdesk.audit import service as audit
from crewdesk.db import transaction
from crewdesk.metrics import worker as wm
from crewdesk.metrics.collector import AuditTally
from crewdesk.runs.models import CrewRun
from crewdesk.tickets.models import Message, Ticket
from tests import helpers

ROOT = Path(__file__).resolve().parents[2]
CREWDESK = str(Path(sys.executable).parent / "crewdesk")
DOCUMENTED = {re.sub(r"_total$", "", name) for name in re.findall(r"crewdesk_[a-z_]+", crewdesk.metrics.__doc__)}  # family names
from tests.helpers import api_key  # noqa: E402

_SCRAPERS = __import__("itertools").count()


def SCRAPER(session_factory) -> dict[str, str]:
    """The header Prometheus sends: a metrics:read key as its bearer token (crewdesk/api/auth.py)."""
    return {"Authorization": f"Bearer {api_key(session_factory, f'prometheus-{next(_SCRAPERS)}', ('metrics:read',))}"}


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples) -> set[str]:
    return {re.sub(r"_(total|bucket|sum|count|created)$", "", name) for name, _ in samples}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only
        return response.read().decode()


def set_ticket(factory, ticket_id: int, **fields) -> None:
    with transaction(factory) as db:
        db.execute(update(Ticket).where(Ticket.id == ticket_id).values(**fields))


@pytest.fixture
def populated(session_factory, make_ticket, redis_url):
    """Tickets in known states, two pending approvals (one 2 h old), tool-call audit rows, 3 + 1 queued messages."""
    ids = {}
    for key, source, status, category in [
        ("a", "email", "resolved", "billing"),
        ("b", "email", "resolved", "billing"),
        ("c", "jira", "escalated", "technical"),
        ("d", "api", "awaiting_approval", "billing"),
        ("e", "email", "queued", None),
    ]:
        ids[key] = make_ticket(external_id=f"SD-{ord(key)}" if source == "jira" else key, source=source)  # a Jira ticket's id is an issue key
        set_ticket(session_factory, ids[key], status=status, category=category)
    now = datetime.now(UTC)
    with transaction(session_factory) as db:
        for n, age in enumerate((7200, 60)):
            db.add(
                Approval(
                    ticket_id=ids["d"],
                    action="return_delivered_order_items",
                    arguments={},
                    idempotency_key=f"key-{n}",
                    status="pending",
                    created_at=now - timedelta(seconds=age),
                )
            )
        db.add(
            Approval(
                ticket_id=ids["a"],
                action="return_delivered_order_items",
                arguments={},
                idempotency_key="key-done",
                status="approved",
                created_at=now - timedelta(days=2),
            )
        )
    rows = [
        ("tool_call", "find_user_id_by_email", None),
        ("tool_call", "find_user_id_by_email", None),
        ("tool_call", "get_order_details", "timeout"),
        ("effect", "return_delivered_order_items", None),
        ("gate", "denied:kb_search", "role 'routing' is not allowed"),
        ("gate", "denied:kb_search", "role 'routing' is not allowed"),
        ("gate", "replayed:return_delivered_order_items", None),
        ("gate", "approval_requested:return_delivered_order_items", None),
        ("llm_call", "qwen", None),
        ("status", "resolved", None),
    ]
    for kind, name, error in rows:
        with transaction(session_factory) as db:
            audit.record(db=db, ticket_id=ids["d"], kind=kind, name=name, actor="billing", error=error)
    client = redis.Redis.from_url(redis_url)
    client.rpush("tickets", "1", "2", "3")
    client.rpush("delivery", "4")
    return ids


def test_api_metrics_are_exact(settings, session_factory, populated):
    app = create_app(settings, session_factory=session_factory, send=lambda _ticket_ids: None)
    with TestClient(app, headers={"Authorization": f"Bearer {api_key(session_factory, 'prometheus', ('metrics:read',))}"}) as client:
        response = client.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        samples = parse(response.text)

        assert value(samples, "crewdesk_tickets", status="resolved", channel="email", category="billing") == 2
        assert value(samples, "crewdesk_tickets", status="escalated", channel="jira", category="technical") == 1
        assert value(samples, "crewdesk_tickets", status="awaiting_approval", channel="api", category="billing") == 1
        assert value(samples, "crewdesk_tickets", status="queued", channel="email", category="none") == 1
        assert sum(v for (name, _), v in samples.items() if name == "crewdesk_tickets") == 5

        assert value(samples, "crewdesk_approvals_waiting") == 2
        assert 7199 <= value(samples, "crewdesk_approvals_oldest_waiting_seconds") < 7260

        assert value(samples, "crewdesk_tool_calls_total", tool="find_user_id_by_email", outcome="ok") == 2
        assert value(samples, "crewdesk_tool_calls_total", tool="get_order_details", outcome="error") == 1
        assert value(samples, "crewdesk_tool_calls_total", tool="return_delivered_order_items", outcome="effect") == 1
        assert value(samples, "crewdesk_tool_calls_total", tool="kb_search", outcome="denied") == 2
        assert value(samples, "crewdesk_tool_calls_total", tool="return_delivered_order_items", outcome="replayed") == 1
        assert value(samples, "crewdesk_tool_calls_total", tool="return_delivered_order_items", outcome="approval_requested") == 1
        assert sum(v for (name, _), v in samples.items() if name == "crewdesk_tool_calls_total") == 8  # not the llm_call and status rows
        assert value(samples, "crewdesk_gate_refusals_total", tool="kb_search") == 2

        assert value(samples, "crewdesk_queue_depth", queue="tickets") == 3
        assert value(samples, "crewdesk_queue_depth", queue="delivery") == 1 and value(samples, "crewdesk_queue_depth", queue="intake") == 0
        assert value(samples, "crewdesk_metrics_source_up", source="database") == 1 and value(samples, "crewdesk_metrics_source_up", source="broker") == 1
        assert {n for n in names(samples) if n.startswith("crewdesk_")} <= DOCUMENTED

        # Counters keep counting: two more refusals and a resolved ticket show at the next scrape.
        for _ in range(2):
            with transaction(session_factory) as db:
                audit.record(db=db, ticket_id=populated["c"], kind="gate", name="denied:issue_refund", actor="routing", error="not allowed")
        set_ticket(session_factory, populated["e"], status="resolved", category="billing")
        again = parse(client.get("/metrics").text)
        assert value(again, "crewdesk_gate_refusals_total", tool="issue_refund") == 2 and value(again, "crewdesk_gate_refusals_total", tool="kb_search") == 2
        assert value(again, "crewdesk_tool_calls_total", tool="find_user_id_by_email", outcome="ok") == 2
        assert value(again, "crewdesk_tickets", status="resolved", channel="email", category="billing") == 3
        assert value(again, "crewdesk_tickets", status="queued", channel="email", category="none") is None

    assert "/metrics" not in app.openapi()["paths"]  # not part of the public API schema


def test_a_dead_broker_or_breaker_is_reported_not_raised(settings, session_factory, make_ticket, monkeypatch):
    make_ticket()
    settings = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{free_port()}/0"})  # nothing listens there

    def states(_settings):
        raise RuntimeError("breaker store unreachable")

    monkeypatch.setitem(sys.modules, "crewdesk.llm.breaker", types.SimpleNamespace(states=states))
    with TestClient(create_app(settings, session_factory=session_factory, send=lambda _ticket_ids: None), headers=SCRAPER(session_factory)) as client:
        samples = parse(client.get("/metrics").text)
    assert value(samples, "crewdesk_metrics_source_up", source="broker") == 0 and value(samples, "crewdesk_metrics_source_up", source="breaker") == 0
    assert value(samples, "crewdesk_metrics_source_up", source="database") == 1
    assert value(samples, "crewdesk_tickets", status="received", channel="test", category="none") == 1
    assert not any(name in ("crewdesk_queue_depth", "crewdesk_llm_breaker_open") for name, _ in samples)


def test_breaker_contract(settings, session_factory, monkeypatch):
    """crewdesk.llm.breaker is another part's module (it may not exist yet): the contract is exercised with stand-ins."""

    def scrape():
        with TestClient(create_app(settings, session_factory=session_factory, send=lambda _ticket_ids: None), headers=SCRAPER(session_factory)) as client:
            return parse(client.get("/metrics").text)

    monkeypatch.setitem(sys.modules, "crewdesk.llm.breaker", None)  # no such module: nothing exported for it
    samples = scrape()
    assert not any(name == "crewdesk_llm_breaker_open" for name, _ in samples) and value(samples, "crewdesk_metrics_source_up", source="breaker") is None

    monkeypatch.setitem(sys.modules, "crewdesk.llm.breaker", types.SimpleNamespace())  # a module without states(): nothing either
    assert not any(name == "crewdesk_llm_breaker_open" for name, _ in scrape())

    seen = []
    monkeypatch.setitem(
        sys.modules,
        "crewdesk.llm.breaker",
        types.SimpleNamespace(states=lambda s: seen.append(s) or {"openai": "open", "local": "closed", "anthropic": "half-open"}),
    )
    samples = scrape()
    assert seen and seen[0] is settings
    assert value(samples, "crewdesk_llm_breaker_open", provider="openai") == 1
    assert value(samples, "crewdesk_llm_breaker_open", provider="anthropic") == 0.5
    assert value(samples, "crewdesk_llm_breaker_open", provider="local") == 0
    assert value(samples, "crewdesk_metrics_source_up", source="breaker") == 1


def test_audit_tally_settles_late_and_counts_a_late_commit(session_factory, make_ticket, engine):
    """Ids are taken in one order and committed in another (each ticket's chain has its own lock): a row committed
    after a higher id was already counted is still counted, because only ids older than the settle time are final."""
    first, second = make_ticket(external_id="x1"), make_ticket(external_id="x2")
    tally = AuditTally(settle_seconds=100)
    with transaction(session_factory) as db:
        audit.record(db=db, ticket_id=first, kind="tool_call", name="get_order_details", actor="billing")
    with session_factory() as db:
        assert tally.advance(db, now=0) == {("get_order_details", "ok"): 1} and tally.settled_id == 0

    slow = session_factory()
    slow.begin()
    audit.record(db=slow, ticket_id=first, kind="gate", name="denied:kb_search", actor="routing", error="no")
    slow.flush()  # its id is taken, not committed
    try:
        with transaction(session_factory) as db:
            db.execute(text("SET LOCAL lock_timeout = '3s'"))
            audit.record(db=db, ticket_id=second, kind="tool_call", name="get_order_details", actor="billing")
    except Exception as exc:  # noqa: BLE001 - appends serialised by one global lock: ids cannot commit out of order
        slow.rollback()
        slow.close()
        pytest.skip(f"audit appends are serialised globally here, so there is no out-of-order commit to count ({type(exc).__name__})")
    with session_factory() as db:
        assert tally.advance(db, now=150) == {("get_order_details", "ok"): 2}  # settles to the id seen at t=0 only
    slow.commit()
    slow.close()
    with session_factory() as db:
        assert tally.advance(db, now=160) == {("get_order_details", "ok"): 2, ("kb_search", "denied"): 1}
        assert tally.advance(db, now=400) == {("get_order_details", "ok"): 2, ("kb_search", "denied"): 1}
        top = db.execute(select(func.max(column("id"))).select_from(table("audit_events"))).scalar_one()
    assert tally.settled_id == top  # everything seen by t=160 is settled at t=400


# --- workers: multiprocess mode --------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import os, sys
    from crewdesk.db import make_engine, make_session_factory
    from crewdesk.metrics import worker as wm
    factory = make_session_factory(make_engine(os.environ["CREWDESK_DATABASE_URL"]))
    ticket_id, last_run, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "hold"
    with factory() as db:
        counted = wm.after_task(db, wm.Before(ticket_id=ticket_id, last_run_id=last_run, had_reply=False))
    wm.worker_metrics().in_progress.inc()
    print(counted, os.getpid(), flush=True)
    if hold:
        sys.stdin.read()
""")


def add_run(db, ticket_id: int, *, outcome: str, tokens=(0, 0, 0), calls=0, llm_seconds=0.0, cost=0.0, latency=None, finished=None) -> int:
    run = CrewRun(
        ticket_id=ticket_id,
        status="completed" if finished else "running",
        outcome=outcome if finished else None,
        tokens_in=tokens[0],
        tokens_out=tokens[1],
        tokens_cached=tokens[2],
        llm_calls=calls,
        llm_seconds=llm_seconds,
        cost_usd=cost,
        latency_s=latency,
        finished_at=finished,
    )
    db.add(run)
    db.flush()
    return run.id


def test_two_processes_write_one_aggregated_scrape(session_factory, make_ticket, pg_url, tmp_path):
    created = datetime(2025, 5, 1, 12, tzinfo=UTC)
    a, b = make_ticket(external_id="ma", source="email"), make_ticket(external_id="MB-1", source="jira")
    set_ticket(session_factory, a, status="resolved", created_at=created)
    set_ticket(session_factory, b, status="escalated", created_at=created)
    with transaction(session_factory) as db:
        db.add(Message(ticket_id=a, direction="outbound", body="done", created_at=created + timedelta(seconds=30)))
        add_run(db, a, outcome="resolved", tokens=(100, 20, 60), calls=3, llm_seconds=1.5, cost=0.002, latency=4.0, finished=created + timedelta(seconds=45))
        add_run(db, a, outcome="resolved", tokens=(999, 999, 0))  # still running: not counted
        older = add_run(db, b, outcome="failed", tokens=(1000, 1000, 0), calls=9, latency=9.0, finished=created + timedelta(seconds=5))  # before the task
        add_run(db, b, outcome="escalated", tokens=(50, 10, 0), calls=1, llm_seconds=0.5, cost=0.001, latency=2.0, finished=created + timedelta(seconds=100))
        add_run(db, b, outcome="escalated", tokens=(70, 5, 20), calls=2, llm_seconds=0.25, cost=0.0005, latency=1.0, finished=created + timedelta(seconds=200))

    directory = tmp_path / "prom"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "CREWDESK_DATABASE_URL": pg_url}
    holder = subprocess.Popen([sys.executable, "-c", CHILD, str(a), "0", "hold"], env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().split()[0] == "1"
        done = subprocess.run([sys.executable, "-c", CHILD, str(b), str(older), "exit"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.split()[0] == "2", done.stderr
        assert len(list(directory.glob("*.db"))) >= 4  # counters, histograms and live gauges of two pids

        server = wm.serve(0, directory)
        try:
            url = f"http://127.0.0.1:{server.server_port}/metrics"
            samples = parse(get(url))
            assert value(samples, "crewdesk_llm_tokens_total", kind="prompt") == 220
            assert value(samples, "crewdesk_llm_tokens_total", kind="cached") == 80
            assert value(samples, "crewdesk_llm_tokens_total", kind="completion") == 35
            assert value(samples, "crewdesk_llm_calls_total") == 6
            assert value(samples, "crewdesk_llm_seconds_total") == pytest.approx(2.25)
            assert value(samples, "crewdesk_llm_cost_usd_total") == pytest.approx(0.0035)
            assert value(samples, "crewdesk_runs_total", outcome="resolved") == 1 and value(samples, "crewdesk_runs_total", outcome="escalated") == 2
            assert value(samples, "crewdesk_run_seconds_count") == 3 and value(samples, "crewdesk_run_seconds_sum") == pytest.approx(7.0)
            assert value(samples, "crewdesk_ticket_first_reply_seconds_count", channel="email") == 1
            assert value(samples, "crewdesk_ticket_first_reply_seconds_sum", channel="email") == pytest.approx(30)
            assert value(samples, "crewdesk_ticket_first_reply_seconds_count", channel="jira") is None  # no reply yet
            assert value(samples, "crewdesk_ticket_handle_seconds_sum", channel="email", status="resolved") == pytest.approx(45)
            assert value(samples, "crewdesk_ticket_handle_seconds_sum", channel="jira", status="escalated") == pytest.approx(200)
            assert value(samples, "crewdesk_ticket_handle_seconds_bucket", channel="jira", status="escalated", le="120.0") == 0
            assert value(samples, "crewdesk_ticket_handle_seconds_bucket", channel="jira", status="escalated", le="300.0") == 1
            # live gauge: the exited process's file is dropped at scrape time; the holder's counts
            assert value(samples, "crewdesk_worker_tickets_in_progress") == 1
            assert set(names(samples)) <= DOCUMENTED

            holder.stdin.close()
            holder.wait(30)
            samples = parse(get(url))
            assert value(samples, "crewdesk_worker_tickets_in_progress") in (0, None)
            assert value(samples, "crewdesk_llm_tokens_total", kind="prompt") == 220  # counters outlive their process
        finally:
            server.shutdown()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def test_prepare_multiproc_dir_cleans_and_defaults_under_home(settings, tmp_path, monkeypatch):
    from prometheus_client import values

    # prepare_multiproc_dir sets the variable and switches prometheus_client to files: undo both after this test
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.setenv(wm.MULTIPROC_ENV, "unset-after-the-test")
    monkeypatch.delenv(wm.MULTIPROC_ENV)
    home_settings = settings.model_copy(update={"home": tmp_path / "home"})
    stale = tmp_path / "home" / "prometheus" / "counter_123.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    (stale.parent / "keep.txt").write_text("not ours")
    path = wm.prepare_multiproc_dir(home_settings)
    assert path == tmp_path / "home" / "prometheus" and os.environ[wm.MULTIPROC_ENV] == str(path)
    assert not stale.exists() and (stale.parent / "keep.txt").exists()
    monkeypatch.setenv(wm.MULTIPROC_ENV, str(tmp_path / "elsewhere"))
    assert wm.prepare_multiproc_dir(home_settings) == tmp_path / "elsewhere" and (tmp_path / "elsewhere").is_dir()
    assert values.ValueClass is not values.MutexValue  # metrics created from now on in this process write files


def test_real_worker_serves_what_its_children_counted(settings, session_factory, make_ticket, worker_env, tmp_path):
    """`crewdesk worker --metrics-port`: a prefork child processes a ticket (scripted model), the parent serves the
    child's counters, and they equal the run's crew_runs row."""
    port = free_port()
    log = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [CREWDESK, "worker", "--concurrency", "1", "--metrics-port", str(port)],
        env=worker_env,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while b"ready." not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        ticket_id = make_ticket(source="email")
        helpers.enqueue(settings, ticket_id)
        ticket = helpers.wait_for(session_factory, helpers.terminal(ticket_id), timeout=180, what="the ticket to finish")
        with session_factory() as db:
            run = db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket_id)).scalar_one()
            replies = db.execute(select(Message).where(Message.ticket_id == ticket_id, Message.direction == "outbound")).scalars().all()
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 30
        while True:
            samples = parse(get(url))
            done = value(samples, "crewdesk_runs_total", outcome=run.outcome) and value(samples, "crewdesk_worker_tickets_in_progress") == 0
            if done or time.monotonic() > deadline:  # the task's counts are complete once it is no longer in progress
                break
            time.sleep(0.3)
        assert value(samples, "crewdesk_runs_total", outcome=run.outcome) == 1
        assert run.llm_calls > 0 and value(samples, "crewdesk_llm_calls_total") == run.llm_calls
        assert value(samples, "crewdesk_llm_tokens_total", kind="prompt") == run.tokens_in
        assert value(samples, "crewdesk_llm_tokens_total", kind="completion") == run.tokens_out
        assert value(samples, "crewdesk_llm_seconds_total") == pytest.approx(run.llm_seconds)
        assert value(samples, "crewdesk_run_seconds_count") == 1 and value(samples, "crewdesk_run_seconds_sum") == pytest.approx(run.latency_s)
        assert value(samples, "crewdesk_ticket_handle_seconds_count", channel="email", status=ticket.status) == 1
        assert value(samples, "crewdesk_ticket_first_reply_seconds_count", channel="email") == (1 if replies else None)
        assert value(samples, "crewdesk_worker_tickets_in_progress") == 0
        assert list((Path(worker_env["CREWDESK_HOME"]) / "prometheus").glob("counter_*.db"))  # the default directory, under CREWDESK_HOME
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


# --- a real Prometheus, and the deploy/ configuration ----------------------------------------------------------


def test_real_prometheus_scrapes_the_api(settings, session_factory, populated, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed (scripts/services.sh installs Debian's package when it can)")
    import uvicorn

    api_port, prom_port = free_port(), free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, session_factory=session_factory, send=lambda _ticket_ids: None), host="127.0.0.1", port=api_port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "crewdesk-api",
                        "authorization": {"type": "Bearer", "credentials": api_key(session_factory, "prometheus", ("metrics:read",))},
                        "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}],
                    }
                ],
            }
        )
    )
    log = tmp_path / "prometheus.log"
    prom = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        query = urllib.request.quote('crewdesk_tickets{status="resolved",channel="email"}')
        deadline, result = time.monotonic() + 60, []
        while not result:
            assert prom.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
            try:
                answer = json.loads(get(f"http://127.0.0.1:{prom_port}/api/v1/query?query={query}"))
            except OSError:
                continue
            result = answer["data"]["result"]
        assert result[0]["metric"]["job"] == "crewdesk-api" and result[0]["metric"]["category"] == "billing" and result[0]["value"][1] == "2"
        refusals = json.loads(get(f"http://127.0.0.1:{prom_port}/api/v1/query?query=crewdesk_gate_refusals_total"))["data"]["result"]
        assert [(r["metric"]["tool"], r["value"][1]) for r in refusals] == [("kb_search", "2")]
    finally:
        prom.terminate()
        prom.wait(30)
        server.should_exit = True
        thread.join(10)


def test_deploy_config_is_valid_and_names_real_metrics(tmp_path):
    deploy = ROOT / "deploy"
    config = yaml.safe_load((deploy / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {"crewdesk-api": ["api:8000"], "crewdesk-worker": ["worker:9101"]} and config["rule_files"] == ["alerts.yml"]
    rules = yaml.safe_load((deploy / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {"CrewdeskQueueBacklog", "CrewdeskLLMBreakerOpen", "CrewdeskApprovalsWaitingTooLong"}
    dashboard = json.loads((deploy / "grafana" / "dashboards" / "crewdesk.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]] + [r["expr"] for r in rules]
    used = {re.sub(r"_(total|bucket|sum|count)$", "", name) for expr in exprs for name in re.findall(r"crewdesk_[a-z_]+", expr)}
    assert used <= DOCUMENTED, used - DOCUMENTED
    assert {"crewdesk_tickets", "crewdesk_queue_depth", "crewdesk_llm_breaker_open", "crewdesk_ticket_handle_seconds", "crewdesk_llm_tokens"} <= used
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"prometheus", "grafana", "flower"} <= set(compose) and compose["worker"]["command"][-2:] == ["--metrics-port", "9101"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in compose["prometheus"]["volumes"]
    provider = yaml.safe_load((deploy / "grafana" / "provisioning" / "dashboards" / "crewdesk.yml").read_text())["providers"][0]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in compose["grafana"]["volumes"]

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: the YAML was parsed and checked, not validated by Prometheus")
    # promtool checks that the bearer token's file exists: the compose secret stands at a temporary path here
    assert config["scrape_configs"][0]["authorization"]["credentials_file"] == "/run/secrets/crewdesk_metrics_key"
    assert compose["prometheus"]["secrets"] == ["crewdesk_metrics_key"]
    checkable = tmp_path / "prometheus"
    shutil.copytree(deploy / "prometheus", checkable)
    (tmp_path / "key").write_text("cdk_x_y")
    (checkable / "prometheus.yml").write_text((checkable / "prometheus.yml").read_text().replace("/run/secrets/crewdesk_metrics_key", str(tmp_path / "key")))
    checked = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=checkable, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and "5 rules found" in checked.stdout + checked.stderr, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=deploy / "prometheus", capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
