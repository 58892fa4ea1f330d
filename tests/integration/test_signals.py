"""Ctrl-C and SIGTERM on `crewdesk run` and `crewdesk eval`, and SIGKILL, on real processes.

The model is tests/fake_llama_server.py, a stand-in for llama.cpp's llama-server (which takes minutes to load and answer
here): crewdesk starts it through its real start-up path (crewdesk/llm/local.py, CREWDESK_LOCAL_SERVER_BIN) and talks to
it over HTTP as to llama.cpp. It is slow on purpose from a chosen request on, so each signal lands while a model call is
in flight. Everything else is real: the crewdesk process, PostgreSQL or the SQLite quickstart, the crew, the gate, the
demo store. What a test measures: the exit status, how long the process took to go after the signal (the acceptance is
5 s), that no process of the model server is left, that the ticket is left resumable, and that running on finishes it
with its write made once.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.audit.models import AuditEvent
from crewdesk.db import make_engine, make_session_factory
from crewdesk.effects.models import ToolEffect
from crewdesk.runs.models import CrewRun
from crewdesk.store.models import StoreOrder, StoreUser
from crewdesk.tickets.models import Message, Ticket
from tests.helpers import CREWDESK, ROOT
from tests.servers import free_port

FAKE_SERVER = ROOT / "tests" / "fake_llama_server.py"
GONE_WITHIN = 5.0  # the acceptance: the process has gone within 5 s of the signal


class Model:
    """The stand-in model server's side of a test: the environment that points crewdesk at it, its pid and its events."""

    def __init__(self, root: Path) -> None:
        self.state = root / "fake-llama"
        self.state.mkdir(parents=True, exist_ok=True)
        (root / "model.gguf").write_bytes(b"GGUF stand-in")  # the stand-in checks --model names a file, as llama-server does
        self.env = {
            "CREWDESK_LLM_PROVIDER": "local",
            "CREWDESK_LOCAL_SERVER_BIN": str(FAKE_SERVER),
            "CREWDESK_LOCAL_MODEL_PATH": str(root / "model.gguf"),
            "CREWDESK_LOCAL_PORT": str(free_port()),
            "CREWDESK_LOCAL_START_TIMEOUT": "60",
            "FAKE_LLAMA_STATE": str(self.state),
        }

    def events(self) -> list[str]:
        path = self.state / "events"
        return path.read_text().splitlines() if path.exists() else []

    def wait_for(self, event: str, proc: subprocess.Popen, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if event in self.events():
                return
            if proc.poll() is not None:
                pytest.fail(f"crewdesk ended ({proc.returncode}) before the model saw {event!r}; events {self.events()}")
            time.sleep(0.1)
        pytest.fail(f"the model never saw {event!r}; events {self.events()}")

    def pid(self) -> int:
        return int((self.state / "pid").read_text())

    def forget(self) -> None:
        """A new crewdesk process starts a new server: its events start afresh."""
        for name in ("events", "pid"):
            (self.state / name).unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie (dead, waiting for whoever inherited it to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


@pytest.fixture
def processes():
    """Every process a test starts, SIGKILLed (with its model server) if the test leaves it running."""
    started: list[tuple[subprocess.Popen, Model]] = []
    yield started
    for proc, model in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if (model.state / "pid").exists() and alive(model.pid()):
            os.kill(model.pid(), signal.SIGKILL)


class Crewdesk:
    """`crewdesk ARGS` in the background, its output in files."""

    def __init__(self, args: list[str], env: dict[str, str], out: Path, processes: list, model: Model) -> None:
        self.out, self.err = out.with_suffix(".out"), out.with_suffix(".err")
        with self.out.open("wb") as stdout, self.err.open("wb") as stderr:
            # Its own session, as a terminal's job would be, so that the fixture can end it with everything it started.
            self.proc = subprocess.Popen([CREWDESK, *args], env=env, cwd=ROOT, stdout=stdout, stderr=stderr, start_new_session=True)
        processes.append((self.proc, model))

    def signal_and_wait(self, signum: int) -> float:
        """Send `signum` to crewdesk alone (not its group: the model server is in its own session anyway); the seconds
        until it exited."""
        sent = time.monotonic()
        os.kill(self.proc.pid, signum)
        self.proc.wait(60)
        return time.monotonic() - sent

    @property
    def stderr(self) -> str:
        return self.err.read_text()


def env_for(model: Model, home: Path, database_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **model.env,
        "CREWDESK_HOME": str(home),
        "CREWDESK_DATABASE_URL": database_url,
        "CREWDESK_PROCEDURES": "false",  # the crew path: triage, then the billing specialist, who may call the store's tools
        "CREWDESK_MEMORY_BACKEND": "off",
        "CREWDESK_APPROVAL_THRESHOLD_USD": "-1",  # the cancellation is written at once, not held for a person
        "CREWDESK_LOG_JSON": "false",
        **extra,
    }


def tickets_file(tmp_path: Path, order_id: str, email: str) -> Path:
    """A cancellation (whose specialist writes to the store, then answers) and a question after it, never started."""
    path = tmp_path / "tickets.jsonl"
    rows = [
        {"id": "SIG-1", "customer": email, "subject": "Cancel my order", "body": f"Please cancel order {order_id}, I no longer need it."},
        {"id": "SIG-2", "customer": "someone@example.com", "subject": "Invoice", "body": "Could you send me a copy of my last invoice?"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def pending_order(factory: sessionmaker[Session]) -> tuple[str, str]:
    with factory() as db:
        order = db.execute(select(StoreOrder).where(StoreOrder.status == "pending").order_by(StoreOrder.order_id).limit(1)).scalar_one()
        return order.order_id, db.execute(select(StoreUser.email).where(StoreUser.user_id == order.user_id)).scalar_one()


def ticket_state(factory: sessionmaker[Session], external_id: str) -> dict:
    with factory() as db:
        ticket = db.execute(select(Ticket).where(Ticket.external_id == external_id)).scalar_one()
        runs = db.execute(select(CrewRun.status).where(CrewRun.ticket_id == ticket.id).order_by(CrewRun.id)).scalars().all()
        effects = db.execute(select(func.count()).select_from(ToolEffect).where(ToolEffect.ticket_id == ticket.id)).scalar_one()
        trail = db.execute(select(AuditEvent.name, AuditEvent.actor).where(AuditEvent.ticket_id == ticket.id).order_by(AuditEvent.id)).all()
        replies = db.execute(select(func.count()).select_from(Message).where(Message.ticket_id == ticket.id, Message.direction == "outbound")).scalar_one()
        return {"id": ticket.id, "status": str(ticket.status), "runs": [str(r) for r in runs], "effects": effects, "trail": trail, "replies": replies}


def refunds(factory: sessionmaker[Session], order_id: str) -> tuple[str, int]:
    with factory() as db:
        order = db.get(StoreOrder, order_id)
        assert order is not None
        return order.status, sum(1 for p in order.doc["payment_history"] if p["transaction_type"] == "refund")


def interrupted_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted by ")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def run_to_the_end(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([CREWDESK, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_sigint_mid_ticket_exits_within_5_s_and_the_same_command_finishes_the_ticket_once(store, pg_url, redis_url, tmp_path, processes):
    order_id, email = pending_order(store)
    path = tickets_file(tmp_path, order_id, email)
    model = Model(tmp_path)
    env = env_for(model, tmp_path / "home", pg_url, CREWDESK_BROKER_URL=redis_url, FAKE_LLAMA_TOOL="cancel_pending_order")
    # Requests: 1 triage, 2 the specialist cancels the order, 3 its answer: stalled, so the signal finds the write made
    # and a model call in flight.
    run = Crewdesk(["run", str(path)], {**env, "FAKE_LLAMA_STALL_FROM": "3"}, tmp_path / "first", processes, model)
    model.wait_for("stalling 3", run.proc)
    server = model.pid()
    before = ticket_state(store, "SIG-1")
    assert before["status"] == "in_progress" and before["runs"] == ["running"] and before["effects"] == 1
    assert refunds(store, order_id) == ("cancelled", 1)

    took = run.signal_and_wait(signal.SIGINT)

    assert run.proc.returncode == 130, run.stderr[-3000:]
    assert took < GONE_WITHIN, f"crewdesk run took {took:.1f} s to exit after SIGINT"
    assert gone_within(server, GONE_WITHIN), "the model server outlived crewdesk run"
    line = interrupted_line(run.stderr)
    after = ticket_state(store, "SIG-1")
    with store() as db:
        run_id = db.execute(select(CrewRun.id).where(CrewRun.ticket_id == after["id"])).scalar_one()
    assert line == (
        f"interrupted by SIGINT: ticket {after['id']} (file:SIG-1) is queued again, its run {run_id} marked interrupted. To carry on: crewdesk run {path}"
    ), line
    assert "Traceback" not in run.stderr
    assert after["status"] == "queued" and after["runs"] == ["interrupted"] and after["effects"] == 1
    assert ("run_interrupted", "cli") in after["trail"]
    assert ticket_state(store, "SIG-2")["status"] == "received"  # never started: the next run takes it too

    model.forget()
    again = run_to_the_end(["run", str(path)], env)

    assert "2 tickets: resolved 2" in again.stdout, again.stdout[-3000:]
    done = ticket_state(store, "SIG-1")
    assert done["status"] == "resolved" and done["runs"] == ["interrupted", "completed"]
    assert done["effects"] == 1 and ("replayed:cancel_pending_order", "billing") in done["trail"]  # asked again, written once
    assert done["replies"] == 1
    assert refunds(store, order_id) == ("cancelled", 1)
    verified = subprocess.run([CREWDESK, "audit", "verify"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0 and "audit trail intact" in verified.stdout, verified.stdout + verified.stderr


def test_sigterm_mid_ticket_on_the_sqlite_quickstart(tmp_path, processes):
    model = Model(tmp_path)
    home = tmp_path / "home"
    env = env_for(model, home, "", FAKE_LLAMA_TOOL="cancel_pending_order")
    loaded = subprocess.run([CREWDESK, "demo", "load"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    engine = make_engine(f"sqlite:///{home / 'crewdesk.db'}")
    factory = make_session_factory(engine)
    try:
        order_id, email = pending_order(factory)
        path = tickets_file(tmp_path, order_id, email)
        run = Crewdesk(["run", str(path)], {**env, "FAKE_LLAMA_STALL_FROM": "3"}, tmp_path / "first", processes, model)
        model.wait_for("stalling 3", run.proc)
        server = model.pid()

        took = run.signal_and_wait(signal.SIGTERM)

        assert run.proc.returncode == 143, run.stderr[-3000:]
        assert took < GONE_WITHIN, f"crewdesk run took {took:.1f} s to exit after SIGTERM"
        assert gone_within(server, GONE_WITHIN), "the model server outlived crewdesk run"
        assert "is queued again" in interrupted_line(run.stderr)
        after = ticket_state(factory, "SIG-1")
        assert after["status"] == "queued" and after["runs"] == ["interrupted"] and after["effects"] == 1

        model.forget()
        again = run_to_the_end(["run", str(path)], env)
        assert "2 tickets: resolved 2" in again.stdout, again.stdout[-3000:]
        done = ticket_state(factory, "SIG-1")
        assert done["runs"] == ["interrupted", "completed"] and done["effects"] == 1 and done["replies"] == 1
        assert refunds(factory, order_id) == ("cancelled", 1)
    finally:
        engine.dispose()


def test_sigkill_of_crewdesk_run_takes_the_model_server_with_it(store, pg_url, redis_url, tmp_path, processes):
    """Nothing of crewdesk's runs after SIGKILL: the kernel ends the server (PR_SET_PDEATHSIG). The ticket stays as a
    dead worker would leave it, which its next run picks up (tests/integration/test_worker.py)."""
    order_id, email = pending_order(store)
    path = tickets_file(tmp_path, order_id, email)
    model = Model(tmp_path)
    env = env_for(model, tmp_path / "home", pg_url, CREWDESK_BROKER_URL=redis_url, FAKE_LLAMA_STALL_FROM="1")
    run = Crewdesk(["run", str(path)], env, tmp_path / "first", processes, model)
    model.wait_for("stalling 1", run.proc)
    server = model.pid()

    run.signal_and_wait(signal.SIGKILL)

    assert run.proc.returncode == -signal.SIGKILL
    assert gone_within(server, GONE_WITHIN), "the model server outlived a SIGKILLed crewdesk run"
    state = ticket_state(store, "SIG-1")
    assert state["status"] == "triaging" and state["runs"] == ["running"]


def test_a_second_signal_exits_at_once_and_the_next_run_still_finishes_the_ticket(store, pg_url, redis_url, tmp_path, processes):
    """The first SIGINT's bookkeeping waits for the ticket's row lock (held here by the test, as a stuck transaction
    would hold it); a second SIGINT does not wait for it. The run is then left `running`, as after a crash."""
    order_id, email = pending_order(store)
    path = tickets_file(tmp_path, order_id, email)
    model = Model(tmp_path)
    env = env_for(model, tmp_path / "home", pg_url, CREWDESK_BROKER_URL=redis_url, FAKE_LLAMA_TOOL="cancel_pending_order")
    run = Crewdesk(["run", str(path)], {**env, "FAKE_LLAMA_STALL_FROM": "3"}, tmp_path / "first", processes, model)
    model.wait_for("stalling 3", run.proc)
    server = model.pid()
    ticket_id = ticket_state(store, "SIG-1")["id"]
    plain_url = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain_url) as holder, psycopg.connect(plain_url, autocommit=True) as watcher:
        holder.execute("SELECT id FROM tickets WHERE id = %s FOR UPDATE", (ticket_id,))
        sent = time.monotonic()
        os.kill(run.proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> %s",
                (holder.info.backend_pid,),
            ).fetchone()
            if waiting and waiting[0]:
                break
            assert run.proc.poll() is None, run.stderr[-3000:]
            time.sleep(0.02)
        else:
            pytest.fail("crewdesk never waited for the ticket's lock")
        os.kill(run.proc.pid, signal.SIGINT)
        run.proc.wait(30)
        took = time.monotonic() - sent
        holder.rollback()

    assert run.proc.returncode == 130, run.stderr[-3000:]
    assert took < GONE_WITHIN, f"crewdesk run took {took:.1f} s to exit after two SIGINTs"
    assert "SIGINT again: exiting now" in run.stderr and "interrupted by SIGINT:" not in run.stderr, run.stderr[-3000:]
    assert gone_within(server, GONE_WITHIN), "the model server outlived crewdesk run"
    left = ticket_state(store, "SIG-1")
    assert left["status"] == "in_progress" and left["runs"] == ["running"]  # not recorded: the next run marks it

    model.forget()
    run_to_the_end(["run", str(path)], env)
    done = ticket_state(store, "SIG-1")
    assert done["status"] == "resolved" and done["runs"] == ["interrupted", "completed"] and done["effects"] == 1
    assert ("run_interrupted", "pipeline") in done["trail"]


def test_sigint_mid_evaluation_leaves_whole_journal_lines_and_resume_carries_on(tmp_path, processes):
    """tau2-bench retail, two tasks, on the SQLite quickstart: each trial is two model calls (triage, answer), so the
    stall from the third call is the second trial's first."""
    model = Model(tmp_path)
    home = tmp_path / "home"
    env = env_for(model, home, "")
    report = tmp_path / "reports" / "tau2.html"
    journal = report.with_suffix(".trials.jsonl")
    args = ["eval", "tau2-retail", "--limit", "2", "--report", str(report)]
    run = Crewdesk(args, {**env, "FAKE_LLAMA_STALL_FROM": "3"}, tmp_path / "first", processes, model)
    model.wait_for("stalling 3", run.proc)
    server = model.pid()
    assert len(journal.read_text().splitlines()) == 1  # the first trial finished, the second is in flight

    took = run.signal_and_wait(signal.SIGINT)

    assert run.proc.returncode == 130, run.stderr[-3000:]
    assert took < GONE_WITHIN, f"crewdesk eval took {took:.1f} s to exit after SIGINT"
    assert gone_within(server, GONE_WITHIN), "the model server outlived crewdesk eval"
    line = interrupted_line(run.stderr)
    assert "is queued again, its run" in line and line.endswith(f"To carry on: crewdesk eval tau2-retail --limit 2 --report {report} --resume"), line
    raw = journal.read_bytes()
    assert raw.endswith(b"\n") and [json.loads(x)["task_id"] for x in raw.decode().splitlines()] == ["0"]
    engine = make_engine(f"sqlite:///{home / 'crewdesk.db'}")
    try:
        with engine.connect() as conn:
            tables = set(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars())
            assert "store_orders_snapshot" not in tables  # the demo store was put back, as the evaluation's own end does
            stopped = conn.exec_driver_sql(
                "SELECT t.status, r.status FROM tickets t JOIN crew_runs r ON r.ticket_id = t.id WHERE t.external_id LIKE 'tau2-train-1-0-%'"
            ).all()
        assert stopped == [("queued", "interrupted")]
    finally:
        engine.dispose()

    model.forget()
    resumed = shlex.split(line.split("To carry on: ", 1)[1])
    assert resumed[0] == "crewdesk"
    run_to_the_end(resumed[1:], env)
    trials = [json.loads(x) for x in journal.read_text().splitlines()]
    assert [t["task_id"] for t in trials] == ["0", "1"]  # the finished trial kept, not run again; the stopped one run
    assert len(json.loads(report.with_suffix(".json").read_text())["trials"]) == 2
    assert sum(1 for event in model.events() if event.startswith("request ")) == 2  # the resumed run made only the second trial's calls


def test_a_model_call_to_a_server_crewdesk_did_not_start_does_not_hold_it(tmp_path, processes):
    """An OpenAI-compatible endpoint (OpenAI itself cannot be reached from here: the same stand-in plays it, started by
    the test) answers nothing for ten minutes, and nothing ends the call: SIGTERM still ends crewdesk within 5 s, and the
    server, not crewdesk's, is left running."""
    model = Model(tmp_path)
    endpoint = subprocess.Popen(
        [str(FAKE_SERVER), "--model", str(tmp_path / "model.gguf"), "--alias", "gpt-4o", "--port", model.env["CREWDESK_LOCAL_PORT"]],
        env={**os.environ, "FAKE_LLAMA_STATE": str(model.state), "FAKE_LLAMA_STALL_FROM": "1"},
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    processes.append((endpoint, model))
    path = tmp_path / "tickets.jsonl"
    path.write_text(json.dumps({"id": "API-1", "body": "Could you send me a copy of my last invoice?"}) + "\n")
    env = env_for(
        model, tmp_path / "home", "", CREWDESK_LLM_PROVIDER="openai", CREWDESK_OPENAI_BASE_URL=f"http://127.0.0.1:{model.env['CREWDESK_LOCAL_PORT']}/v1"
    )
    run = Crewdesk(["run", str(path)], env, tmp_path / "first", processes, model)
    model.wait_for("stalling 1", run.proc)

    took = run.signal_and_wait(signal.SIGTERM)

    assert run.proc.returncode == 143, run.stderr[-3000:]
    assert took < GONE_WITHIN, f"crewdesk run took {took:.1f} s to exit after SIGTERM"
    assert "ticket 1 (file:API-1) is queued again, its run 1 marked interrupted" in interrupted_line(run.stderr)
    assert endpoint.poll() is None and alive(model.pid())  # not crewdesk's to stop
