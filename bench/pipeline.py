"""Pipeline benchmark: one command, prints medians and ratios.

  .venv/bin/python bench/pipeline.py [--tickets 40] [--repeats 3] [--local-tickets 3] [--skip-local]

1. Tickets/s through a real Celery worker (prefork, 2 children) on Redis and PostgreSQL, with the scripted
   model answering at 0 ms and at 200 ms per call.
2. Orchestration overhead per ticket: crew run wall time minus time inside the model (from crew_runs).
3. The embedded local model (llama.cpp, Qwen2.5-Coder-1.5B q4_k_m): seconds per ticket and tokens/s.
Needs PostgreSQL and Redis on 127.0.0.1 (scripts/services.sh starts them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HOME = Path(tempfile.mkdtemp(prefix="crewdesk-bench-"))
os.environ.update(CREWAI_DISABLE_TELEMETRY="true", OTEL_SDK_DISABLED="true", CREWAI_TRACING_ENABLED="false",
                  CREWAI_STORAGE_DIR=str(HOME / "crewai"), CREWDESK_HOME=str(HOME), CREWDESK_LOG_LEVEL="WARNING")

import redis  # noqa: E402
from benchdb import create_db, drop_db  # noqa: E402
from sqlalchemy import select, text  # noqa: E402

REDIS_URL = os.environ.get("CREWDESK_BENCH_REDIS", "redis://127.0.0.1:6379/14")
CREWDESK = str(Path(sys.executable).parent / "crewdesk")
BODIES = [
    "I was charged twice for my subscription this month, please refund one charge.",
    "The desktop app crashes with error 500 when I open the settings page.",
    "How do I reset my password? The reset email never arrives.",
    "Can I export my monthly report as CSV?",
]


def reset(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_events, approvals, messages, crew_runs, tickets RESTART IDENTITY CASCADE"))
        conn.execute(text("UPDATE audit_chain_head SET last_hash = :genesis, count = 0"), {"genesis": "0" * 64})
    redis.Redis.from_url(REDIS_URL).flushdb()


def make_tickets(session_factory, n: int, tag: str) -> list[int]:
    from crewdesk.db import transaction
    from crewdesk.tickets import service
    from crewdesk.tickets.schemas import TicketIn

    ids = []
    with transaction(session_factory) as db:
        for i in range(n):
            ticket, _ = service.submit(db=db, ticket_in=TicketIn(source="bench", external_id=f"{tag}-{i}", customer=f"c{i}@example.com", subject="bench", body=BODIES[i % len(BODIES)]))
            ids.append(ticket.id)
    return ids


def wait_all(session_factory, ids: list[int], timeout: float) -> None:
    from crewdesk.tickets.models import Ticket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_factory() as db:
            done = db.execute(select(Ticket.id).where(Ticket.id.in_(ids), Ticket.status.in_(["resolved", "escalated", "failed"]))).scalars().all()
        if len(done) == len(ids):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{len(ids) - len(done)} tickets unfinished after {timeout}s")


def celery_throughput(url: str, latency_ms: int, tickets: int, repeats: int) -> dict:
    from crewdesk.db import make_engine, make_session_factory
    from crewdesk.runs.models import CrewRun
    from crewdesk.settings import load_settings
    from workers.app import configure
    from workers.tasks import process_ticket

    engine = make_engine(url)
    factory = make_session_factory(engine)
    settings = load_settings(database_url=url, broker_url=REDIS_URL, llm_provider="scripted")
    configure(settings)
    env = {**os.environ, "CREWDESK_DATABASE_URL": url, "CREWDESK_BROKER_URL": REDIS_URL, "CREWDESK_LLM_PROVIDER": "scripted",
           "CREWDESK_SCRIPTED_LATENCY_MS": str(latency_ms), "CREWDESK_WORKER_CONCURRENCY": "2"}
    rates, overheads, llm_shares = [], [], []
    for repeat in range(repeats):
        reset(engine)
        log = open(HOME / f"worker-{latency_ms}-{repeat}.log", "wb")
        worker = subprocess.Popen([CREWDESK, "worker", "--loglevel", "WARNING"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            warm = make_tickets(factory, 2, f"warm{latency_ms}-{repeat}")
            for ticket_id in warm:
                process_ticket.apply_async(args=[ticket_id])
            wait_all(factory, warm, 120)
            ids = make_tickets(factory, tickets, f"t{latency_ms}-{repeat}")
            started = time.perf_counter()
            for ticket_id in ids:
                process_ticket.apply_async(args=[ticket_id])
            wait_all(factory, ids, 900)
            elapsed = time.perf_counter() - started
        finally:
            os.killpg(worker.pid, 15)
            worker.wait(60)
        rates.append(tickets / elapsed)
        with factory() as db:
            runs = db.execute(select(CrewRun).where(CrewRun.ticket_id.in_(ids))).scalars().all()
        overheads.append(statistics.median(r.latency_s - r.llm_seconds for r in runs))
        llm_shares.append(statistics.median(r.llm_seconds / r.latency_s for r in runs))
    engine.dispose()
    return {"latency_ms": latency_ms, "tickets": tickets, "repeats": repeats, "tickets_per_s": statistics.median(rates),
            "overhead_s_per_ticket": statistics.median(overheads), "llm_share_of_wall": statistics.median(llm_shares)}


def local_model(url: str, tickets: int) -> dict:
    from crewdesk.db import make_engine, make_session_factory
    from crewdesk.llm.factory import LLMFactory, start_local_server
    from crewdesk.runs.models import CrewRun
    from crewdesk.settings import load_settings
    from crews.pipeline import Pipeline

    engine = make_engine(url)
    reset(engine)
    factory = make_session_factory(engine)
    settings = load_settings(database_url=url, llm_provider="local", local_port=8799, home=Path.home() / ".crewdesk")
    server = start_local_server(settings)
    try:
        pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings))
        ids = make_tickets(factory, tickets, "local")
        for ticket_id in ids:
            pipeline.process(ticket_id)
    finally:
        server.stop()
    with factory() as db:
        runs = db.execute(select(CrewRun).where(CrewRun.ticket_id.in_(ids))).scalars().all()
    engine.dispose()
    return {
        "tickets": tickets,
        "seconds_per_ticket": statistics.median(r.latency_s for r in runs),
        "llm_calls_per_ticket": statistics.median(r.llm_calls for r in runs),
        "prompt_tokens_per_ticket": statistics.median(r.tokens_in for r in runs),
        "completion_tokens_per_ticket": statistics.median(r.tokens_out for r in runs),
        "tokens_per_s_total": statistics.median((r.tokens_in + r.tokens_out) / r.llm_seconds for r in runs),
        "tokens_per_s_completion": statistics.median(r.tokens_out / r.llm_seconds for r in runs),
        "overhead_s_per_ticket": statistics.median(r.latency_s - r.llm_seconds for r in runs),
        "outcomes": sorted(r.outcome for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=40)
    parser.add_argument("--slow-tickets", type=int, default=20, help="tickets per repeat at 200 ms per call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--local-tickets", type=int, default=3)
    parser.add_argument("--skip-local", action="store_true")
    args = parser.parse_args()
    url = create_db()
    try:
        fast = celery_throughput(url, 0, args.tickets, args.repeats)
        slow = celery_throughput(url, 200, args.slow_tickets, args.repeats)
        local = None if args.skip_local else local_model(url, args.local_tickets)
    finally:
        drop_db(url)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"crewdesk pipeline benchmark ({machine}); medians of {args.repeats} repeats")
    print("Celery worker, 2 prefork children, scripted model:")
    for row in (fast, slow):
        print(f"  {row['latency_ms']:>3} ms/call: {row['tickets_per_s']:7.2f} tickets/s   overhead {row['overhead_s_per_ticket'] * 1000:6.1f} ms/ticket   model share of wall {row['llm_share_of_wall']:.0%}")
    print(f"  ratio 200 ms / 0 ms throughput: {slow['tickets_per_s'] / fast['tickets_per_s']:.3f}")
    if local:
        print(f"Local model (llama.cpp, Qwen2.5-Coder-1.5B q4_k_m), {local['tickets']} tickets in-process:")
        print(f"  {local['seconds_per_ticket']:.1f} s/ticket, {local['llm_calls_per_ticket']:.0f} model calls, {local['prompt_tokens_per_ticket']:.0f} prompt + {local['completion_tokens_per_ticket']:.0f} completion tokens per ticket")
        print(f"  {local['tokens_per_s_total']:.1f} tokens/s (prompt+completion), {local['tokens_per_s_completion']:.1f} completion tokens/s, overhead {local['overhead_s_per_ticket'] * 1000:.0f} ms/ticket")
        print(f"  outcomes: {local['outcomes']}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps({"machine": machine, "celery_0ms": fast, "celery_200ms": slow, "local": local}, indent=2))


if __name__ == "__main__":
    main()
