"""`crewdesk eval tau2-retail`: each task's customer situation becomes an inbound ticket, the crew works it
against a fresh copy of the store, and it is scored the way tau2-bench scores: replay the task's reference
actions on a fresh store and compare hashes of the two end states (any path to the same state passes)."""

from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from math import comb
from pathlib import Path
from typing import Any

from sqlalchemy import select

from crewdesk.audit.models import AuditEvent
from crewdesk.connectors.base import StoreError
from crewdesk.connectors.builtin_store import SqlRetailStore, state_hash
from crewdesk.db import transaction
from crewdesk.errors import TransientError, deferral_of
from crewdesk.llm.scripted import PlanResponder
from crewdesk.runs.models import CrewRun
from crewdesk.store import snapshot
from crewdesk.store.operations import operations
from crewdesk.store.service import DEFAULT_DB_JSON, load_store, read_store
from crewdesk.tickets import service as tickets
from crewdesk.tickets.schemas import TicketIn
from crews.config import COWORKERS, SPECIALIST_BY_CATEGORY, CrewConfig
from crews.pipeline import Pipeline

DATASET_DIR = DEFAULT_DB_JSON.parent  # crewdesk/store/tau2: db.json and the task splits ship with the package
SPLITS = {"train": "tasks_train.json"}
_SECOND_PERSON = [
    (r"\bYou are\b", "I am"),
    (r"\byou are\b", "I am"),
    (r"\bYou're\b", "I'm"),
    (r"\byou're\b", "I'm"),
    (r"\bYou have\b", "I have"),
    (r"\byou have\b", "I have"),
    (r"\bYou've\b", "I've"),
    (r"\byou've\b", "I've"),
    (r"\bYou were\b", "I was"),
    (r"\byou were\b", "I was"),
    (r"\bYourself\b", "Myself"),
    (r"\byourself\b", "myself"),
    (r"\bYou'd\b", "I'd"),
    (r"\byou'd\b", "I'd"),
    (r"\bYou'll\b", "I'll"),
    (r"\byou'll\b", "I'll"),
    (r"\bYours\b", "Mine"),
    (r"\byours\b", "mine"),
    (r"\bYour\b", "My"),
    (r"\byour\b", "my"),
    (r"\bYou\b", "I"),
    # "you" after a preposition or a verb that takes an object is "me"; elsewhere it is the subject, "I"
    (r"\b(to|for|with|at|from|help|helps|tell|tells|ask|asks|give|gives|send|sends|call|calls|contact|let|lets) you\b", r"\1 me"),
    (r"\byou\b", "I"),
]


def load_tasks(split: str = "train", dataset_dir: Path = DATASET_DIR) -> list[dict[str, Any]]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; available: {', '.join(SPLITS)}")
    return json.loads((dataset_dir / SPLITS[split]).read_text(encoding="utf-8"))


def first_person(text: str) -> str:
    for pattern, replacement in _SECOND_PERSON:
        text = re.sub(pattern, replacement, text)
    return text


# The benchmark's user instructions talk to a simulated user about the conversation ("(... but do not reveal it to the
# agent)", "If the agent asks for confirmation, ..."): a customer writing a ticket would not write those.
_STAGE_ASIDE = re.compile(r"\s*\([^)]*\b(agent|reveal)\b[^)]*\)", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


# "If the agent asks for the cancellation reason, say you ordered by mistake": what the customer would answer when asked,
# which a customer writing one ticket states up front. A change of mind at the confirmation step is not stated up front.
_WHEN_ASKED = re.compile(
    r"^(?:if|when)\s+(?:the agent\s+)?(?:asks?|asked)\s+(?:you\s+)?(?:for|about)?\s*(?P<what>[^,]+?),\s*(?:then\s+)?(?:you\s+)?"
    r"(?:say|tell(?: (?:them|it))?|mention|answer|reply|provide)\s+(?:that\s+)?(?P<say>.+?)\.?$",
    re.I,
)


# A fallback the customer would write to the support team themselves: "if the agent cannot help, transfer to a human".
AGENT = "\x00"  # stands for the support team until the ticket is in the first person, then becomes "you"
_AGENT_FAILS = re.compile(r"\bthe agent\b(?=\s+((?:cannot|can't|can not|is not able|is unable|doesn't|does not|won't|will not)\b))\s+\1", re.I)


_YOU_VERB = {"doesn't": "don't", "does not": "do not", "is not able": "are not able", "is unable": "are unable"}


def without_stage_directions(text: str) -> str:
    text = _STAGE_ASIDE.sub("", text)
    kept = []
    for sentence in _SENTENCE.split(text):
        asked = _WHEN_ASKED.match(sentence.strip())
        if asked and not re.search(r"confirm|double.?check|mistake in", asked.group("what"), re.I):
            kept.append(f"About {asked.group('what').strip()}: {asked.group('say').strip()}.")
        elif _AGENT_FAILS.search(sentence) and not re.search(r"confirm|\bmention\b", sentence, re.I):
            kept.append(
                _AGENT_FAILS.sub(lambda m: AGENT + _YOU_VERB.get(m.group(1).lower(), m.group(1)), sentence)
            )  # "if you cannot help, transfer me to a human"
        elif not re.search(r"\bagent\b|\bmention\b", sentence, re.I):
            kept.append(sentence)
    return " ".join(kept).strip()


def ticket_for(task: dict[str, Any]) -> tuple[str, str]:
    """(subject, body): the situation written the way the customer would write it, with what they know."""
    instructions = task["user_scenario"]["instructions"]
    reason = first_person(without_stage_directions(instructions["reason_for_call"].strip())).replace(AGENT, "you ")
    known = first_person((instructions.get("known_info") or "").strip())
    subject = reason.split(".")[0][:80]
    body = f"Hello,\n\n{reason}\n\n{known}\n\nThank you."
    return subject, body


def role_for(tool: str, config: CrewConfig, preferred: str | None) -> str:
    if preferred and tool in config.roles[preferred].tools:
        return preferred
    for key in COWORKERS:
        if tool in config.roles[key].tools:
            return key
    raise ValueError(f"no role may call {tool}")


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


def customer_email(session_factory, actions: list[dict[str, Any]]) -> str | None:
    """The e-mail of the customer whose records the reference actions touch (the oracle proves who it acts for)."""
    with session_factory() as db:
        store = SqlRetailStore(db)
        for action in actions:
            args = action["arguments"]
            user_id = args.get("user_id") or (store.order_owner(args["order_id"]) if "order_id" in args else None)
            if user_id:
                return store.get_user_details(user_id)["email"]
    return None


def oracle(task: dict[str, Any], config: CrewConfig, process: str, actions: list[dict[str, Any]] | None = None, email: str | None = None) -> PlanResponder:
    """A scripted crew that performs the task's reference actions (or `actions` instead), after identifying the customer
    by `email` when the actions do not start by identifying them (the gate binds every call to a proven customer)."""
    steps = [(a["name"], a["arguments"]) for a in (actions if actions is not None else task["evaluation_criteria"]["actions"])]
    if email and not (steps and steps[0][0].startswith("find_user_id")):
        steps.insert(0, ("find_user_id_by_email", {"email": email}))
    done = {
        "customer_reply": "Thank you for your patience; your request has been handled as discussed.",
        "internal_note": "oracle",
        "needs_human": False,
        "escalation_reason": "",
    }
    handoff = {"customer_reply": "A colleague will follow up with you shortly.", "handoff_summary": "Customer asked for a person.", "team": "tier2"}
    if process == "hierarchical":
        groups: list[tuple[str, list]] = []
        for tool, args in steps:
            role = role_for(tool, config, groups[-1][0] if groups else None)
            if groups and groups[-1][0] == role:
                groups[-1][1].append((tool, args))
            else:
                groups.append((role, [(tool, args)]))
        plans: dict[str, list] = {
            "manager": [
                ("Delegate work to coworker", {"task": f"Do step {i + 1}", "context": json.dumps(group), "coworker": config.roles[role].role})
                for i, (role, group) in enumerate(groups)
            ]
        }
        for role, group in groups:
            plans.setdefault(role, []).append(group)
        finals: dict[str, Any] = {"manager": done, **{role: "Done." for role, _ in groups}, "escalation": handoff}
        return PlanResponder(triage={"category": "other", "priority": "normal", "summary": "eval", "confidence": 0.9}, plans=plans, finals=finals)
    # sequential: one specialist must hold every tool but the hand-off, which the escalation agent makes
    transfer = [s for s in steps if s[0] == "transfer_to_human_agents"]
    work = [s for s in steps if s[0] != "transfer_to_human_agents"]
    names = {tool for tool, _ in work}
    category = next((c for c, role in SPECIALIST_BY_CATEGORY.items() if names <= set(config.roles[role].tools)), "billing")
    specialist = SPECIALIST_BY_CATEGORY[category]
    final = {**done, "needs_human": True, "escalation_reason": "customer asked for a person"} if transfer else done
    plans = {specialist: work, "escalation": transfer}
    return PlanResponder(
        triage={"category": category, "priority": "normal", "summary": "eval", "confidence": 0.9},
        plans=plans,
        finals={specialist: final, "escalation": handoff},
    )


@dataclass
class Trial:
    task_id: str
    trial: int
    success: bool
    status: str
    tool_calls: int
    tool_ok: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    seconds: float
    tokens_cached: int = 0  # of tokens_in, read from the model server's prompt cache (absent in older journals)


@dataclass
class EvalReport:
    split: str
    process: str
    model: str
    trials: list[Trial] = field(default_factory=list)

    def by_task(self) -> dict[str, list[Trial]]:
        grouped: dict[str, list[Trial]] = {}
        for trial in self.trials:
            grouped.setdefault(trial.task_id, []).append(trial)
        return grouped

    @property
    def success_rate(self) -> float:
        return sum(t.success for t in self.trials) / len(self.trials) if self.trials else 0.0

    def pass_hat(self, k: int) -> float:
        """tau-bench's pass^k: the chance that k trials drawn from a task's n all succeed, averaged over tasks."""
        scores = []
        for trials in self.by_task().values():
            n, c = len(trials), sum(t.success for t in trials)
            if n >= k:
                scores.append(comb(c, k) / comb(n, k))
        return sum(scores) / len(scores) if scores else 0.0

    def summary(self) -> dict[str, Any]:
        calls = sum(t.tool_calls for t in self.trials)
        seconds = sorted(t.seconds for t in self.trials) or [0.0]
        n = max(len(v) for v in self.by_task().values()) if self.trials else 0
        return {
            "split": self.split,
            "process": self.process,
            "model": self.model,
            "tasks": len(self.by_task()),
            "trials": len(self.trials),
            "success_rate": self.success_rate,
            **{f"pass^{k}": self.pass_hat(k) for k in range(1, n + 1)},
            "tool_call_success_rate": (sum(t.tool_ok for t in self.trials) / calls) if calls else None,
            "tokens_per_ticket": statistics.mean(t.tokens_in + t.tokens_out for t in self.trials) if self.trials else 0,
            "prompt_tokens_per_ticket": statistics.mean(t.tokens_in for t in self.trials) if self.trials else 0,
            "cached_prompt_tokens_per_ticket": statistics.mean(t.tokens_cached for t in self.trials) if self.trials else 0,
            "completion_tokens_per_ticket": statistics.mean(t.tokens_out for t in self.trials) if self.trials else 0,
            "cost_usd_per_ticket": statistics.mean(t.cost_usd for t in self.trials) if self.trials else 0,
            "p50_seconds": statistics.median(seconds),
            "p95_seconds": seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))],
        }


# The request a reference write stands for; a task with no write is "read or hand over".
WRITE_INTENTS = {
    "cancel_pending_order": "cancel",
    "modify_pending_order_items": "change items",
    "modify_pending_order_address": "order address",
    "modify_pending_order_payment": "order payment",
    "modify_user_address": "default address",
    "return_delivered_order_items": "return",
    "exchange_delivered_order_items": "exchange",
    "transfer_to_human_agents": "hand over",
}


def per_intent(report: EvalReport, tasks: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """pass^1 per kind of request: intent -> (trials passed, trials) over the tasks whose reference makes such a write
    (a task with several kinds counts under each)."""
    kinds = {
        t["id"]: sorted({WRITE_INTENTS[a["name"]] for a in t["evaluation_criteria"]["actions"] if a["name"] in WRITE_INTENTS}) or ["read only"] for t in tasks
    }
    table: dict[str, tuple[int, int]] = {}
    for trial in report.trials:
        for kind in kinds.get(trial.task_id, ["read only"]):
            passed, total = table.get(kind, (0, 0))
            table[kind] = (passed + trial.success, total + 1)
    return dict(sorted(table.items()))


def _tool_counts(db, ticket_id: int) -> tuple[int, int]:
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


def read_journal(path: Path | None) -> list[Trial]:
    """Trials already finished by an earlier, interrupted run (one JSON object per line; a torn last line is ignored)."""
    if path is None or not path.exists():
        return []
    done = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            done.append(Trial(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return done


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
) -> EvalReport:
    """oracle_actions overrides what the oracle does for some tasks (tests use it to make the agent do something wrong).
    journal: each finished trial is appended there at once; trials already in it are not run again, so a run that was
    interrupted (Ctrl-C, a crash, the end of a session) resumes where it stopped."""
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
                with transaction(factory) as db:
                    ticket, _ = tickets.submit(
                        db=db, ticket_in=TicketIn(source="eval", external_id=f"tau2-{split}-{task['id']}-{trial}-{run_tag}", subject=subject, body=body)
                    )
                started = time.perf_counter()
                outcome = process_deferring(pipeline, ticket.id)
                seconds = time.perf_counter() - started
                with factory() as db:
                    got = state_hash(db)
                    runs = db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket.id)).scalars().all()
                    calls, ok = _tool_counts(db, ticket.id)
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


def write_report(report: EvalReport, path: Path) -> Path:
    """An HTML page: the summary, a per-task table, and an SVG plot of success and seconds per task."""
    summary = report.summary()
    tasks = report.by_task()
    width, bar = 900, max(3, min(24, 860 // max(1, len(tasks))))
    max_seconds = max((statistics.mean(t.seconds for t in ts) for ts in tasks.values()), default=1.0) or 1.0
    bars = []
    for i, (task_id, ts) in enumerate(tasks.items()):
        rate = sum(t.success for t in ts) / len(ts)
        secs = statistics.mean(t.seconds for t in ts)
        x = 30 + i * bar
        h = 140 * secs / max_seconds
        bars.append(
            f'<rect x="{x}" y="{160 - h:.1f}" width="{bar - 1}" height="{h:.1f}" fill="{"#2e7d32" if rate == 1 else "#c62828" if rate == 0 else "#f9a825"}">'
            f"<title>task {task_id}: success {rate:.0%}, {secs:.2f} s</title></rect>"
        )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="190"><text x="30" y="14" font-size="12">seconds per task '
        f"(height) and success (green all trials, amber some, red none)</text>{''.join(bars)}"
        f'<line x1="30" y1="160" x2="{30 + len(tasks) * bar}" y2="160" stroke="#333"/><text x="30" y="180" font-size="11">task</text></svg>'
    )
    rows = "".join(
        f"<tr><td>{t.task_id}</td><td>{t.trial}</td><td>{'pass' if t.success else 'fail'}</td><td>{t.status}</td><td>{t.tool_ok}/{t.tool_calls}</td>"
        f"<td>{t.tokens_in} ({t.tokens_cached} cached) + {t.tokens_out}</td><td>{t.cost_usd:.5f}</td><td>{t.seconds:.2f}</td></tr>"
        for t in report.trials
    )
    facts = "".join(f"<tr><th>{k}</th><td>{v:.3f}</td></tr>" if isinstance(v, float) else f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in summary.items())
    html = (
        f"<!doctype html><meta charset='utf-8'><title>crewdesk eval {report.split}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}</style>"
        f"<h1>tau2-bench retail, {report.split} split</h1><table>{facts}</table><h2>Per task</h2>{svg}"
        f"<table><tr><th>task</th><th>trial</th><th>result</th><th>ticket status</th><th>tool calls ok</th><th>tokens: prompt (cached) + completion</th><th>cost $</th><th>seconds</th></tr>{rows}</table>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    path.with_suffix(".json").write_text(json.dumps({"summary": summary, "trials": [asdict(t) for t in report.trials]}, indent=1))
    return path


def journal_for(report_path: Path) -> Path:
    return report_path.with_suffix(".trials.jsonl")


@dataclass
class ExampleResult:
    ticket: str
    status: str
    language: str
    seconds: float
    problems: list[str]


def run_examples(*, pipeline: Pipeline, session_factory, path: Path, limit: int = 0, progress=None) -> list[ExampleResult]:
    """Each example ticket against a fresh copy of the demo store; its `expect` (status, reply language, order statuses)
    is checked against what happened. The store is restored afterwards."""
    from crewdesk import language
    from crewdesk.intake.files import iter_file
    from crewdesk.store.models import StoreOrder
    from crewdesk.tickets.models import Ticket

    rows = [row.raw for row in iter_file(str(path)) if isinstance(row.raw, dict)]
    rows = rows[:limit] if limit else rows
    run_tag = time.strftime("%Y%m%d%H%M%S")
    results: list[ExampleResult] = []
    with transaction(session_factory) as db:
        snapshot.take(db)
    try:
        for row in rows:
            with transaction(session_factory) as db:
                snapshot.restore(db)
                fields = {k: v for k, v in row.items() if k not in ("id", "expect")}
                ticket, _ = tickets.submit(db=db, ticket_in=TicketIn(**{**fields, "source": "example", "external_id": f"{row['id']}-{run_tag}"}))
            started = time.perf_counter()
            outcome = process_deferring(pipeline, ticket.id)
            seconds = time.perf_counter() - started
            expect = row.get("expect", {})
            with session_factory() as db:
                reply = (db.get(Ticket, ticket.id).resolution or {}).get("customer_reply", "")
                orders = {o.order_id: o.status for o in db.execute(select(StoreOrder).where(StoreOrder.order_id.in_(list(expect.get("orders", {}))))).scalars()}
            spoken = language.detect(reply, default="?")
            problems = []
            if expect.get("status") and outcome.status != expect["status"]:
                problems.append(f"status {outcome.status}, expected {expect['status']}")
            if expect.get("language") and spoken != expect["language"]:
                problems.append(f"reply in {spoken}, expected {expect['language']}")
            for order_id, status in expect.get("orders", {}).items():
                if orders.get(order_id) != status:
                    problems.append(f"order {order_id} is {orders.get(order_id)}, expected {status}")
            for order_id, wanted in expect.get("order_fields", {}).items():  # e.g. the variant an exchange asked for
                with session_factory() as db:
                    doc = db.execute(select(StoreOrder).where(StoreOrder.order_id == order_id)).scalar_one().doc
                for key, value in wanted.items():
                    if doc.get(key) != value:
                        problems.append(f"order {order_id} has {key}={doc.get(key)!r}, expected {value!r}")
            results.append(ExampleResult(row["id"], outcome.status, spoken, seconds, problems))
            if progress:
                progress(results[-1])
    finally:
        with transaction(session_factory) as db:
            snapshot.restore(db)
            snapshot.drop(db)
    return results
