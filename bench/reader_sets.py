"""The request reader alone on ticket sets: the procedures with a scripted model that never decides (every decision
raises, so a ticket the rules cannot settle is asked about or handed over), on a throw-away SQLite store, memory off,
approvals off. Fast (about a second per ticket), and what it measures is the rules, not the model.

    .venv/bin/python bench/reader_sets.py bench/generalization/dev.jsonl [more sets... | tau2-train] [--ids=A,B] [--show] [--audit] [--writes=F]

Prints per set "N/M exact, resolved-wrong K" and a line per ticket that missed (WRONG: marked resolved). --show prints
each reply, --audit also its decisions, policy checks and tool calls. --writes appends one JSON line per ticket (set, id, status, exact, the store writes the rules made: tool and
arguments), for comparing the rules with another reader (`bench/extract_cross.py`). The figures the issue asks for are
the real model's (`crewdesk eval examples`); this is the quick loop."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

_TMP = tempfile.mkdtemp(prefix="crewdesk-reader-")
os.environ.update(
    {
        "CREWAI_DISABLE_TELEMETRY": "true",
        "OTEL_SDK_DISABLED": "true",
        "CREWAI_TRACING_ENABLED": "false",
        "CREWAI_STORAGE_DIR": _TMP,
        "CREWDESK_DATABASE_URL": f"sqlite:///{_TMP}/reader.db",
        "CREWDESK_MEMORY_BACKEND": "off",
        # the rules alone: writes are made as an evaluation makes them (no confirmation), and neither the model's check of
        # the reading nor its second opinion on risk is asked (the scripted model cannot answer them)
        "CREWDESK_CONFIRM_WRITES": "off",
        "CREWDESK_WRITE_CHECK": "off",
        "CREWDESK_RISK_MODEL_CHECK": "off",
    }
)

from crewdesk.audit.models import AuditEvent
from crewdesk.cli.common import load_config, migrate, sessions
from crewdesk.db import transaction
from crewdesk.errors import ModelOutputError
from crewdesk.llm.factory import LLMFactory
from crewdesk.store.service import DEFAULT_DB_JSON, load_store, read_store
from crewdesk.tickets.models import Ticket
from crews.eval_examples import read_set, run_set
from crews.pipeline import Pipeline
from crews.procedures import extract


class NeverDecides:
    """The scripted responder: no crew turn, no decision."""

    def __call__(self, messages, role):
        raise ModelOutputError("scripted: no crew turn")

    def decide(self, name, messages, schema):
        raise ModelOutputError("scripted: no decision")


WRITES = frozenset(extract.TOOLS.values())  # the store's writes (a hand-over is an outcome, not one)


def tau2_train() -> list[dict]:
    """tau2 retail's train tasks as the one-ticket evaluation writes them (crews/eval_tickets.ticket_for), each with its
    reference's store writes as the expected actions: the rules alone on train, in about a minute."""
    from crews.eval_tickets import load_tasks, ticket_for

    rows = []
    for task in load_tasks("train"):
        subject, body = ticket_for(task)
        actions = [{"name": a["name"], "arguments": a["arguments"]} for a in task["evaluation_criteria"]["actions"] if a["name"] in WRITES]
        status = "resolved" if actions else "not_resolved"
        rows.append({"id": f"T{task['id']}", "language": "en", "customer": "", "subject": subject, "body": body, "actions": actions, "expect_status": status})
    return rows


def main(paths: list[str], ids: set[str] | None, show: bool, writes: str = "", audit: bool = False) -> None:
    settings = load_config(log_json=False, log_level="ERROR", memory_backend="off", approval_threshold_usd=-1.0, procedures=True, llm_provider="scripted")
    migrate(settings)
    factory = sessions(settings)
    with transaction(factory) as db:
        load_store(db=db, data=read_store(DEFAULT_DB_JSON))
    pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings, responder=NeverDecides()))
    for path in paths:
        rows = [r for r in (tau2_train() if path == "tau2-train" else read_set(Path(path))) if ids is None or str(r["id"]) in ids]
        started = time.perf_counter()
        report = run_set(pipeline=pipeline, session_factory=factory, rows=rows, name=Path(path).stem)
        wrong = [t for t in report.trials if t.status == "resolved" and not t.success]
        exact = sum(t.success for t in report.trials)
        print(f"{path}: {exact}/{len(report.trials)} exact, resolved-wrong {len(wrong)} ({time.perf_counter() - started:.0f} s)", flush=True)
        for t in report.trials:
            if not t.success:
                print(("WRONG " if t.status == "resolved" else "miss  ") + f"{t.task_id} {t.status} | " + " ;; ".join(t.problems)[:400])
        if writes:
            by_id = {t.task_id: t for t in report.trials}
            with factory() as db, open(writes, "a") as out:
                for ticket in db.query(Ticket).order_by(Ticket.id.desc()).limit(len(rows)).all()[::-1]:
                    task = next((k for k in by_id if str(ticket.external_id).startswith(k + "-")), None)
                    if task is None:
                        continue
                    events = db.query(AuditEvent).filter(AuditEvent.ticket_id == ticket.id, AuditEvent.kind == "tool_call").order_by(AuditEvent.seq).all()
                    made = [{"name": e.name, "arguments": e.arguments} for e in events if e.name in WRITES and not e.error]
                    t = by_id[task]
                    out.write(json.dumps({"set": Path(path).stem, "id": task, "status": t.status, "exact": t.success, "writes": made}) + "\n")
        if show or audit:
            with factory() as db:
                for ticket in db.query(Ticket).order_by(Ticket.id.desc()).limit(len(rows)).all()[::-1]:
                    print("=====", ticket.external_id, ticket.status, ticket.status_reason)
                    print((ticket.resolution or {}).get("customer_reply", ""))
                    if audit:  # what the procedure decided on the way: decisions, the policy's checks, the tool calls
                        for e in db.query(AuditEvent).filter(AuditEvent.ticket_id == ticket.id).order_by(AuditEvent.seq).all():
                            if e.kind in ("decision", "policy", "tool_call", "effect"):
                                print(f"  {e.kind}/{e.name} {json.dumps(e.arguments, default=str)[:300]} -> {json.dumps(e.result, default=str)[:200]}")


if __name__ == "__main__":
    args = sys.argv[1:]
    chosen = next((set(a[len("--ids=") :].split(",")) for a in args if a.startswith("--ids=")), None)
    dump = next((a[len("--writes=") :] for a in args if a.startswith("--writes=")), "")
    main([a for a in args if not a.startswith("--")], chosen, "--show" in args, dump, "--audit" in args)
