"""Fault-injection suite: 200 tickets that make real writes, on a real `crewdesk worker` (2 processes), while its servers
are killed and restarted by their own commands, one fault after another. Then: was every ticket finished, once?

  .venv/bin/python bench/faults.py [--tickets 200] [--concurrency 2] [--latency-ms 250] [--redis-persistent] [--no-faults]

Set-up (everything private to the run, on free ports, removed at the end; the shared PostgreSQL on 5432 and Redis on 6379
are never touched):
- PostgreSQL: a throwaway cluster (tests/servers.PrivatePostgres: initdb, pg_ctl), migrated, the demo retail store loaded;
- Redis: a private redis-server (tests/servers.PrivateRedis), without persistence unless --redis-persistent (AOF, as
  docker-compose runs it);
- the model: bench/fake_model.py, an OpenAI-compatible server in its own process that answers as the scripted model does
  (crews/eval_oracle.py `oracle` plans: identify the customer by e-mail, read the order, cancel it or return an item,
  answer), reached over HTTP by provider `openai`, so its endpoint can fail. No fallback model (the local llama.cpp model
  is too slow on 2 shared cores to stand in for a minute); so with the endpoint down every ticket is deferred;
- tickets: one per store customer (half ask to cancel a pending order, half to return an item of a delivered order), the
  customer's e-mail as ticket.customer; procedures off (the crew path: the model's tool calls make the writes), approvals
  off (threshold -1) so every write is made, memory off;
- `crewdesk worker --concurrency 2` (with beat: the reconciler every 5 s, for tickets unmoved 20 s), visibility timeout
  50 s (task time limit 40 s) (a killed worker's unacked tickets come back), breaker: 3 failures, 10 s reset, model timeout 4 s.

Faults, in order, while the tickets run:
1. SIGKILL one worker child; after the pool replaced it and tickets move again, SIGKILL the worker's whole process group
   (parent, children, beat) and start a new worker;
2. restart Redis (SHUTDOWN NOSAVE, start): without persistence the queue and the unacked messages are gone;
3. restart PostgreSQL (`pg_ctl restart -m fast`): every connection is cut;
4. the model endpoint answers 429 with Retry-After, then 500s, then hangs past the client timeout (20 s each);
5. SIGKILL the fake model server, and start it again 10 s later.

Then every ticket must be terminal; the figures (lost, duplicate writes, duplicate replies, the audit chain, time to
drain, deferrals, reconciler requeues) are printed and written to bench/results/faults-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="crewdesk-faults-"))
HOME = WORK / "home"
HOME.mkdir()
os.environ.update(
    CREWAI_DISABLE_TELEMETRY="true",
    OTEL_SDK_DISABLED="true",
    CREWAI_TRACING_ENABLED="false",
    CREWAI_TESTING="true",
    CREWAI_STORAGE_DIR=str(HOME / "crewai"),
    CREWDESK_HOME=str(HOME),
    CREWDESK_LOG_LEVEL="WARNING",
)

import redis
from sqlalchemy import String, cast, func, select

from crewdesk.audit.models import AuditEvent
from crewdesk.db import make_engine, make_session_factory, transaction
from crewdesk.effects.models import ToolEffect
from crewdesk.migrate import upgrade
from crewdesk.runs.models import CrewRun
from crewdesk.store.models import StoreOrder
from crewdesk.store.service import DEFAULT_DB_JSON, load_store, read_store
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket
from crewdesk.tickets.schemas import TicketIn
from tests.servers import PrivatePostgres, PrivateRedis, free_port

CREWDESK = str(Path(sys.executable).parent / "crewdesk")
TERMINAL = ("resolved", "escalated", "failed")
LLM_TIMEOUT = 4.0
DONE = {
    "customer_reply": "Thank you for your patience; your request has been handled as discussed.",
    "internal_note": "fault bench",
    "needs_human": False,
    "escalation_reason": "",
}
HANDOFF = {"customer_reply": "A colleague will follow up with you shortly.", "handoff_summary": "Customer asked for a person.", "team": "tier2"}
_T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {text}", flush=True)


# -- tickets and the model's plans ----------------------------------------------------------------------------------------


def choose_tickets(data: dict, n: int) -> list[dict]:
    """n tickets from n different customers: the first half cancel a pending order, the rest return the first item of a
    delivered order to the original payment method. Each with the plan the model follows (as crews/eval_oracle.oracle)."""
    users = data["users"]
    pending, delivered, seen = [], [], set()
    for order in sorted(data["orders"].values(), key=lambda o: o["order_id"]):
        if order["user_id"] in seen or len(order["payment_history"]) != 1:
            continue
        if order["status"] == "pending" and len(pending) < n - n // 2:
            pending.append(order)
            seen.add(order["user_id"])
        elif order["status"] == "delivered" and len(delivered) < n // 2:
            delivered.append(order)
            seen.add(order["user_id"])
    chosen = []
    for i, order in enumerate(pending + delivered):
        email = users[order["user_id"]]["email"]
        item = order["items"][0]
        if order["status"] == "pending":
            write = ("cancel_pending_order", {"order_id": order["order_id"], "reason": "no longer needed"})
            body = f"Hello, please cancel my order {order['order_id']}, I no longer need it. My account e-mail is {email}. Thanks."
            subject = "Cancel my order"
        else:
            write = (
                "return_delivered_order_items",
                {"order_id": order["order_id"], "item_ids": [item["item_id"]], "payment_method_id": order["payment_history"][0]["payment_method_id"]},
            )
            body = (
                f"Hi, I want to return the {item['name'].lower()} (item {item['item_id']}) from my order {order['order_id']} and get a refund "
                f"to my original payment method. My account e-mail is {email}."
            )
            subject = "Return an item"
        steps = [("find_user_id_by_email", {"email": email}), ("get_order_details", {"order_id": order["order_id"]}), write]
        plan = {
            "triage": {"category": "billing", "priority": "normal", "summary": subject, "confidence": 0.9},
            "plans": {"billing": steps, "escalation": []},
            "finals": {"billing": DONE, "escalation": HANDOFF},
        }
        chosen.append(
            {
                "external_id": f"F-{i:03d}",
                "customer": email,
                "subject": subject,
                "body": body,
                "order_id": order["order_id"],
                "write": write[0],
                "payments": len(order["payment_history"]),
                "plan": plan,
            }
        )
    if len(chosen) < n:
        raise SystemExit(f"the store has only {len(chosen)} customers with a single-payment pending or delivered order")
    return chosen


# -- processes --------------------------------------------------------------------------------------------------------------


class FakeModel:
    def __init__(self, plans: Path, latency_ms: int, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, str(ROOT / "bench" / "fake_model.py"), "--port", str(self.port), "--plans", str(plans), "--latency-ms", str(latency_ms)]
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> FakeModel:
        self.proc = subprocess.Popen(self.args, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.get("/stats")
                return self
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()[-2000:]
                time.sleep(0.2)
        raise RuntimeError("fake model did not start")

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())

    def control(self, **mode: object) -> None:
        request = urllib.request.Request(self.url + "/control", data=json.dumps(mode).encode(), headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).read()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class Worker:
    """`crewdesk worker --concurrency N` in its own process group, logging to its own file."""

    def __init__(self, env: dict[str, str], log: Path, concurrency: int) -> None:
        self.env, self.log, self.concurrency = env, log, concurrency
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        self.proc = subprocess.Popen(
            [CREWDESK, "worker", "--concurrency", str(self.concurrency), "--loglevel", "INFO"],
            env=self.env,
            cwd=ROOT,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if b"ready." in self.log.read_bytes():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("worker exited:\n" + self.log.read_text()[-3000:])
            time.sleep(0.2)
        raise RuntimeError("worker did not start:\n" + self.log.read_text()[-3000:])

    def children(self) -> list[int]:
        """Pool children that logged worker.child_ready and are alive children of this worker."""
        found = []
        for pid in self._ready_pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                found.append(pid)
        return found

    def _ready_pids(self) -> list[int]:
        pids = []
        for line in self.log.read_text(errors="replace").splitlines():
            if "worker.child_ready" in line:
                match = re.search(r'"pid":\s*(\d+)', line)
                if match:
                    pids.append(int(match.group(1)))
        return pids

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


# -- observation --------------------------------------------------------------------------------------------------------------


class Monitor:
    """Status counts of the run's tickets, sampled every second (a sample fails while PostgreSQL restarts: skipped)."""

    def __init__(self, session_factory, ids: list[int]) -> None:
        self.session_factory, self.ids = session_factory, ids
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def counts(self) -> dict[str, int]:
        with self.session_factory() as db:
            return dict(db.execute(select(Ticket.status, func.count()).where(Ticket.id.in_(self.ids)).group_by(Ticket.status)).all())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic() - _T0, self.counts()))
            except Exception:  # noqa: BLE001, S110  (the database is restarting: skip this sample)
                pass
            self._stop.wait(1.0)

    def terminal(self) -> int:
        last = self.samples[-1][1] if self.samples else {}
        return sum(n for s, n in last.items() if s in TERMINAL)

    def last(self) -> dict[str, int]:
        return self.samples[-1][1] if self.samples else {}

    def wait(self, predicate, timeout: float, what: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if predicate():
                return time.monotonic() - started
            time.sleep(0.5)
        say(f"  (timed out after {timeout:.0f} s waiting for {what}: {self.last()})")
        return -1.0

    def progress(self, more: int, timeout: float, what: str) -> float:
        """Seconds until `more` further tickets are terminal (or all are)."""
        target = min(len(self.ids), self.terminal() + more)
        return self.wait(lambda: self.terminal() >= target, timeout, what)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)


def log_events(logs: list[Path]) -> Counter:
    """Counts of the worker's structured log events that tell what happened (all workers of the run)."""
    wanted = (
        "ticket.deferred",
        "ticket.transient_error",
        "ticket.busy_elsewhere",
        "reconcile.requeued",
        "breaker.state",
        "model.failed",
        "ticket.failed",
        "ticket.finish_failed",
        "audit.write_failed",
    )
    counts: Counter = Counter()
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            match = re.search(r'"event":\s*"([^"]+)"', line)
            if match and match.group(1) in wanted:
                counts[match.group(1)] += 1
            if "Traceback" in line:
                counts["traceback"] += 1
            if "WorkerLostError" in line:
                counts["WorkerLostError"] += 1
    return counts


def figures(session_factory, ids: list[int], chosen: list[dict], env: dict[str, str]) -> dict:
    by_order = {t["order_id"]: t for t in chosen}
    with session_factory() as db:
        status = dict(db.execute(select(Ticket.status, func.count()).where(Ticket.id.in_(ids)).group_by(Ticket.status)).all())
        not_terminal = db.execute(select(Ticket.id, Ticket.status, Ticket.status_reason).where(Ticket.id.in_(ids), Ticket.status.not_in(TERMINAL))).all()
        failed = db.execute(select(Ticket.id, Ticket.status_reason).where(Ticket.id.in_(ids), Ticket.status == "failed")).all()
        escalated = db.execute(select(Ticket.id, Ticket.status_reason).where(Ticket.id.in_(ids), Ticket.status == "escalated")).all()
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
        runs = dict(db.execute(select(CrewRun.status, func.count()).where(CrewRun.ticket_id.in_(ids)).group_by(CrewRun.status)).all())
        effects = db.execute(
            select(ToolEffect.ticket_id, ToolEffect.tool, cast(ToolEffect.arguments, String), func.count())
            .where(ToolEffect.ticket_id.in_(ids))
            .group_by(ToolEffect.ticket_id, ToolEffect.tool, cast(ToolEffect.arguments, String))
        ).all()
        writes = db.execute(select(ToolEffect.tool, ToolEffect.arguments).where(ToolEffect.ticket_id.in_(ids))).all()
        orders = {o.order_id: o.doc for o in db.execute(select(StoreOrder).where(StoreOrder.order_id.in_(list(by_order)))).scalars()}
        requeued = db.execute(
            select(func.count(func.distinct(AuditEvent.ticket_id)), func.count()).where(AuditEvent.ticket_id.in_(ids), AuditEvent.name == "requeued")
        ).one()
        deferred_rows = (
            db.execute(
                select(AuditEvent.ticket_id).where(
                    AuditEvent.ticket_id.in_(ids), AuditEvent.kind == "status", AuditEvent.name == "queued", cast(AuditEvent.result, String).like("%retry at%")
                )
            )
            .scalars()
            .all()
        )
        retried_rows = (
            db.execute(
                select(AuditEvent.ticket_id).where(
                    AuditEvent.ticket_id.in_(ids),
                    AuditEvent.kind == "status",
                    AuditEvent.name == "queued",
                    cast(AuditEvent.result, String).like("%retrying%"),
                    cast(AuditEvent.result, String).not_like("%retry at%"),
                )
            )
            .scalars()
            .all()
        )
        interrupted = db.execute(
            select(func.count(func.distinct(AuditEvent.ticket_id))).where(AuditEvent.ticket_id.in_(ids), AuditEvent.name == "run_interrupted")
        ).scalar_one()
        last_terminal = db.execute(select(func.max(Ticket.updated_at)).where(Ticket.id.in_(ids), Ticket.status.in_(TERMINAL))).scalar_one()
    # The store against the effect records: a cancellation refunds each payment once; a return marks the order once.
    effects_per_order = Counter(args["order_id"] for _, args in writes if "order_id" in args)
    store_duplicates, store_without_effect, store_missing = [], [], []
    for order_id, ticket in by_order.items():
        doc = orders[order_id]
        made = effects_per_order.get(order_id, 0)
        if ticket["write"] == "cancel_pending_order":
            refunds = sum(1 for p in doc["payment_history"] if p["transaction_type"] == "refund")
            if refunds > made * ticket["payments"]:
                (store_without_effect if made == 0 else store_duplicates).append({"order": order_id, "refunds": refunds, "effects": made})
            if made and refunds < ticket["payments"]:
                store_missing.append({"order": order_id, "refunds": refunds, "effects": made})
        else:
            done = doc["status"] == "return requested"
            if done and made == 0:
                store_without_effect.append({"order": order_id, "status": doc["status"], "effects": 0})
            if made and not done:
                store_missing.append({"order": order_id, "status": doc["status"], "effects": made})
        if made > 1:
            store_duplicates.append({"order": order_id, "effects": made})
    audit = subprocess.run([CREWDESK, "audit", "verify"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    return {
        "status": status,
        "not_terminal": [{"id": i, "status": s, "reason": r} for i, s, r in not_terminal],
        "failed": [{"id": i, "reason": r} for i, r in failed],
        "escalated": [{"id": i, "reason": r} for i, r in escalated][:20],
        "duplicate_replies": sum(1 for t in ids if replies.get(t, 0) > 1),
        "tickets_without_reply": sum(1 for t in ids if replies.get(t, 0) == 0),
        "duplicate_completed_runs": sum(1 for t in ids if completed.get(t, 0) > 1),
        "runs": runs,
        "writes": len(writes),
        "writes_by_tool": dict(Counter(tool for tool, _ in writes)),
        "duplicate_effects": sum(1 for *_, n in effects if n > 1),
        "store_duplicate_writes": store_duplicates,
        "store_writes_without_effect": store_without_effect,
        "store_effects_without_write": store_missing,
        "reconciler_requeued_tickets": requeued[0],
        "reconciler_requeues": requeued[1],
        "deferred_tickets": len(set(deferred_rows)),
        "deferrals": len(deferred_rows),
        "transient_retried_tickets_recorded": len(set(retried_rows)),  # only where the database took the `queued` row
        "interrupted_tickets": interrupted,
        "last_terminal_at": last_terminal,
        "audit_verify": {"exit": audit.returncode, "output": (audit.stdout + audit.stderr).strip().splitlines()[-3:]},
    }


# -- the run --------------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--latency-ms", type=int, default=250, help="the fake model's time per answer")
    parser.add_argument("--redis-persistent", action="store_true", help="Redis with AOF (docker-compose's set-up) instead of none")
    parser.add_argument("--no-faults", action="store_true", help="the same load without faults (a baseline)")
    parser.add_argument("--drain-timeout", type=float, default=420.0, help="seconds to wait after the last fault for every ticket")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started_wall = dt.datetime.now(dt.UTC)
    out = args.out or ROOT / "bench" / "results" / f"faults-{started_wall:%Y-%m-%d}.json"

    say(f"work dir {WORK}")
    pg = PrivatePostgres(WORK / "pg").start()
    rds = PrivateRedis(WORK / "redis", persistent=args.redis_persistent).start()
    model: FakeModel | None = None
    workers: list[Worker] = []
    monitor: Monitor | None = None
    engine = None
    try:
        upgrade(pg.url)
        engine = make_engine(pg.url, pool_pre_ping=True)
        session_factory = make_session_factory(engine)
        data = read_store(DEFAULT_DB_JSON)
        with transaction(session_factory) as db:
            load_store(db=db, data=data)
        chosen = choose_tickets(data, args.tickets)
        plans_file = WORK / "plans.json"
        plans_file.write_text(json.dumps({t["order_id"]: t["plan"] for t in chosen}))
        model = FakeModel(plans_file, args.latency_ms, WORK / "fake_model.log").start()
        say(f"PostgreSQL :{pg.port}, Redis :{rds.port} ({'AOF' if args.redis_persistent else 'no persistence'}), fake model :{model.port}")

        env = {
            **os.environ,
            "CREWDESK_DATABASE_URL": pg.url,
            "CREWDESK_BROKER_URL": rds.url,
            "CREWDESK_LLM_PROVIDER": "openai",
            "CREWDESK_OPENAI_BASE_URL": f"{model.url}/v1",
            "CREWDESK_OPENAI_API_KEY": "x",
            "CREWDESK_LLM_MODEL_CHEAP": "fake-model",
            "CREWDESK_LLM_MODEL_STRONG": "fake-model",
            "CREWDESK_LLM_TIMEOUT": str(LLM_TIMEOUT),
            "CREWDESK_LLM_BREAKER_FAILURES": "3",
            "CREWDESK_LLM_BREAKER_RESET_SECONDS": "10",
            "CREWDESK_LLM_BREAKER_PREFIX": "crewdesk-faults:breaker",
            "CREWDESK_PROCEDURES": "false",
            "CREWDESK_MEMORY_BACKEND": "off",
            "CREWDESK_APPROVAL_THRESHOLD_USD": "-1",
            "CREWDESK_RECONCILE_SECONDS": "5",
            "CREWDESK_RECONCILE_AFTER_SECONDS": "20",
            "CREWDESK_VISIBILITY_TIMEOUT": "50",
            "CREWDESK_TASK_TIME_LIMIT": "40",
            "CREWDESK_UNACKED_RESTORE_INTERVAL": "2",
            "CREWDESK_LOG_LEVEL": "INFO",
            "CREWDESK_LOG_JSON": "true",
            "CREWDESK_HOME": str(HOME),
        }

        with transaction(session_factory) as db:
            ids = [
                tickets.submit(
                    db=db, ticket_in=TicketIn(source="bench", external_id=t["external_id"], customer=t["customer"], subject=t["subject"], body=t["body"])
                )[0].id
                for t in chosen
            ]
        from celery import Celery

        sender = Celery("faults-bench", broker=rds.url)
        sender.conf.task_routes = {"crewdesk.process_ticket": {"queue": "tickets"}}
        for ticket_id in ids:
            sender.send_task("crewdesk.process_ticket", args=[ticket_id])
        sender.close()
        say(f"{len(ids)} tickets submitted and enqueued; starting the worker (--concurrency {args.concurrency})")

        monitor = Monitor(session_factory, ids)
        monitor.thread.start()
        workers.append(Worker(env, WORK / "worker-1.log", args.concurrency).start())
        load_started = time.monotonic()
        say("worker ready")
        faults: list[dict] = []
        first_fault = None

        def fault(name: str, action, recovery) -> None:
            nonlocal first_fault
            before = monitor.last()
            in_flight = len(ids) - monitor.terminal()
            started = time.monotonic()
            first_fault = first_fault or started
            say(f"fault: {name} ({in_flight} tickets not terminal: {before})")
            detail = action() or {}
            recovered = recovery()
            faults.append(
                {
                    "fault": name,
                    "at_s": round(started - load_started, 1),
                    "not_terminal_before": in_flight,
                    "status_before": before,
                    "recovered_s": round(recovered, 1) if recovered >= 0 else None,
                    **detail,
                }
            )
            say(f"  recovered in {recovered:.1f} s; {monitor.last()}")

        if not args.no_faults:
            monitor.progress(6, 120, "the first tickets")

            def kill_child() -> dict:
                worker = workers[-1]
                victims = worker.children()
                if not victims:
                    return {"note": "no pool child found"}
                os.kill(victims[0], signal.SIGKILL)
                return {"killed_pid": victims[0]}

            fault("SIGKILL one worker child", kill_child, lambda: monitor.progress(4, 90, "progress after the child was killed"))

            def kill_worker() -> dict:
                workers[-1].kill()
                time.sleep(2)
                new = Worker(env, WORK / f"worker-{len(workers) + 1}.log", args.concurrency)
                started = time.monotonic()
                workers.append(new.start())
                return {"new_worker_ready_s": round(time.monotonic() - started, 1)}

            fault("SIGKILL the worker's process group, start a new worker", kill_worker, lambda: monitor.progress(4, 90, "progress on the new worker"))

            def restart_redis() -> dict:
                client = redis.Redis.from_url(rds.url)
                lost = {"queued_messages": client.llen("tickets"), "unacked_messages": client.hlen("unacked")}
                client.close()
                rds.restart()
                lost["keys_after_restart"] = rds.keys()
                return lost

            fault(
                f"restart Redis ({'AOF' if args.redis_persistent else 'no persistence'})",
                restart_redis,
                lambda: monitor.progress(4, 120, "progress after the Redis restart"),
            )

            def restart_pg() -> dict:
                engine.dispose()
                started = time.monotonic()
                pg.restart("fast")
                return {"restart_s": round(time.monotonic() - started, 1)}

            fault("restart PostgreSQL (pg_ctl restart -m fast)", restart_pg, lambda: monitor.progress(4, 120, "progress after the PostgreSQL restart"))

            def model_outage() -> dict:
                phases = [("429", {"mode": "429", "retry_after": 5}), ("500", {"mode": "500"}), ("hang", {"mode": "hang", "hang_seconds": LLM_TIMEOUT + 4})]
                seen = {}
                for label, mode in phases:
                    before = model.get("/stats")["requests"]
                    model.control(**mode)
                    time.sleep(20)
                    after = model.get("/stats")["requests"]
                    seen[label] = after.get(mode["mode"], 0) - before.get(mode["mode"], 0)
                model.control(mode="normal")
                return {"requests_met": seen, "terminal_during": monitor.terminal()}

            fault(
                "model endpoint: 429 Retry-After 5 s, then 500, then hangs past the 4 s timeout (20 s each)",
                model_outage,
                lambda: monitor.progress(4, 120, "progress after the model recovered"),
            )

            def kill_model() -> dict:
                model.kill()
                time.sleep(10)
                model.start()
                return {"down_s": 10}

            fault("SIGKILL the model server, start it again 10 s later", kill_model, lambda: monitor.progress(4, 120, "progress after the model restart"))
        else:
            first_fault = load_started

        say("faults done; waiting for every ticket")
        monitor.wait(lambda: monitor.terminal() >= len(ids), args.drain_timeout, "every ticket terminal")
        time.sleep(3)  # a straggling duplicate delivery would show now
        monitor.stop()
        say(f"final: {monitor.counts()}; measuring")
        found = figures(session_factory, ids, chosen, env)
        stats = model.get("/stats")["requests"]
        first_fault_wall = started_wall + dt.timedelta(seconds=first_fault - _T0)
        last = found.pop("last_terminal_at")
        drain = (last.replace(tzinfo=dt.UTC) - first_fault_wall).total_seconds() if last else None
        lost = len(found["not_terminal"])
        result = {
            "date": f"{started_wall:%Y-%m-%d}",
            "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "command": "bench/faults.py " + " ".join(sys.argv[1:]),
            "tickets": len(ids),
            "concurrency": args.concurrency,
            "latency_ms": args.latency_ms,
            "redis": "AOF" if args.redis_persistent else "no persistence",
            "fallback_model": None,
            "procedures": False,
            "submitted": len(ids),
            "terminal": len(ids) - lost,
            "lost": lost,
            "time_to_drain_s": round(drain, 1) if drain is not None else None,
            "load_seconds": round(time.monotonic() - load_started, 1),
            "faults": faults,
            "model_requests_since_its_last_start": stats,
            "worker_log_events": dict(log_events([w.log for w in workers])),
            **found,
            "timeline": [(round(t, 1), c) for t, c in monitor.samples[:: max(1, len(monitor.samples) // 120)]],
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str))
        print_table(result)
        print(f"\nfigures: {out}\nlogs: {WORK}")
        ok = (
            lost == 0
            and found["duplicate_effects"] == 0
            and not found["store_duplicate_writes"]
            and found["duplicate_replies"] == 0
            and found["audit_verify"]["exit"] == 0
        )
        return 0 if ok else 1
    finally:
        if monitor is not None:
            monitor.stop()
        for worker in workers:
            worker.stop()
        if model is not None:
            model.kill()
        if engine is not None:
            engine.dispose()
        rds.stop()
        pg.stop()


def print_table(r: dict) -> None:
    rows = [
        ("submitted", r["submitted"]),
        ("reached a terminal state", r["terminal"]),
        ("lost (not terminal at the end)", r["lost"]),
        (
            "duplicate side effects (tool_effects per ticket+tool+args > 1; store writes twice or without effect)",
            r["duplicate_effects"] + len(r["store_duplicate_writes"]) + len(r["store_writes_without_effect"]),
        ),
        ("duplicate replies (outbound messages per ticket > 1)", r["duplicate_replies"]),
        ("crewdesk audit verify", f"exit {r['audit_verify']['exit']}: {' / '.join(r['audit_verify']['output'])}"),
        ("time to drain (first fault -> last ticket terminal)", f"{r['time_to_drain_s']} s"),
        ("status", ", ".join(f"{k} {v}" for k, v in sorted(r["status"].items()))),
        ("writes made (tool_effects)", f"{r['writes']} ({', '.join(f'{k} {v}' for k, v in r['writes_by_tool'].items())})"),
        ("tickets requeued by the reconciler", f"{r['reconciler_requeued_tickets']} ({r['reconciler_requeues']} requeues)"),
        ("tickets deferred (model unavailable, 'retry at')", f"{r['deferred_tickets']} ({r['deferrals']} deferrals)"),
        ("tickets whose run a dead worker left (run_interrupted)", r["interrupted_tickets"]),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print()
    for f in r["faults"]:
        extra = {k: v for k, v in f.items() if k not in ("fault", "at_s", "status_before", "recovered_s", "not_terminal_before")}
        print(f"  t+{f['at_s']:>6}s  {f['fault']}: {f['not_terminal_before']} not terminal; progress again after {f['recovered_s']} s  {extra}")


if __name__ == "__main__":
    sys.exit(main())
