"""Intake benchmark: one command, prints medians of 3 and ratios.

  .venv/bin/python bench/intake.py [--repeats 3] [--sizes 10000,100000] [--requests 2000] [--concurrency 16] [--skip-webhook]

1. Backlog import: `crewdesk backlog import` in a subprocess per run, on generated CSVs (1% bad rows of every kind
   the acceptance test uses) into a fresh PostgreSQL database, every good row queued on Redis (no rate limit, no
   worker). rows/s is rows read / wall time of the whole command, start-up included; peak RSS is that process's
   ru_maxrss (os.wait4). Constant memory shows as an RSS ratio near 1 between the sizes while rows grow 10x.
2. Jira webhook: `crewdesk api` (uvicorn) in a subprocess; an asyncio httpx load generator sends signed
   issue_created deliveries (X-Hub-Signature sha256 HMAC, a unique X-Atlassian-Webhook-Identifier and issue key
   each, so every one creates a ticket and queues it) at a fixed concurrency; p50/p99 latency per request and
   requests/s over the run. Skipped with a message when the API has no POST /webhooks/jira.
Needs PostgreSQL and Redis on 127.0.0.1 (scripts/services.sh starts them). Uses Redis db 14.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

try:  # imported as bench.intake by tests/integration/test_backlog.py, or run as a script from bench/
    from bench.benchdb import create_db, drop_db
except ImportError:
    from benchdb import create_db, drop_db

ROOT = Path(__file__).resolve().parent.parent
CREWDESK = str(Path(sys.executable).parent / "crewdesk")
REDIS_URL = os.environ.get("CREWDESK_BENCH_REDIS", "redis://127.0.0.1:6379/14")
JIRA_FIXTURE = ROOT / "tests" / "fixtures" / "jira-webhooks" / "mattermost-plugin-jira" / "webhook-cloud-issue-created-many-fields.json"

SUBJECTS = ["Double charge", "Export broken", "Password reset", "Cancel my plan", "Shipping address", "App crashes", "Invoice copy"]
BODIES = [
    "I was charged twice for my subscription this month, please refund one charge.",
    "The desktop app crashes with error 500 when I open the settings page.",
    "How do I reset my password? The reset email never arrives.",
    "Hello, I need an invoice with my VAT number, company name and address on it.",
    'The "Export" button does nothing, in Chrome and in Firefox.',
    "My order arrived damaged.\nThe box was open and two items are missing.\n\nPlease send replacements.",
    "Can I change the shipping address of order 4521, or is it too late?",
]
PRIORITIES = ["High", "normal", "", "low", "P1", "Medium", "urgent"]
BAD_KINDS = ("missing_body", "stray_quote", "nul", "overlong", "ragged", "duplicate")


@dataclass
class BacklogFile:
    """What a generated CSV holds: what an import must find."""

    rows: int = 0  # records, as the importer counts them
    good_ids: list[str] = field(default_factory=list)
    bad_lines: dict[int, str] = field(default_factory=dict)  # line -> kind
    duplicate_lines: set[int] = field(default_factory=set)


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text


def write_backlog_csv(path: Path, rows: int, *, bad_every: int = 100, seed: int = 7) -> BacklogFile:
    """A ticket CSV with one bad row in every `bad_every` (kinds in turn: missing body, stray quote, NUL byte, a
    60,000-character body, an extra field, a repeated id); good rows include quoted fields, escaped quotes and
    multi-line bodies."""
    rng = random.Random(seed)
    made = BacklogFile(rows=rows)
    line = 1
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("id,subject,body,customer,priority\n")
        for i in range(rows):
            line += 1
            ext, subject = f"BK-{i:07d}", SUBJECTS[i % len(SUBJECTS)]
            customer, priority = f"user{i % 5000}@example.com", PRIORITIES[i % len(PRIORITIES)]
            kind = BAD_KINDS[(i // bad_every) % len(BAD_KINDS)] if i % bad_every == bad_every - 1 else None
            if kind == "missing_body":
                text = f"{ext},{subject},,{customer},{priority}\n"
            elif kind == "stray_quote":
                text = f'{ext},{subject},"Unclosed body, the quote never ends,{customer},{priority}\n'
            elif kind == "nul":
                text = f"{ext},{subject},Binary junk \x00 in the body,{customer},{priority}\n"
            elif kind == "overlong":
                text = f"{ext},{subject},{'x' * 60_000},{customer},{priority}\n"
            elif kind == "ragged":
                text = f"{ext},{subject},Too many fields here,{customer},{priority},surprise\n"
            elif kind == "duplicate":
                text = f"BK-{i - bad_every // 2:07d},{subject},The same ticket again,{customer},{priority}\n"
            else:
                text = f"{ext},{_csv_field(subject)},{_csv_field(rng.choice(BODIES))},{customer},{priority}\n"
                made.good_ids.append(ext)
            if kind == "duplicate":
                made.duplicate_lines.add(line)
            elif kind is not None:
                made.bad_lines[line] = kind
            out.write(text)
            line += text.count("\n") - 1
    return made


# --- benchmark plumbing ----------------------------------------------------------------------------------------


def reset(url: str) -> None:
    import redis
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE inbound_events, messages, crew_runs, tickets, backlog_imports RESTART IDENTITY CASCADE"))
    engine.dispose()
    redis.Redis.from_url(REDIS_URL).flushdb()


def env_for(url: str, home: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "CREWDESK_DATABASE_URL": url,
        "CREWDESK_BROKER_URL": REDIS_URL,
        "CREWDESK_HOME": str(home),
        "CREWDESK_LLM_PROVIDER": "scripted",
        "CREWDESK_LOG_LEVEL": "WARNING",
        **extra,
    }


def run_import(url: str, home: Path, csv_path: Path, made: BacklogFile) -> tuple[float, float]:
    """(rows/s, peak RSS MiB) of one `crewdesk backlog import`, checked against what the file holds. The child is
    reaped with os.wait4, so ru_maxrss is that process alone."""
    import redis

    reset(url)
    env = env_for(url, home, CREWDESK_BACKLOG_ENQUEUE_PER_SECOND="0")
    logs = home / "import.log"
    with logs.open("wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen([CREWDESK, "backlog", "import", str(csv_path)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):  # 1: the file has bad rows, as intended
        raise RuntimeError(f"import failed ({proc.returncode}):\n{logs.read_text()[-3000:]}")
    queued = redis.Redis.from_url(REDIS_URL).llen("tickets")
    if queued != len(made.good_ids):
        raise RuntimeError(f"queued {queued}, expected {len(made.good_ids)}:\n{logs.read_text()[-3000:]}")
    return made.rows / seconds, usage.ru_maxrss / 1024


def backlog_section(url: str, home: Path, sizes: list[int], repeats: int) -> dict:
    results = {}
    for size in sizes:
        path = home / f"backlog-{size}.csv"
        made = write_backlog_csv(path, size)
        rates, rss = [], []
        for _ in range(repeats):
            rate, peak = run_import(url, home, path, made)
            rates.append(rate)
            rss.append(peak)
        results[size] = {
            "rows_per_s": statistics.median(rates),
            "peak_rss_mib": statistics.median(rss),
            "file_mib": path.stat().st_size / 2**20,
            "runs_rows_per_s": [round(r) for r in rates],
            "runs_rss_mib": [round(r, 1) for r in rss],
        }
        print(
            f"  {size:>7,} rows ({results[size]['file_mib']:.1f} MiB): {results[size]['rows_per_s']:>8,.0f} rows/s, "
            f"peak RSS {results[size]['peak_rss_mib']:.0f} MiB   (runs: {results[size]['runs_rows_per_s']} rows/s, {results[size]['runs_rss_mib']} MiB)"
        )
    if len(sizes) >= 2:
        small, large = results[sizes[0]], results[sizes[-1]]
        print(
            f"  ratio {sizes[-1]:,} / {sizes[0]:,} rows: rows/s x{large['rows_per_s'] / small['rows_per_s']:.2f}, "
            f"peak RSS x{large['peak_rss_mib'] / small['peak_rss_mib']:.2f} (constant memory: near 1)"
        )
    return results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jira_payload() -> dict:
    if JIRA_FIXTURE.exists():
        return json.loads(JIRA_FIXTURE.read_text())
    return {
        "webhookEvent": "jira:issue_created",
        "issue_event_type_name": "issue_created",
        "timestamp": 0,
        "user": {"accountId": "bench-user", "displayName": "Bench User"},
        "issue": {
            "id": "10001",
            "key": "BENCH-1",
            "fields": {
                "summary": "The export times out",
                "description": "Exports over 10k rows time out.",
                "reporter": {"accountId": "bench-user", "displayName": "Bench User"},
                "priority": {"name": "High"},
                "status": {"name": "Open"},
            },
        },
    }


async def _load(base: str, secret: str, total: int, concurrency: int, tag: str) -> tuple[list[float], float, dict[int, int]]:
    import httpx

    from crewdesk.intake.jira_webhook import sign

    template = jira_payload()
    latencies: list[float] = []
    codes: dict[int, int] = {}
    counter = iter(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        for n in counter:
            payload = json.loads(json.dumps(template))
            # A Jira issue key (capitals, digits, _) and a delivery stamped now, as the webhook takes nothing else.
            payload["issue"]["key"], payload["issue"]["id"] = f"BENCH{tag.upper()}-{n}", str(900000 + n)
            payload["timestamp"] = int(time.time() * 1000)
            body = json.dumps(payload).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Hub-Signature": sign(secret, body),
                "X-Atlassian-Webhook-Identifier": f"{tag}-{n}-{uuid.uuid4().hex}",
            }
            start = time.perf_counter()
            response = await client.post(f"{base}/webhooks/jira", content=body, headers=headers)
            latencies.append(time.perf_counter() - start)
            codes[response.status_code] = codes.get(response.status_code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, wall, codes


def webhook_section(url: str, home: Path, requests: int, concurrency: int, repeats: int) -> dict | None:
    import httpx

    secret = "bench-secret-" + uuid.uuid4().hex[:8]
    port = free_port()
    env = env_for(url, home, CREWDESK_JIRA_WEBHOOK_SECRET=secret)
    log = (home / "api.log").open("wb")
    api = subprocess.Popen([CREWDESK, "api", "--port", str(port)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                spec = httpx.get(f"{base}/openapi.json", timeout=2).json()
                break
            except httpx.HTTPError:
                if api.poll() is not None or time.monotonic() > deadline:
                    print(f"  SKIPPED: `crewdesk api` did not start:\n{(home / 'api.log').read_text()[-2000:]}")
                    return None
                time.sleep(0.3)
        if "/webhooks/jira" not in spec.get("paths", {}):
            print("  SKIPPED: the API has no POST /webhooks/jira yet")
            return None
        asyncio.run(_load(base, secret, min(100, requests), concurrency, "warm"))  # connections, caches, first queries
        p50s, p99s, rates = [], [], []
        for repeat in range(repeats):
            reset(url)
            latencies, wall, codes = asyncio.run(_load(base, secret, requests, concurrency, f"r{repeat}"))
            if set(codes) != {202}:
                print(f"  warning: status codes {codes}")
            ordered = sorted(latencies)
            p50s.append(statistics.median(ordered) * 1000)
            p99s.append(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000)
            rates.append(len(latencies) / wall)
        result = {
            "p50_ms": statistics.median(p50s),
            "p99_ms": statistics.median(p99s),
            "requests_per_s": statistics.median(rates),
            "runs_p50_ms": [round(v, 1) for v in p50s],
            "runs_p99_ms": [round(v, 1) for v in p99s],
            "runs_rps": [round(v) for v in rates],
        }
        print(
            f"  {requests:,} signed issue_created deliveries, concurrency {concurrency}, one uvicorn worker: p50 {result['p50_ms']:.1f} ms, "
            f"p99 {result['p99_ms']:.1f} ms, {result['requests_per_s']:,.0f} requests/s   (runs: p50 {result['runs_p50_ms']}, p99 {result['runs_p99_ms']}, "
            f"{result['runs_rps']} req/s)"
        )
        print(f"  ratio p99 / p50: x{result['p99_ms'] / result['p50_ms']:.1f}")
        return result
    finally:
        os.killpg(api.pid, signal.SIGTERM)
        try:
            api.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(api.pid, signal.SIGKILL)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="10000,100000", help="CSV sizes in rows, comma-separated.")
    parser.add_argument("--requests", type=int, default=2000, help="Webhook deliveries per run.")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--skip-webhook", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="crewdesk-bench-intake-"))
    os.environ.update(CREWDESK_HOME=str(home), CREWDESK_LOG_LEVEL="WARNING", CREWAI_DISABLE_TELEMETRY="true", OTEL_SDK_DISABLED="true")
    sys.path.insert(0, str(ROOT))
    print(
        f"crewdesk intake benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"medians of {args.repeats}"
    )
    url = create_db()
    try:
        print("backlog import (crewdesk backlog import, CSV with 1% bad rows, queued on Redis, no rate limit):")
        backlog = backlog_section(url, home, [int(s) for s in args.sizes.split(",")], args.repeats)
        webhook = None
        if not args.skip_webhook:
            print("Jira webhook endpoint (POST /webhooks/jira):")
            webhook = webhook_section(url, home, args.requests, args.concurrency, args.repeats)
        (home / "results.json").write_text(json.dumps({"backlog": backlog, "webhook": webhook}, indent=1))
        print(f"results: {home / 'results.json'}")
    finally:
        drop_db(url)


if __name__ == "__main__":
    main()
