"""Batch backlog import against real PostgreSQL and Redis: every format with bad rows, resume after Ctrl-C and SIGKILL,
constant memory, the report, and the 100k-row acceptance run through `crewdesk backlog import`."""

from __future__ import annotations

import html
import json
import os
import signal
import subprocess
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from bench.intake import write_backlog_csv
from crewdesk.cli import BAD_ROWS_SHOWN
from crewdesk.db import transaction
from crewdesk.intake.backlog import ENQUEUE_BATCH, detect_format, import_backlog, open_backlog
from crewdesk.intake.backlog_report import bad_rows, percentile, summarise, write_html
from crewdesk.intake.files import iter_jsonl
from crewdesk.intake.models import BacklogImport, InboundEvent
from crewdesk.intake.service import accept_rows
from crewdesk.ratelimit import TokenBucket
from crewdesk.runs.models import CrewRun
from crewdesk.tickets import bulk
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket, TicketStatus
from crewdesk.tickets.schemas import TicketIn
from tests.conftest import REDIS_URL
from tests.helpers import CREWDESK, ROOT

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "backlog"


class Recorder:
    """An enqueue callable that keeps what was sent, in order."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def __call__(self, ticket_ids) -> None:
        self.sent.extend(ticket_ids)


def run_import(session_factory, path, **kwargs):
    recorder = kwargs.pop("send", None) or Recorder()
    backlog = import_backlog(session_factory=session_factory, path=path, send=recorder, rate_per_second=kwargs.pop("rate_per_second", 0), **kwargs)
    return backlog, recorder


def events_by_kind(session_factory, import_id: int) -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {"bad_row": {}, "duplicate": {}}
    with session_factory() as db:
        for row in bad_rows(db=db, import_id=import_id):
            out[row.kind][row.line] = row.reason
    return out


def broker_ticket_ids(url: str = REDIS_URL) -> Counter:
    """How many Celery messages for each ticket id really sit in the broker's `tickets` list."""
    client = redis.Redis.from_url(url)
    counts: Counter = Counter()
    total, page = client.llen("tickets"), 5000
    for start in range(0, total, page):
        for raw in client.lrange("tickets", start, start + page - 1):
            message = json.loads(raw)
            assert message["headers"]["task"] == "crewdesk.process_ticket"
            counts[json.loads(message["headers"]["argsrepr"])[0]] += 1
    return counts


def cli_env(settings, tmp_path, **extra) -> dict[str, str]:
    return {
        **os.environ,
        "CREWDESK_DATABASE_URL": settings.database_url,
        "CREWDESK_BROKER_URL": REDIS_URL,
        "CREWDESK_HOME": str(tmp_path / "home"),
        "CREWDESK_LOG_LEVEL": "WARNING",
        **extra,
    }


# --- formats --------------------------------------------------------------------------------------------------------

FORMAT_CASES = {
    "tickets.csv": (
        "csv",
        "file",
        ["C-1001", "C-1002", "C-1003", "C-1007", "C-1008"],
        {8: "body is empty", 9: "expected 6 fields, got 8", 10: "never closes", 13: "id is empty"},
        {12},
    ),
    "tickets.jsonl": (
        "jsonl",
        "file",
        ["J-1", "J-2", "J-5"],
        {5: "body: Field required", 6: "not valid JSON", 7: "priority", 9: "expected a JSON object"},
        {8},
    ),
    "zendesk_tickets.json": ("zendesk", "zendesk", ["35436", "35437", "35440"], {25: "body is empty", 33: "not valid JSON (line 36"}, {49}),
    "zendesk_tickets.ndjson": ("zendesk", "zendesk", ["501", "502", "505", "506", "507"], {3: "not valid JSON", 4: "body is empty"}, set()),
    "jira_export.csv": ("jira-csv", "jira", ["SUP-101", "SUP-102", "SUP-103", "SUP-106"], {6: "body is empty", 7: "expected 13 fields, got 10"}, set()),
}


@pytest.mark.parametrize("name", sorted(FORMAT_CASES))
def test_each_format_imports_good_rows_and_reports_bad_ones_by_line(session_factory, name):
    fmt, source, good, bad, duplicates = FORMAT_CASES[name]
    path = FIXTURES / name
    assert detect_format(path) == fmt

    backlog, recorder = run_import(session_factory, path)

    assert backlog.status == "finished" and backlog.format == fmt
    with session_factory() as db:
        stored = db.execute(select(Ticket).where(Ticket.backlog_id == backlog.id).order_by(Ticket.id)).scalars().all()
        messages = db.execute(select(func.count()).select_from(Message).join(Ticket).where(Ticket.backlog_id == backlog.id)).scalar_one()
    assert [t.external_id for t in stored] == good and {t.source for t in stored} == {source}
    assert all(t.status == "queued" for t in stored) and messages == len(good)
    assert sorted(recorder.sent) == [t.id for t in stored]  # each new ticket queued once
    events = events_by_kind(session_factory, backlog.id)
    assert set(events["bad_row"]) == set(bad), events
    for line, needle in bad.items():
        assert events["bad_row"][line].startswith(f"line {line}: ") and needle in events["bad_row"][line]
    assert set(events["duplicate"]) == duplicates
    total = len(good) + len(bad) + len(duplicates)
    assert (backlog.rows_done, backlog.rows_ok, backlog.rows_bad, backlog.rows_duplicate, backlog.rows_enqueued) == (
        total,
        len(good),
        len(bad),
        len(duplicates),
        len(good),
    )


def test_fields_are_mapped_from_each_export(session_factory):
    for name in ("tickets.csv", "zendesk_tickets.json", "jira_export.csv"):
        run_import(session_factory, FIXTURES / name)
    with session_factory() as db:

        def find(source, external_id):
            return tickets.find(db=db, source=source, external_id=external_id)

        multi = find("file", "C-1002")
        assert multi.body.startswith("The CSV export button does nothing.\nI tried Chrome") and 'the "monthly" report' in multi.body
        assert multi.raw["backlog_line"] == 3 and multi.customer == "bo@example.com" and multi.subject == "Export broken"
        assert find("file", "C-1001").priority == "high" and find("file", "C-1003").priority is None
        printer = find("zendesk", "35436")
        assert printer.customer == "printer.owner@example.com" and printer.priority == "urgent" and "colorful.\nIt started" in printer.body
        assert find("zendesk", "35437").customer == "20978393"  # no e-mail in the export: the requester id
        login = find("jira", "SUP-101")
        assert login.customer == "ana@example.com" and login.priority == "high" and login.subject == "Cannot log in after password change"
        assert '"invalid credentials"' in login.body and "[01/Mar/24 10:02 AM] ana.lima: Same problem in a private window." in login.body
        assert find("jira", "SUP-102").priority == "urgent" and find("jira", "SUP-103").body == "Feature question"


def test_a_row_already_imported_from_another_file_or_channel_is_not_queued_again(session_factory, tmp_path):
    _first, _recorder = run_import(session_factory, FIXTURES / "tickets.csv")
    other = tmp_path / "more.csv"
    other.write_text("id,body\nC-1001,I was charged twice (sent again from another export)\nC-2000,A new one\n")
    second, again = run_import(session_factory, other)
    assert (second.rows_ok, second.rows_duplicate) == (1, 1)
    with session_factory() as db:
        new = tickets.find(db=db, source="file", external_id="C-2000")
    assert again.sent == [new.id]
    assert events_by_kind(session_factory, second.id)["duplicate"][2].startswith("line 2: duplicate of ticket 1 (file:C-1001)")
    # --source makes them a different set of tickets
    third, more = run_import(session_factory, other, source="legacy-crm")
    assert third.id == second.id and third.status == "finished" and more.sent == []  # the same file: already finished
    copy = tmp_path / "more-again.csv"
    copy.write_text(other.read_text() + "\n")
    fourth, fresh = run_import(session_factory, copy, source="legacy-crm")
    assert fourth.rows_ok == 2 and len(fresh.sent) == 2


def _ids(session_factory, import_id: int) -> list[int]:
    with session_factory() as db:
        return list(db.execute(select(Ticket.id).where(Ticket.backlog_id == import_id)).scalars())


def test_a_resume_goes_on_with_the_source_the_import_started_with(session_factory, tmp_path):
    from crewdesk.errors import InvalidTicket

    path = tmp_path / "legacy.csv"
    path.write_text("id,body\n" + "".join(f"L-{n},Old ticket number {n}\n" for n in range(6)))

    class StopAfterFirst(Recorder):
        def __call__(self, ticket_ids) -> None:
            if self.sent:
                raise KeyboardInterrupt
            super().__call__(ticket_ids)

    first = StopAfterFirst()
    with pytest.raises(Exception, match="interrupted"):
        run_import(session_factory, path, source="legacy-crm", chunk=2, send=first)
    with pytest.raises(InvalidTicket, match="started with --source legacy-crm; resume it with the same, or without --source"):
        run_import(session_factory, path, source="other-crm", chunk=2)
    resumed, recorder = run_import(session_factory, path, chunk=2)  # no --source: the stored one

    assert resumed.status == "finished" and resumed.source == "legacy-crm" and resumed.rows_ok == 6
    with session_factory() as db:
        sources = dict(db.execute(select(Ticket.external_id, Ticket.source).where(Ticket.backlog_id == resumed.id)).all())
    assert sources == {f"L-{n}": "legacy-crm" for n in range(6)}
    every = _ids(session_factory, resumed.id)
    assert len(every) == 6 and len(first.sent) == 2  # two sent before the interruption
    assert sorted(first.sent + recorder.sent) == sorted(every)  # and the other four after it: each once


def test_format_override_and_unusable_files_are_clear_errors(session_factory, tmp_path):
    from crewdesk.errors import InvalidTicket

    with pytest.raises(InvalidTicket, match="no such file"):
        run_import(session_factory, tmp_path / "missing.csv")
    headless = tmp_path / "nobody.csv"
    headless.write_text("id,subject\n1,hello\n")
    with pytest.raises(InvalidTicket, match="no body column"):
        run_import(session_factory, headless)
    with pytest.raises(InvalidTicket, match="unknown format"):
        run_import(session_factory, FIXTURES / "tickets.csv", fmt="xml")
    jsonl_named_txt = tmp_path / "tickets.txt"
    jsonl_named_txt.write_text((FIXTURES / "tickets.jsonl").read_text())
    assert detect_format(jsonl_named_txt) == "jsonl"
    as_csv = tmp_path / "zendesk.csv"
    as_csv.write_text("id,description,requester\n7,Printer jams,pat@example.com\n")
    backlog, _ = run_import(session_factory, as_csv, fmt="csv")
    assert backlog.rows_ok == 1


def test_token_bucket_limits_the_enqueue_rate():
    now = [0.0]
    bucket = TokenBucket(50, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    for _ in range(50):
        bucket.take(10)
    # 500 tokens at 50/s with a 50-token burst: at least 9 seconds, and no more than that plus rounding
    assert 9.0 <= now[0] <= 9.5
    free = TokenBucket(0, sleep=lambda s: 1 / 0)
    free.take(10_000)  # no limit: never waits


def test_rate_limited_import_sends_in_small_batches(session_factory):
    now = [0.0]
    calls: list[tuple[float, int]] = []

    def enqueue(ids):
        calls.append((now[0], len(ids)))

    backlog = import_backlog(
        session_factory=session_factory,
        path=FIXTURES / "tickets.csv",
        send=enqueue,
        rate_per_second=2,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    assert backlog.rows_enqueued == 5 and [n for _, n in calls] == [2, 2, 1]
    assert now[0] >= 1.5  # 5 tickets at 2/s after a burst of 2


def test_crash_between_commit_and_enqueue_is_healed_on_resume(session_factory, tmp_path):
    path = tmp_path / "b.csv"
    made = write_backlog_csv(path, 2_000)

    class Crash(Exception):
        pass

    sent: list[int] = []

    def flaky(ids):
        if len(sent) >= 700:
            raise Crash("the broker went away")
        sent.extend(ids)

    with pytest.raises(Crash):
        import_backlog(session_factory=session_factory, path=path, send=flaky, chunk=300, rate_per_second=0)
    with session_factory() as db:
        half = db.execute(select(BacklogImport)).scalar_one()
        waiting = db.execute(select(func.count()).select_from(Ticket).where(Ticket.status == "received")).scalar_one()
    assert half.status == "running" and half.rows_done == 900 and waiting > 0  # committed, never sent

    backlog, recorder = run_import(session_factory, path)
    both = Counter(sent + recorder.sent)
    with session_factory() as db:
        ids = set(db.execute(select(Ticket.id).where(Ticket.backlog_id == backlog.id)).scalars())
        statuses = set(db.execute(select(Ticket.status).where(Ticket.backlog_id == backlog.id)).scalars())
    assert set(both) == ids and max(both.values()) == 1 and statuses == {"queued"}
    assert len(ids) == len(made.good_ids) == backlog.rows_ok == backlog.rows_enqueued
    assert recorder.sent[:waiting] == sorted(recorder.sent[:waiting])  # the stragglers went first


def test_accept_rows_keeps_its_behaviour_on_the_bulk_path(session_factory):
    lines = ['{"id": "a", "body": "one"}', '{"id": "a", "body": "again"}', '{"id": "b"}', '{"id": "c", "body": "three"}']
    report = accept_rows(session_factory=session_factory, rows=iter_jsonl(lines), chunk=2)
    assert len(report.to_enqueue) == 2 and len(report.duplicates) == 1 and [r[0] for r in report.rejected] == [3]
    again = accept_rows(session_factory=session_factory, rows=iter_jsonl(lines))
    assert sorted(again.to_enqueue) == sorted(report.to_enqueue)  # still `received`: offered again, as before
    with transaction(session_factory) as db:
        tickets.mark_queued(db=db, ticket_ids=report.to_enqueue)
    third = accept_rows(session_factory=session_factory, rows=iter_jsonl(lines))
    assert third.to_enqueue == [] and len(third.duplicates) == 3


def test_submit_many_orders_results_and_dedups(session_factory, make_ticket):
    existing = make_ticket(external_id="x1")
    batch = [TicketIn(source="test", external_id=e, body="hi") for e in ("x2", "x1", "x3", "x2")]
    with transaction(session_factory) as db:
        result = bulk.submit_many(db=db, tickets_in=batch)
    assert [created for _, created in result] == [True, False, True, False]
    assert result[1][0] == existing and result[0][0] == result[3][0]
    with transaction(session_factory) as db:
        moved = tickets.mark_queued(db=db, ticket_ids=[result[0][0], existing])
        ticket = tickets.get(db=db, ticket_id=existing)
        tickets.transition(ticket=ticket, to=TicketStatus.triaging)
    with transaction(session_factory) as db:
        assert tickets.mark_queued(db=db, ticket_ids=[existing]) == 0  # a worker already took it: left alone
    assert moved == 2


# --- constant memory ------------------------------------------------------------------------------------------------


def write_zendesk(path: Path, n: int) -> None:
    with path.open("w") as out:
        out.write('{\n  "tickets": [\n')
        for i in range(n):
            ticket = {
                "id": i + 1,
                "subject": f"Subject {i}",
                "description": "My printer is on fire.\nPlease help. " * 3,
                "priority": "normal",
                "status": "open",
                "requester_id": 1000 + i,
                "via": {"channel": "email", "source": {"from": {"address": f"u{i}@example.com"}}},
            }
            body = json.dumps(ticket, indent=2).replace("\n", "\n    ")
            out.write(f"    {body}{',' if i < n - 1 else ''}\n")
        out.write(f'  ],\n  "count": {n}\n}}\n')


def peak_reading(path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        with open_backlog(path) as reader:
            rows = sum(1 for _ in reader.rows())
        return rows, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["csv", "zendesk"])
def test_readers_stream_in_constant_memory(tmp_path, kind):
    """10x the rows, about the same peak. (pydantic-core keeps a bounded cache of up to 16,384 strings, about 1 MB,
    that fills during the first tens of thousands of rows: the ratio allows for it, the absolute bound too.)"""
    peaks = {}
    for n in (10_000, 100_000):
        path = tmp_path / f"{kind}-{n}.{'csv' if kind == 'csv' else 'json'}"
        if kind == "csv":
            write_backlog_csv(path, n)
        else:
            write_zendesk(path, n)
        rows, peaks[n] = peak_reading(path)
        assert rows == n
    assert path.stat().st_size > 20_000_000
    assert peaks[100_000] / peaks[10_000] < 2 and peaks[100_000] < 5_000_000, peaks


# --- resume after Ctrl-C and SIGKILL, through the command ---------------------------------------------------------------


def wait_until(session_factory, predicate, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_factory() as db:
            backlog = db.execute(select(BacklogImport)).scalar_one_or_none()
        if backlog is not None and predicate(backlog):
            return backlog
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("import did not get there in time")


def test_ctrl_c_then_sigkill_then_resume_queues_every_good_row_once(settings, session_factory, redis_url, tmp_path):
    path = tmp_path / "backlog.csv"
    made = write_backlog_csv(path, 20_000)
    # 1,000 rows/s: the whole file takes 20 s, so a test process starved of CPU still interrupts it half-way
    slow = cli_env(settings, tmp_path, CREWDESK_BACKLOG_ENQUEUE_PER_SECOND="1000", CREWDESK_BACKLOG_CHUNK_ROWS="500")

    first = subprocess.Popen([CREWDESK, "backlog", "import", str(path)], env=slow, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(session_factory, lambda b: b.rows_enqueued >= 2_000, first)
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 130, out + err
    assert "interrupted; import 1 has stored" in err and "run the same command again to resume" in err and "Traceback" not in err
    with session_factory() as db:
        stopped = db.get(BacklogImport, 1)
    assert stopped.status == "running" and 0 < stopped.rows_done < made.rows

    second = subprocess.Popen([CREWDESK, "backlog", "import", str(path)], env=slow, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(session_factory, lambda b: b.rows_done >= stopped.rows_done + 4_000, second)
    second.send_signal(signal.SIGKILL)
    second.wait(30)

    third = subprocess.run(
        [CREWDESK, "backlog", "import", str(path)],
        env=cli_env(settings, tmp_path, CREWDESK_BACKLOG_ENQUEUE_PER_SECOND="0"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert third.returncode == 1, third.stdout + third.stderr  # 1: the file has bad rows
    assert (
        f"import #1 finished: {made.rows:,} rows: {len(made.good_ids):,} ok, {len(made.bad_lines):,} bad, {len(made.duplicate_lines):,} duplicate"
        in third.stdout
    )

    with session_factory() as db:
        backlog = db.get(BacklogImport, 1)
        stored = dict(db.execute(select(Ticket.external_id, Ticket.id).where(Ticket.backlog_id == 1)).all())
        statuses = set(db.execute(select(Ticket.status).where(Ticket.backlog_id == 1)).scalars())
    assert sorted(stored) == sorted(made.good_ids) and statuses == {"queued"}  # nothing lost, nothing twice
    assert (backlog.rows_done, backlog.rows_ok, backlog.rows_bad, backlog.rows_duplicate, backlog.rows_enqueued) == (
        made.rows,
        len(made.good_ids),
        len(made.bad_lines),
        len(made.duplicate_lines),
        len(made.good_ids),
    )
    events = events_by_kind(session_factory, 1)
    assert set(events["bad_row"]) == set(made.bad_lines) and set(events["duplicate"]) == made.duplicate_lines
    on_broker = broker_ticket_ids()
    assert set(on_broker) == set(stored.values())
    # Only a batch sent but not yet marked queued when a run stopped can be sent twice (the pipeline drops repeats).
    assert sum(on_broker.values()) - len(stored) <= 2 * ENQUEUE_BATCH

    fourth = subprocess.run([CREWDESK, "backlog", "import", str(path)], env=slow, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "already finished" in fourth.stdout and "nothing queued" in fourth.stdout
    assert sum(broker_ticket_ids().values()) == sum(on_broker.values())


# --- the report -----------------------------------------------------------------------------------------------------------


def test_report_numbers_match_the_database(settings, session_factory, tmp_path):
    from crews.pipeline import Pipeline
    from tests.helpers import RecordingFactory

    backlog, recorder = run_import(session_factory, FIXTURES / "tickets.csv")
    pipeline = Pipeline(settings=settings, session_factory=session_factory, llm_factory=RecordingFactory(settings))
    for ticket_id in recorder.sent[:4]:  # one left queued: the report covers a backlog still in progress too
        pipeline.process(ticket_id)

    with session_factory() as db:
        summary = summarise(db=db)
        statuses = Counter(db.execute(select(Ticket.status).where(Ticket.backlog_id == backlog.id)).scalars())
        categories = Counter(c or "untriaged" for c in db.execute(select(Ticket.category).where(Ticket.backlog_id == backlog.id)).scalars())
        runs = db.execute(select(CrewRun).join(Ticket).where(Ticket.backlog_id == backlog.id)).scalars().all()
        events = db.execute(select(InboundEvent).where(InboundEvent.channel == "backlog")).scalars().all()
    finished = sum(statuses[s] for s in ("resolved", "escalated", "failed"))
    latencies = sorted(r.latency_s for r in runs if r.status == "completed")
    assert summary.import_id == backlog.id and dict(statuses) == summary.by_status and dict(categories) == summary.by_category
    assert finished == 4 and summary.rate("resolved") == statuses["resolved"] / 4 and summary.rate("escalated") == statuses["escalated"] / 4
    assert summary.runs == len(runs) and summary.tokens_in == sum(r.tokens_in for r in runs) > 0
    assert summary.tokens_out == sum(r.tokens_out for r in runs) and summary.cost_usd == pytest.approx(sum(r.cost_usd for r in runs))
    assert summary.latency_p50 == pytest.approx((latencies[1] + latencies[2]) / 2) and latencies[2] <= summary.latency_p95 <= latencies[3]
    assert [r.line for r in summary.bad_rows] == [8, 9, 10, 12, 13] == sorted(e.detail["line"] for e in events)
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([5], 95) == 5 and percentile([], 50) is None

    html_path = tmp_path / "report.html"
    shown = subprocess.run(
        [CREWDESK, "backlog", "report", "--html", str(html_path)], env=cli_env(settings, tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    page = html_path.read_text()
    facts = dict(summary.facts())
    for label in (
        "rows ok (new tickets)",
        "tickets by status",
        "category mix",
        "resolution rate",
        "escalation rate",
        "tokens in / out",
        "cost",
        "latency p50 / p95",
    ):
        assert facts[label] in shown.stdout, label
        assert f"<th>{html.escape(label)}</th><td>{html.escape(facts[label])}</td>" in page, label
    assert page.count("<svg") == 3 and "Category mix" in page and "Outcome" in page and "latency" in page
    for line in (8, 9, 10, 12, 13):
        assert f"<tr><td>{line}</td>" in page and f"line {line}:" in shown.stdout
    same = subprocess.run(
        [CREWDESK, "backlog", "report", str(backlog.id)], env=cli_env(settings, tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert same.returncode == 0 and f"backlog import #{backlog.id}" in same.stdout
    missing = subprocess.run([CREWDESK, "backlog", "report", "999"], env=cli_env(settings, tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no backlog import 999" in missing.stderr


def test_report_html_escapes_what_came_from_the_file(session_factory, tmp_path):
    evil = tmp_path / "evil.csv"
    evil.write_text('id,body\n<script>alert(1)</script>,\n"x",[bold]markup[/bold] is text\n')
    run_import(session_factory, evil)
    with session_factory() as db:
        page = write_html(summarise(db=db), tmp_path / "r.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


# --- acceptance -----------------------------------------------------------------------------------------------------------


def test_acceptance_100k_rows_with_1_percent_bad_through_the_command(settings, session_factory, redis_url, tmp_path):
    path = tmp_path / "backlog-100k.csv"
    made = write_backlog_csv(path, 100_000)
    assert len(made.bad_lines) + len(made.duplicate_lines) == 1_000
    assert set(Counter(made.bad_lines.values())) == {"missing_body", "stray_quote", "nul", "overlong", "ragged"}

    started = time.monotonic()
    result = subprocess.run(
        [CREWDESK, "backlog", "import", str(path)],
        env=cli_env(settings, tmp_path, CREWDESK_BACKLOG_ENQUEUE_PER_SECOND="0"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.monotonic() - started
    print(f"100k-row import: {seconds:.1f} s, {made.rows / seconds:,.0f} rows/s")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert (
        f"{made.rows:,} rows: {len(made.good_ids):,} ok, {len(made.bad_lines):,} bad, {len(made.duplicate_lines):,} duplicate; {len(made.good_ids):,} queued"
        in result.stdout
    )
    shown = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert len(shown) == BAD_ROWS_SHOWN and all(int(line.split(":")[0][5:]) in made.bad_lines for line in shown)
    assert f"and {len(made.bad_lines) - len(shown):,} more bad rows: crewdesk backlog report 1" in result.stderr

    with session_factory() as db:
        stored = dict(db.execute(select(Ticket.id, Ticket.external_id).where(Ticket.backlog_id == 1)).all())
        statuses = set(db.execute(select(Ticket.status).where(Ticket.backlog_id == 1)).scalars())
        summary = summarise(db=db, import_id=1)
    assert sorted(stored.values()) == made.good_ids and statuses == {"queued"}
    on_broker = broker_ticket_ids()
    assert set(on_broker) == set(stored) and set(on_broker.values()) == {1}  # every good row on the broker, exactly once
    reported = {r.line: r for r in summary.bad_rows}
    assert {line for line, r in reported.items() if r.kind == "bad_row"} == set(made.bad_lines)
    assert {line for line, r in reported.items() if r.kind == "duplicate"} == made.duplicate_lines
    reasons = {kind: next(reported[line].reason for line, k in made.bad_lines.items() if k == kind) for kind in set(made.bad_lines.values())}
    assert "body is empty" in reasons["missing_body"] and "stray quote" in reasons["stray_quote"] and "NUL" in reasons["nul"]
    assert "at most 50000 characters" in reasons["overlong"] and "expected 5 fields, got 6" in reasons["ragged"]
