"""Pipeline benchmark: crewdesk's orchestration overhead beside plain CrewAI, and throughput over Celery children.

  .venv/bin/python bench/pipeline.py [--tickets 40] [--rounds 4] [--children 1,2,4,8] [--per-child 8] [--latency-ms 1000]
                                     [--skip-overhead] [--skip-scaling] [--profile PATH] [--local-tickets 0] [--out PATH]

1. Overhead per ticket at 0 ms per model call, in-process: the wall time of Pipeline.process(ticket_id) on a ticket
   already submitted, with the scripted model and a real PostgreSQL database, median and p95. Beside it, in the same
   run on the same machine, the plain-CrewAI anchor (bench/anchor/anchor_crewai_kickoff.py, in a subprocess, taking
   turns with crewdesk --rounds times; the ratio is the median of the rounds' ratios): a two-agent sequential crew
   built afresh per ticket, 3 model calls and 1 tool call.
   crewdesk's comparable path is the crew path with the same shape: triage (1 call), then the billing specialist
   calling one tool (`calculate`, through the gate) and answering (2 calls); procedures and memory off, as the anchor
   has neither. Also shown: the same ticket with the default settings (router and memory on), and the procedure path
   (an order-status ticket on the demo store, the common path for the store's tickets). Model and tool calls per
   ticket are counted from crew_runs and the audit trail, so the comparison says what it compares.
2. Tickets/s through a real Celery worker (prefork, 1, 2, 4, 8 children) on Redis and PostgreSQL, the scripted model
   sleeping --latency-ms per call (I/O-bound), default settings, with the worker's CPU time and the whole machine's
   CPU use (other work included) to tell where it stops. Lock waits: pg_stat_activity sampled every 50 ms
   during the timed part, backends of the bench database with wait_event_type 'Lock', summed as samples x interval
   (backend-seconds spent waiting on heavyweight locks: row locks such as the audit chain head, advisory locks).
3. Optional (--local-tickets N): the embedded local model (llama.cpp, Qwen2.5-Coder-1.5B q4_k_m) in-process.

Every measurement gets a fresh database (bench/benchdb.py: create, migrate to head, drop), whatever tables the
schema has at the time. Needs PostgreSQL and Redis on 127.0.0.1 (scripts/services.sh starts them).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HOME = Path(tempfile.mkdtemp(prefix="crewdesk-bench-"))
# The router embeds its 3,700 labelled examples once per cache directory (about a minute): keep that cache between runs.
ROUTING_CACHE = Path.home() / ".cache" / "crewdesk-bench" / "routing"
ROUTING_CACHE.mkdir(parents=True, exist_ok=True)
(HOME / "cache").mkdir()
(HOME / "cache" / "routing").symlink_to(ROUTING_CACHE)
os.environ.update(
    CREWAI_DISABLE_TELEMETRY="true",
    OTEL_SDK_DISABLED="true",
    CREWAI_TRACING_ENABLED="false",
    CREWAI_STORAGE_DIR=str(HOME / "crewai"),
    CREWDESK_HOME=str(HOME),
    CREWDESK_LOG_LEVEL="WARNING",
)

import redis
from benchdb import PG_ADMIN, create_db, drop_db
from sqlalchemy import func, select

REDIS_URL = os.environ.get("CREWDESK_BENCH_REDIS", "redis://127.0.0.1:6379/13")
CREWDESK = str(Path(sys.executable).parent / "crewdesk")
ANCHOR = ROOT / "bench" / "anchor"
WARMUP = 3
BODIES = [
    "I was charged twice for my subscription this month, please refund one charge.",
    "The desktop app crashes with error 500 when I open the settings page.",
    "How do I reset my password? The reset email never arrives.",
    "Can I export my monthly report as CSV?",
]
# The procedure path: a read-only request the store's procedures answer (identify by the sender, read the orders,
# reply with status and tracking), so the same ticket can run again and again.
STATUS_TICKET = {
    "customer": "emma.smith3991@example.com",
    "subject": "Where is my camera?",
    "body": "Hi, can you tell me the status of my digital camera order and its tracking number? Thanks, Emma",
}


def crew_ticket(key: str) -> dict:
    """The anchor's ticket, one customer each (no history to recall, no repeat contact)."""
    return {"customer": f"{key}@example.com", "subject": "Double charge", "body": f"I was charged twice for INV-{key.rpartition('-')[2]}"}


def crew_responder():
    """The anchor's shape on crewdesk's crew path: triage (1 call), the billing specialist calls one tool, then answers (2)."""
    from crewdesk.llm.scripted import PlanResponder

    return PlanResponder(
        triage={
            "category": "billing",
            "priority": "normal",
            "language": "en",
            "sentiment": "neutral",
            "summary": "Charged twice for one invoice.",
            "confidence": 0.9,
        },
        plans={"billing": [("calculate", {"expression": "84 / 2"})]},
        finals={
            "billing": {
                "customer_reply": "We looked at invoice INV-1: the amount is 42.0. Our team will check the second charge.",
                "internal_note": "Checked the amount.",
                "needs_human": False,
                "escalation_reason": "",
            }
        },
    )


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile, as the anchor computes its p95."""
    ordered = sorted(values)
    return ordered[max(0, int(q * len(ordered)) - 1)]


def make_tickets(session_factory, n: int, tag: str, *, ticket=None) -> list[int]:
    from crewdesk.db import transaction
    from crewdesk.tickets import service
    from crewdesk.tickets.schemas import TicketIn

    ids = []
    with transaction(session_factory) as db:
        for i in range(n):
            fields = (
                ticket(f"{tag}-{i}") if callable(ticket) else ticket or {"customer": f"c{i}@example.com", "subject": "bench", "body": BODIES[i % len(BODIES)]}
            )
            row, _ = service.submit(db=db, ticket_in=TicketIn(source="bench", external_id=f"{tag}-{i}", **fields))
            ids.append(row.id)
    return ids


def load_demo_store(session_factory) -> None:
    from crewdesk.db import transaction
    from crewdesk.store.service import DEFAULT_DB_JSON, load_store, read_store

    with transaction(session_factory) as db:
        load_store(db=db, data=read_store(DEFAULT_DB_JSON))


# ---------------------------------------------------------------------------------------------------------------
# 1. Overhead at 0 ms per model call, in-process, beside the anchor


def anchor(tickets: int) -> dict:
    """The plain-CrewAI anchor in its own interpreter (same venv, same machine, same run)."""
    env = {**os.environ, "CREWAI_STORAGE_DIR": str(HOME / "crewai-anchor")}
    out = subprocess.run([sys.executable, "anchor_crewai_kickoff.py", str(tickets)], cwd=ANCHOR, env=env, capture_output=True, text=True, timeout=600)
    match = re.search(r"median ([\d.]+) ms p95 ([\d.]+) ms", out.stdout)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"anchor failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-2000:]}")
    return {"median_ms": float(match.group(1)), "p95_ms": float(match.group(2)), "tickets": tickets}


def in_process(
    label: str,
    tickets: int,
    *,
    procedures: bool,
    memory: bool,
    responder=None,
    ticket=None,
    demo_store: bool = False,
    profile: Path | None = None,
    rounds: int = 1,
    between=None,
) -> dict:
    """Pipeline.process on `tickets` submitted tickets (after WARMUP untimed ones), fresh database, scripted model at 0 ms.
    The timed tickets run in `rounds` equal chunks with between(round) called after each (the anchor's runs, so both
    see the same machine load); per-round medians are kept for the ratio."""
    from crewdesk.audit.models import AuditEvent
    from crewdesk.db import make_engine, make_session_factory
    from crewdesk.llm.factory import LLMFactory
    from crewdesk.runs.models import CrewRun
    from crewdesk.settings import load_settings
    from crews.pipeline import Pipeline
    from workers.runtime import POOL_SIZE

    url = create_db()
    engine = make_engine(url, pool_size=POOL_SIZE, max_overflow=4)  # as a worker child's
    try:
        factory = make_session_factory(engine)
        if demo_store:
            load_demo_store(factory)
        settings = load_settings(
            database_url=url, llm_provider="scripted", scripted_latency_ms=0, procedures=procedures, memory_backend="lance" if memory else "off"
        )
        pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings, responder=responder))
        warm = make_tickets(factory, WARMUP, f"{label}-warm", ticket=ticket)
        ids = make_tickets(factory, tickets, label, ticket=ticket)
        for ticket_id in warm:
            pipeline.process(ticket_id)
        times, round_medians = [], []
        profiler = cProfile.Profile() if profile else None
        per_round = -(-len(ids) // rounds)
        for number in range(rounds):
            chunk = []
            for ticket_id in ids[number * per_round : (number + 1) * per_round]:
                started = time.perf_counter()
                if profiler:
                    profiler.enable()
                pipeline.process(ticket_id)
                if profiler:
                    profiler.disable()
                chunk.append(time.perf_counter() - started)
            times += chunk
            round_medians.append(1000 * statistics.median(chunk))
            if between is not None:
                between(number)
        if profiler:
            profiler.dump_stats(str(profile))
        with factory() as db:
            runs = db.execute(select(CrewRun).where(CrewRun.ticket_id.in_(ids))).scalars().all()
            kinds = dict(db.execute(select(AuditEvent.kind, func.count()).where(AuditEvent.ticket_id.in_(ids)).group_by(AuditEvent.kind)).all())
    finally:
        engine.dispose()
        drop_db(url)
    return {
        "label": label,
        "tickets": tickets,
        "median_ms": 1000 * statistics.median(times),
        "p95_ms": 1000 * pct(times, 0.95),
        "round_medians_ms": round_medians,
        "model_ms_per_ticket": 1000 * statistics.median(r.llm_seconds for r in runs),
        "model_calls_per_ticket": statistics.median(r.llm_calls for r in runs),
        "tool_calls_per_ticket": kinds.get("tool_call", 0) / tickets,
        "audit_rows_per_ticket": sum(kinds.values()) / tickets,
        "audit_rows_by_kind": {k: round(v / tickets, 2) for k, v in sorted(kinds.items())},
        "process": sorted({r.process for r in runs}),
        "outcomes": sorted({r.outcome for r in runs}),
    }


def overhead(tickets: int, profile: Path | None, rounds: int) -> dict:
    """The crew path and the anchor take turns, `rounds` times (tickets/rounds each), so a busy spell on the shared
    machine hits both; the ratio is the median of the per-round ratios."""
    anchors: list[dict] = []
    per_round = max(1, tickets // rounds)
    anchors.append(anchor(per_round))
    crew = in_process(
        "crew",
        per_round * rounds,
        procedures=False,
        memory=False,
        responder=crew_responder(),
        ticket=crew_ticket,
        profile=profile,
        rounds=rounds,
        between=lambda _n: anchors.append(anchor(per_round)),
    )
    defaults = in_process("crew-defaults", tickets, procedures=True, memory=True, responder=crew_responder(), ticket=crew_ticket)
    procedure = in_process("procedure", tickets, procedures=True, memory=False, ticket=STATUS_TICKET, demo_store=True)
    # round r of the crew path ran between anchor runs r and r + 1
    ratios = [m / ((anchors[r]["median_ms"] + anchors[r + 1]["median_ms"]) / 2) for r, m in enumerate(crew["round_medians_ms"])]
    return {
        "anchors": anchors,
        "anchor_median_ms": statistics.median(a["median_ms"] for a in anchors),
        "anchor_p95_ms": statistics.median(a["p95_ms"] for a in anchors),
        "crew": crew,
        "crew_defaults": defaults,
        "procedure": procedure,
        "round_ratios": ratios,
        "ratio_crew": statistics.median(ratios),
    }


# ---------------------------------------------------------------------------------------------------------------
# 2. Scaling over Celery children at a slow (I/O-bound) scripted model


class LockSampler(threading.Thread):
    """Samples pg_stat_activity of one database: backends waiting on a heavyweight lock, and on what."""

    def __init__(self, dbname: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.dbname, self.interval = dbname, interval
        self.samples = 0
        self.waiting = 0  # backend-samples in wait_event_type 'Lock'
        self.by_event: dict[str, int] = {}
        self.queries: dict[str, int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            while not self._halt.is_set():
                rows = conn.execute(
                    "SELECT wait_event, left(query, 60) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'", (self.dbname,)
                ).fetchall()
                self.samples += 1
                self.waiting += len(rows)
                for event, query in rows:
                    self.by_event[event] = self.by_event.get(event, 0) + 1
                    self.queries[query] = self.queries.get(query, 0) + 1
                self._halt.wait(self.interval)

    def stop(self) -> dict:
        self._halt.set()
        self.join(10)
        return {
            "lock_wait_s": self.waiting * self.interval,
            "samples": self.samples,
            "by_event": self.by_event,
            "top_queries": dict(sorted(self.queries.items(), key=lambda kv: -kv[1])[:3]),
        }


def tree_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes in a process group (the worker and its children), from /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the command: state ppid pgrp ... utime(12) stime(13)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all cores from /proc/stat: the whole machine, other work included."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def wait_all(session_factory, ids: list[int], timeout: float) -> None:
    from crewdesk.tickets.models import Ticket

    deadline = time.monotonic() + timeout
    done: list[int] = []
    while time.monotonic() < deadline:
        with session_factory() as db:
            done = db.execute(select(Ticket.id).where(Ticket.id.in_(ids), Ticket.status.in_(["resolved", "escalated", "failed"]))).scalars().all()
        if len(done) == len(ids):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{len(ids) - len(done)} tickets unfinished after {timeout}s")


def celery_run(children: int, tickets: int, latency_ms: int) -> dict:
    from crewdesk.db import make_engine, make_session_factory
    from crewdesk.runs.models import CrewRun
    from crewdesk.settings import load_settings
    from workers.app import configure
    from workers.tasks import process_ticket

    url = create_db()
    engine = make_engine(url)
    factory = make_session_factory(engine)
    redis.Redis.from_url(REDIS_URL).flushdb()
    configure(load_settings(database_url=url, broker_url=REDIS_URL, llm_provider="scripted"))
    env = {
        **os.environ,
        "CREWDESK_DATABASE_URL": url,
        "CREWDESK_BROKER_URL": REDIS_URL,
        "CREWDESK_LLM_PROVIDER": "scripted",
        "CREWDESK_SCRIPTED_LATENCY_MS": str(latency_ms),
        "CREWDESK_WORKER_CONCURRENCY": str(children),
    }
    log = open(HOME / f"worker-{children}.log", "wb")  # noqa: SIM115 - the worker subprocess writes it for the whole measurement
    worker = subprocess.Popen([CREWDESK, "worker", "--loglevel", "WARNING"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Every child builds its pipeline at start and loads the embedding model on its first ticket: warm them all.
        warm = make_tickets(factory, 3 * children, f"warm-{children}")
        for ticket_id in warm:
            process_ticket.apply_async(args=[ticket_id])
        wait_all(factory, warm, 300 + 60 * children)
        ids = make_tickets(factory, tickets, f"t-{children}")
        sampler = LockSampler(url.rpartition("/")[2])
        sampler.start()
        cpu_before = tree_cpu_seconds(worker.pid)
        machine_before = machine_cpu()
        started = time.perf_counter()
        for ticket_id in ids:
            process_ticket.apply_async(args=[ticket_id])
        wait_all(factory, ids, 540)
        elapsed = time.perf_counter() - started
        cpu = tree_cpu_seconds(worker.pid) - cpu_before
        machine_after = machine_cpu()
        machine_busy = (machine_after[0] - machine_before[0]) / max(1, machine_after[1] - machine_before[1])
        locks = sampler.stop()
        with factory() as db:
            runs = db.execute(select(CrewRun).where(CrewRun.ticket_id.in_(ids))).scalars().all()
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(60)
        engine.dispose()
        drop_db(url)
    return {
        "children": children,
        "tickets": tickets,
        "seconds": elapsed,
        "tickets_per_s": tickets / elapsed,
        "worker_cpu_s_per_ticket": cpu / tickets,
        "worker_cpu_share_of_2_cores": cpu / elapsed / (os.cpu_count() or 1),
        "machine_cpu_busy": machine_busy,
        "model_calls_per_ticket": statistics.median(r.llm_calls for r in runs),
        "run_latency_s_median": statistics.median(r.latency_s for r in runs),
        **locks,
    }


def scaling(children: list[int], per_child: int, latency_ms: int) -> list[dict]:
    rows = []
    for n in children:
        try:
            rows.append(celery_run(n, per_child * n, latency_ms))
        except TimeoutError as exc:  # a busy machine: report what finished
            print(f"  {n} children: {exc}", file=sys.stderr, flush=True)
            break
        print(f"  {n} children done: {rows[-1]['tickets_per_s']:.2f} tickets/s", file=sys.stderr, flush=True)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# 3. The local model (optional)


def local_model(tickets: int) -> dict:
    from crewdesk.db import make_engine, make_session_factory
    from crewdesk.llm.factory import LLMFactory, start_local_server
    from crewdesk.runs.models import CrewRun
    from crewdesk.settings import load_settings
    from crews.pipeline import Pipeline

    url = create_db()
    engine = make_engine(url)
    factory = make_session_factory(engine)
    settings = load_settings(database_url=url, llm_provider="local", local_port=8799, home=Path.home() / ".crewdesk")
    server = start_local_server(settings)
    try:
        pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings))
        ids = make_tickets(factory, tickets, "local")
        for ticket_id in ids:
            pipeline.process(ticket_id)
        with factory() as db:
            runs = db.execute(select(CrewRun).where(CrewRun.ticket_id.in_(ids))).scalars().all()
    finally:
        server.stop()
        engine.dispose()
        drop_db(url)
    return {
        "tickets": tickets,
        "seconds_per_ticket": statistics.median(r.latency_s for r in runs),
        "llm_calls_per_ticket": statistics.median(r.llm_calls for r in runs),
        "prompt_tokens_per_ticket": statistics.median(r.tokens_in for r in runs),
        "completion_tokens_per_ticket": statistics.median(r.tokens_out for r in runs),
        "tokens_per_s_total": statistics.median((r.tokens_in + r.tokens_out) / r.llm_seconds for r in runs),
        "overhead_s_per_ticket": statistics.median(r.latency_s - r.llm_seconds for r in runs),
        "outcomes": sorted(r.outcome for r in runs),
    }


def print_profile(path: Path, tickets: int, top: int = 25) -> None:
    """Cumulative time per ticket of the heaviest functions under Pipeline.process (cProfile adds its own overhead)."""
    stats = pstats.Stats(str(path))
    rows = []
    for (filename, line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((ct, f"{Path(filename).name}:{line}({name})"))
    print(f"cProfile of Pipeline.process, crew path, cumulative ms per ticket (top {top}):")
    for ct, where in sorted(rows, reverse=True)[:top]:
        print(f"  {1000 * ct / tickets:8.1f}  {where}")


def print_overhead(o: dict, tickets: int) -> None:
    print(f"Orchestration overhead per ticket at 0 ms per model call, in-process, {tickets} tickets each (after {WARMUP} warm-up):")
    print(f"  {'what':<66} {'median ms':>9} {'p95 ms':>7}  model calls  tool calls  audit rows")
    runs = len(o["anchors"])
    print(
        f"  {f'plain CrewAI anchor, 2 agents built per ticket ({runs} runs)':<66} {o['anchor_median_ms']:9.1f} {o['anchor_p95_ms']:7.1f}"
        f"  {3:11}  {1:10}  {'-':>10}"
    )
    for key, what in (
        ("crew", "crewdesk crew path: triage + billing with 1 tool, no router/memory"),
        ("crew_defaults", "crewdesk crew path, default settings (router and memory on)"),
        ("procedure", "crewdesk procedure path: order status on the demo store"),
    ):
        row = o[key]
        print(
            f"  {what:<66} {row['median_ms']:9.1f} {row['p95_ms']:7.1f}  {row['model_calls_per_ticket']:11.0f}  {row['tool_calls_per_ticket']:10.1f}"
            f"  {row['audit_rows_per_ticket']:10.1f}"
        )
    print(
        f"  anchor medians per run (ms): {[round(a['median_ms'], 1) for a in o['anchors']]}; crew path medians per round: "
        f"{[round(m, 1) for m in o['crew']['round_medians_ms']]}"
    )
    print(
        f"  ratio crewdesk crew path / anchor: {o['ratio_crew']:.2f}x (median of the per-round ratios {[round(r, 2) for r in o['round_ratios']]}; target <= 2x)"
    )
    for key in ("crew", "procedure"):
        print(f"  {key}: runs {o[key]['process']} -> {o[key]['outcomes']}; audit rows per ticket by kind {o[key]['audit_rows_by_kind']}")


def print_scaling(rows: list[dict], latency_ms: int) -> None:
    print(f"Celery worker, prefork children, scripted model at {latency_ms} ms per call, default settings:")
    print(
        f"  {'children':>8} {'tickets':>7} {'seconds':>8} {'tickets/s':>9} {'speed-up':>8} {'lock-wait s':>11} {'worker CPU':>10} {'machine CPU':>11}"
        f"  CPU s/ticket  model calls  run s (median)"
    )
    base = rows[0]["tickets_per_s"]
    for row in rows:
        print(
            f"  {row['children']:8} {row['tickets']:7} {row['seconds']:8.1f} {row['tickets_per_s']:9.2f} {row['tickets_per_s'] / base:8.2f}"
            f" {row['lock_wait_s']:11.2f} {row['worker_cpu_share_of_2_cores']:10.0%} {row['machine_cpu_busy']:11.0%}  {row['worker_cpu_s_per_ticket']:12.2f}"
            f"  {row['model_calls_per_ticket']:11.0f}  {row['run_latency_s_median']:.2f}"
        )
    print(
        "  lock-wait s: backend-seconds in wait_event_type 'Lock' (pg_stat_activity sampled every 50 ms); worker CPU: the worker's"
        " processes' CPU time over the wall time, as a share of all cores; machine CPU: all cores busy, other work on the machine included"
    )
    for row in rows:
        if row["by_event"]:
            print(f"  {row['children']} children waited on {row['by_event']}, e.g. {row['top_queries']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=40, help="timed tickets per in-process measurement and per anchor run")
    parser.add_argument("--rounds", type=int, default=4, help="the crew path and the anchor take turns this many times")
    parser.add_argument("--children", default="1,2,4,8")
    parser.add_argument("--per-child", type=int, default=8, help="tickets per child in the scaling run")
    parser.add_argument("--latency-ms", type=int, default=1000, help="scripted model latency per call in the scaling run")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument(
        "--profile",
        type=Path,
        help="also write a cProfile of the crew path's timed tickets here and print its top "
        "(cProfile slows what it measures: use a separate run for the figures)",
    )
    parser.add_argument("--local-tickets", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pipeline.json")
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    import crewai

    result: dict = {"machine": machine, "date": dt.datetime.now(dt.UTC).isoformat(timespec="minutes"), "crewai": crewai.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        args.out.write_text(json.dumps(result, indent=2, default=str))

    print(f"crewdesk pipeline benchmark ({machine}, crewai {result['crewai']}, {result['date']})", flush=True)
    try:
        if not args.skip_overhead:
            result["overhead"] = overhead(args.tickets, args.profile, args.rounds)
            save()
            print_overhead(result["overhead"], args.tickets)
            if args.profile:
                print_profile(args.profile, args.tickets)
            sys.stdout.flush()
        if not args.skip_scaling:
            result["scaling"] = scaling([int(n) for n in args.children.split(",")], args.per_child, args.latency_ms)
            save()
            print_scaling(result["scaling"], args.latency_ms)
        if args.local_tickets:
            result["local"] = loc = local_model(args.local_tickets)
            save()
            print(
                f"Local model, {loc['tickets']} tickets in-process: {loc['seconds_per_ticket']:.1f} s/ticket, {loc['llm_calls_per_ticket']:.0f} model calls, "
                f"{loc['prompt_tokens_per_ticket']:.0f} + {loc['completion_tokens_per_ticket']:.0f} tokens, {loc['tokens_per_s_total']:.1f} tokens/s, outcomes {loc['outcomes']}"
            )
    finally:
        shutil.rmtree(HOME, ignore_errors=True)


if __name__ == "__main__":
    main()
