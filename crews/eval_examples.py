"""`crewdesk eval examples PATH`: a set of tickets, each run on a fresh copy of the demo store and scored by what it left
there. A ticket with `actions` (the writes a correct answer makes) passes when the documents it changed are exactly the
ones those writes change, and as they change them (tau2-bench's end-state scoring, per document, so a miss says which
order differs and how). `expect` (status, reply language, order statuses and fields) is checked as stated;
`expect_status` (`resolved` or `not_resolved`) is reported beside it. Each finished ticket is one journal line, so an
interrupted run resumes where it stopped."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.connectors.base import StoreError
from crewdesk.connectors.builtin_store import SqlRetailStore
from crewdesk.db import transaction
from crewdesk.runs.models import CrewRun
from crewdesk.store import snapshot
from crewdesk.store.models import StoreOrder, StoreUser
from crewdesk.store.operations import operations
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Ticket
from crewdesk.tickets.schemas import TicketIn
from crews.eval_report import EvalReport, Trial, read_journal
from crews.evaluation import process_deferring, tool_counts
from crews.pipeline import Pipeline

TICKET_FIELDS = ("subject", "body", "customer", "priority")


def read_set(path: Path) -> list[dict[str, Any]]:
    """The set's rows (JSON lines or a JSON array), each with an id."""
    from crewdesk.intake.files import iter_file

    rows = [row.raw for row in iter_file(str(path)) if isinstance(row.raw, dict)]
    for n, row in enumerate(rows, 1):
        row.setdefault("id", f"row-{n}")
    return rows


def store_documents(db: Session) -> dict[str, dict[str, Any]]:
    """Every user and order document by key; products never change by a write."""
    documents = {f"user {u.user_id}": u.doc for u in db.execute(select(StoreUser)).scalars()}
    documents.update({f"order {o.order_id}": o.doc for o in db.execute(select(StoreOrder)).scalars()})
    return documents


def changed(pristine: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {key: doc for key, doc in now.items() if pristine.get(key) != doc}


def expected_changes(factory: sessionmaker[Session], actions: list[dict[str, Any]], pristine: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the reference writes change, replayed in order on a fresh store (a write that fails is skipped, as upstream)."""
    ops = operations()
    with transaction(factory) as db:
        snapshot.restore(db)
        shop = SqlRetailStore(db)
        for action in actions:
            try:
                with db.begin_nested():
                    ops[action["name"]].run(shop, action["arguments"])
            except StoreError:
                pass
    with factory() as db:
        return changed(pristine, store_documents(db))


def describe(key: str, doc: dict[str, Any] | None, pristine: dict[str, Any] | None) -> str:
    """One line on what a document became: an order's status and the fields a write set, a user's changed fields."""
    if doc is None:
        return "unchanged"
    fields = sorted(k for k in doc if (pristine or {}).get(k) != doc[k] and k != "status")
    status = f"{doc.get('status')} " if "status" in doc and (pristine or {}).get("status") != doc.get("status") else ""
    shown = {k: doc[k] for k in fields if k in ("return_items", "exchange_items", "exchange_new_items", "cancel_reason", "address")}
    for k in ("return_payment_method_id", "exchange_payment_method_id"):
        if k in doc:
            shown[k] = doc[k]
    if key.startswith("order") and "items" in fields:
        shown["items"] = [i["item_id"] for i in doc["items"]]
    return (status + json.dumps(shown, ensure_ascii=False, sort_keys=True)) if shown or status else ", ".join(fields)


def store_differences(expected: dict[str, dict[str, Any]], got: dict[str, dict[str, Any]], pristine: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"{key}: expected {describe(key, expected.get(key), pristine.get(key))}; got {describe(key, got.get(key), pristine.get(key))}"
        for key in sorted(set(expected) | set(got))
        if expected.get(key) != got.get(key)
    ]


def _expect_problems(factory: sessionmaker[Session], expect: dict[str, Any], status: str, spoken: str) -> list[str]:
    problems = []
    if expect.get("status") and status != expect["status"]:
        problems.append(f"status {status}, expected {expect['status']}")
    if expect.get("language") and spoken != expect["language"]:
        problems.append(f"reply in {spoken}, expected {expect['language']}")
    with factory() as db:
        docs = {o.order_id: o.doc for o in db.execute(select(StoreOrder).where(StoreOrder.order_id.in_(list(expect.get("orders", {}))))).scalars()}
        for order_id, wanted in expect.get("orders", {}).items():
            if docs.get(order_id, {}).get("status") != wanted:
                problems.append(f"order {order_id} is {docs.get(order_id, {}).get('status')}, expected {wanted}")
        for order_id, fields in expect.get("order_fields", {}).items():  # e.g. the variant an exchange asked for
            doc = db.execute(select(StoreOrder).where(StoreOrder.order_id == order_id)).scalar_one().doc
            for key, value in fields.items():
                if doc.get(key) != value:
                    problems.append(f"order {order_id} has {key}={doc.get(key)!r}, expected {value!r}")
    return problems


def run_set(
    *,
    pipeline: Pipeline,
    session_factory: sessionmaker[Session],
    rows: list[dict[str, Any]],
    name: str,
    journal: Path | None = None,
    progress=None,
) -> EvalReport:
    """Each row as a ticket against a fresh copy of the demo store; the store is restored afterwards."""
    from crewdesk import language

    report = EvalReport(split=name, process=pipeline.settings.crew_process, model=pipeline.builder.llm_factory.model_for("strong"))
    wanted = {str(row["id"]) for row in rows}
    report.trials = [t for t in read_journal(journal) if t.task_id in wanted]
    done = {t.task_id for t in report.trials}
    if journal is not None:
        journal.parent.mkdir(parents=True, exist_ok=True)
        if journal.exists() and journal.stat().st_size and not journal.read_bytes().endswith(b"\n"):
            with journal.open("a", encoding="utf-8") as out:
                out.write("\n")  # end a line torn by a crash, so the next ticket starts on its own line
    run_tag = time.strftime("%Y%m%d%H%M%S")
    with transaction(session_factory) as db:
        snapshot.take(db)
    with session_factory() as db:
        pristine = store_documents(db)
    try:
        for row in rows:
            ticket_id = str(row["id"])
            if ticket_id in done:
                continue
            expected = expected_changes(session_factory, row["actions"], pristine) if "actions" in row else None
            with transaction(session_factory) as db:
                snapshot.restore(db)
                fields = {k: row[k] for k in TICKET_FIELDS if row.get(k) not in (None, "")}
                ticket, _ = tickets.submit(db=db, ticket_in=TicketIn(**fields, source="example", external_id=f"{ticket_id}-{run_tag}"))
            started = time.perf_counter()
            outcome = process_deferring(pipeline, ticket.id)
            seconds = time.perf_counter() - started
            with session_factory() as db:
                row_ticket = db.get(Ticket, ticket.id)
                reply = ((row_ticket.resolution if row_ticket else None) or {}).get("customer_reply", "") or ""
                runs = db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket.id)).scalars().all()
                calls, ok = tool_counts(db, ticket.id)
                got = changed(pristine, store_documents(db))
            spoken = language.detect(reply, default="?") if reply.strip() else "-"
            problems = _expect_problems(session_factory, row.get("expect", {}), str(outcome.status), spoken)
            store_ok = expected is None or expected == got
            if expected is not None and not store_ok:
                problems = store_differences(expected, got, pristine) + problems
            report.trials.append(
                Trial(
                    task_id=ticket_id,
                    trial=0,
                    success=store_ok and not problems,
                    status=str(outcome.status),
                    tool_calls=calls,
                    tool_ok=ok,
                    tokens_in=sum(r.tokens_in for r in runs),
                    tokens_out=sum(r.tokens_out for r in runs),
                    cost_usd=sum(r.cost_usd for r in runs),
                    seconds=seconds,
                    tokens_cached=sum(r.tokens_cached for r in runs),
                    language=str(row.get("language") or row.get("expect", {}).get("language") or ""),
                    reply_language=spoken,
                    expect_status=str(row.get("expect_status") or ""),
                    model_calls=sum(r.llm_calls for r in runs),
                    problems=problems,
                )
            )
            if journal is not None:
                with journal.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(asdict(report.trials[-1]), ensure_ascii=False) + "\n")
            if progress:
                progress(report.trials[-1])
    finally:
        with transaction(session_factory) as db:
            snapshot.restore(db)
            snapshot.drop(db)
    return report
