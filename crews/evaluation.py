"""`crewdesk eval tau2-retail`: each task's customer situation becomes an inbound ticket, the crew works it
against a fresh copy of the store, and it is scored the way tau2-bench scores: replay the task's reference
actions on a fresh store and compare hashes of the two end states (any path to the same state passes).

The pieces: crews/eval_tickets.py (tasks as tickets), crews/eval_oracle.py (the scripted crew that performs the
reference actions), crews/eval_report.py (trials, summary, journal, HTML page); here, the runs themselves."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import select

from crewdesk.audit.models import AuditEvent
from crewdesk.connectors.base import StoreError
from crewdesk.connectors.builtin_store import SqlRetailStore, state_hash
from crewdesk.db import transaction
from crewdesk.errors import TransientError, deferral_of
from crewdesk.runs.models import CrewRun
from crewdesk.store import snapshot
from crewdesk.store.operations import operations
from crewdesk.store.service import DEFAULT_DB_JSON, load_store, read_store
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message
from crewdesk.tickets.schemas import TicketIn
from crews.eval_conversation import Simulator
from crews.eval_oracle import customer_email, oracle
from crews.eval_report import EvalReport, Trial, read_journal
from crews.eval_report import journal_for as journal_for  # re-exported: the `crewdesk eval` command imports it from here
from crews.eval_report import per_intent as per_intent  # re-exported: the `crewdesk eval` command imports it from here
from crews.eval_report import write_report as write_report  # re-exported: the `crewdesk eval` command imports it from here
from crews.eval_tickets import load_tasks as load_tasks  # re-exported: the `crewdesk eval` command imports it from here
from crews.eval_tickets import ticket_for
from crews.pipeline import Pipeline


def process_deferring(pipeline: Pipeline, ticket_id: int, attempts: int = 6):
    """pipeline.process, waiting out a deferral or a transient error as the worker's retry would (the pipeline is
    idempotent), so that an evaluation run measures the crew, not a model server that was busy for a minute."""
    for attempt in range(attempts):
        try:
            return pipeline.process(ticket_id)
        except TransientError as exc:
            if attempt == attempts - 1:
                raise
            time.sleep(min(120.0, deferral_of(exc) or 5.0 * 2**attempt))
    raise AssertionError("unreachable")


def converse(pipeline: Pipeline, ticket_id: int, task: dict[str, Any], simulator: Simulator, outcome, *, max_turns: int):
    """While the ticket waits on the customer: the simulator reads the thread and answers in it, and the ticket runs
    again. Returns the last outcome and the customer's messages (the first one included)."""
    factory = pipeline.session_factory
    turns = 1
    while str(outcome.status) == "waiting_on_customer" and turns <= max_turns:
        with factory() as db:
            thread = [
                ("customer" if m.direction == "inbound" else "support", m.body)
                for m in db.execute(select(Message).where(Message.ticket_id == ticket_id, Message.direction != "internal").order_by(Message.id)).scalars()
            ]
        said = simulator.answer(task, thread)
        if said is None:  # the customer ends the conversation
            break
        with transaction(factory) as db:
            tickets.follow_up(db=db, ticket=tickets.get(db=db, ticket_id=ticket_id, lock=True), body=said, author="customer")
        turns += 1
        outcome = process_deferring(pipeline, ticket_id)
    return outcome, turns


def tool_counts(db, ticket_id: int) -> tuple[int, int]:
    rows = db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "tool_call")).scalars().all()
    ok = sum(1 for r in rows if not r.error and not str(r.result or "").startswith(("Error", "DENIED")))
    return len(rows), ok


def reference_hash(session_factory, actions: list[dict[str, Any]]) -> str:
    ops = operations()
    with transaction(session_factory) as db:
        snapshot.restore(db)
    with transaction(session_factory) as db:
        shop = SqlRetailStore(db)
        for action in actions:
            try:
                with db.begin_nested():
                    ops[action["name"]].run(shop, action["arguments"])
            except StoreError:
                pass  # upstream replay also carries on past a failing call
    with session_factory() as db:
        return state_hash(db)


def run_eval(
    *,
    pipeline: Pipeline,
    tasks: list[dict[str, Any]],
    trials: int,
    split: str,
    use_oracle: bool,
    run_tag: str,
    oracle_actions: dict[str, list[dict[str, Any]]] | None = None,
    progress=None,
    journal: Path | None = None,
    simulator: Simulator | None = None,
    max_turns: int = 4,
    first_message: str = "simulator",
) -> EvalReport:
    """oracle_actions overrides what the oracle does for some tasks (tests use it to make the agent do something wrong).
    journal: each finished trial is appended there at once; trials already in it are not run again, so a run that was
    interrupted (Ctrl-C, a crash, the end of a session) resumes where it stopped.
    simulator: the conversation protocol (crews/eval_conversation.py): the simulated customer writes the first message
    (or, first_message="ticket", the ticket protocol's own ticket opens the conversation) and answers while the ticket
    waits on them, at most `max_turns` answers; None: the ticket protocol (one ticket)."""
    factory = pipeline.session_factory
    settings = pipeline.settings
    model = "oracle (scripted)" if use_oracle else pipeline.builder.llm_factory.model_for("strong")
    report = EvalReport(split=split, process=settings.crew_process, model=model)
    wanted = {task["id"] for task in tasks}
    report.trials = [t for t in read_journal(journal) if t.task_id in wanted and t.trial < trials]
    done = {(t.task_id, t.trial) for t in report.trials}
    if journal is not None:
        journal.parent.mkdir(parents=True, exist_ok=True)
        if journal.exists() and journal.stat().st_size and not journal.read_bytes().endswith(b"\n"):
            with journal.open("a", encoding="utf-8") as out:
                out.write("\n")  # end a line torn by a crash, so the next trial starts on its own line
    with transaction(factory) as db:
        load_store(db=db, data=read_store(DEFAULT_DB_JSON))
        snapshot.take(db)
    try:
        for task in tasks:
            todo = [trial for trial in range(trials) if (task["id"], trial) not in done]
            if not todo:
                continue
            expected = reference_hash(factory, task["evaluation_criteria"]["actions"])
            for trial in todo:
                with transaction(factory) as db:
                    snapshot.restore(db)
                if use_oracle:
                    actions = (oracle_actions or {}).get(task["id"])
                    email = customer_email(factory, actions if actions is not None else task["evaluation_criteria"]["actions"])
                    pipeline.builder.llm_factory.responder = oracle(task, pipeline.config, settings.crew_process, actions, email)
                subject, body = ticket_for(task)
                started = time.perf_counter()
                if simulator is not None and first_message == "simulator":  # the customer's own first message, as upstream's user writes it
                    body, subject = simulator.first(task), ""
                with transaction(factory) as db:
                    ticket, _ = tickets.submit(
                        db=db, ticket_in=TicketIn(source="eval", external_id=f"tau2-{split}-{task['id']}-{trial}-{run_tag}", subject=subject, body=body)
                    )
                outcome = process_deferring(pipeline, ticket.id)
                turns = 1
                if simulator is not None:
                    outcome, turns = converse(pipeline, ticket.id, task, simulator, outcome, max_turns=max_turns)
                seconds = time.perf_counter() - started
                with factory() as db:
                    got = state_hash(db)
                    runs = db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket.id)).scalars().all()
                    calls, ok = tool_counts(db, ticket.id)
                report.trials.append(
                    Trial(
                        task["id"],
                        trial,
                        got == expected,
                        outcome.status,
                        calls,
                        ok,
                        sum(r.tokens_in for r in runs),
                        sum(r.tokens_out for r in runs),
                        sum(r.cost_usd for r in runs),
                        seconds,
                        sum(r.tokens_cached for r in runs),
                        turns=turns,
                        model_calls=sum(r.llm_calls for r in runs),
                    )
                )
                if journal is not None:
                    with journal.open("a", encoding="utf-8") as out:
                        out.write(json.dumps(asdict(report.trials[-1])) + "\n")
                if progress:
                    progress(report.trials[-1])
    finally:
        with transaction(factory) as db:
            snapshot.restore(db)
            snapshot.drop(db)
    return report
