"""An evaluation's results: the trials (also journalled one JSON line each, so an interrupted run resumes), the
summary numbers (success rate, tau-bench's pass^k, tokens, cost, latency), pass^1 per kind of request, and the HTML page."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from html import escape
from math import comb
from pathlib import Path
from typing import Any


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
    # ticket sets (`crewdesk eval examples`): the ticket's language, the reply's detected one, the status a correct answer
    # has (resolved | not_resolved), model calls, and what differed from the expected end state
    language: str = ""
    reply_language: str = ""
    expect_status: str = ""
    model_calls: int = 0
    problems: list[str] = field(default_factory=list)
    turns: int = 1  # the customer's messages: 1 for a ticket; the conversation protocol counts each answer

    @property
    def resolved_wrong(self) -> bool:
        """Marked resolved, but the store (or what the ticket expects) is not as a correct answer leaves it: the worst outcome."""
        return self.status == "resolved" and not self.success


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
            "max_seconds": seconds[-1],
            "resolved": sum(t.status == "resolved" for t in self.trials),
            "resolved_wrong": sum(t.resolved_wrong for t in self.trials),
            "resolved_wrong_rate": sum(t.resolved_wrong for t in self.trials) / len(self.trials) if self.trials else 0.0,
            "model_calls_per_ticket": statistics.mean(t.model_calls for t in self.trials) if self.trials else 0,
            "customer_messages_per_ticket": statistics.mean(t.turns for t in self.trials) if self.trials else 0,
            "waiting_on_customer_at_end": sum(t.status == "waiting_on_customer" for t in self.trials),
            **self._by_language(),
            **self._expected_status(),
        }

    def _by_language(self) -> dict[str, Any]:
        languages = sorted({t.language for t in self.trials if t.language})
        rates = {}
        for code in languages:
            mine = [t for t in self.trials if t.language == code]
            rates[f"success_{code}"] = f"{sum(t.success for t in mine)}/{len(mine)} ({sum(t.success for t in mine) / len(mine):.1%})"
        return rates

    def _expected_status(self) -> dict[str, Any]:
        """How often the ticket ended resolved exactly when a correct answer resolves it (sets that say so)."""
        stated = [t for t in self.trials if t.expect_status in ("resolved", "not_resolved")]
        if not stated:
            return {}
        agree = sum((t.status == "resolved") == (t.expect_status == "resolved") for t in stated)
        return {"status_agrees": f"{agree}/{len(stated)}"}


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


def read_journal(path: Path | None) -> list[Trial]:
    """Trials already finished by an earlier, interrupted run (one JSON object per line; a torn last line is ignored)."""
    if path is None or not path.exists():
        return []
    done = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            fields = json.loads(line)
            done.append(Trial(**{k: v for k, v in fields.items() if k in Trial.__dataclass_fields__}))
        except (ValueError, TypeError):
            continue
    return done


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else escape(str(value))


def write_report(report: EvalReport, path: Path, *, beside: tuple[str, EvalReport] | None = None) -> Path:
    """An HTML page: the summary, a per-task table (with the customer's messages and the seconds of each conversation),
    and an SVG plot of success and seconds per task. beside: (name, another run of the same tasks), e.g. the ticket
    protocol's journal beside a conversation run's: its summary in a second column and its result per task."""
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
            f"<title>task {escape(task_id)}: success {rate:.0%}, {secs:.2f} s</title></rect>"
        )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="190"><text x="30" y="14" font-size="12">seconds per task '
        f"(height) and success (green all trials, amber some, red none)</text>{''.join(bars)}"
        f'<line x1="30" y1="160" x2="{30 + len(tasks) * bar}" y2="160" stroke="#333"/><text x="30" y="180" font-size="11">task</text></svg>'
    )
    other = {(t.task_id, t.trial): t for t in beside[1].trials} if beside else {}

    def other_cells(t: Trial) -> str:
        if beside is None:
            return ""
        o = other.get((t.task_id, t.trial))
        if o is None:
            return "<td colspan='4'>(not run)</td>"
        return f"<td>{'pass' if o.success else 'fail'}</td><td>{o.status}</td><td>{o.turns}</td><td>{o.seconds:.2f}</td>"

    rows = "".join(
        f"<tr><td>{escape(t.task_id)}</td><td>{t.trial}</td><td>{escape(t.language)}</td><td>{'pass' if t.success else 'fail'}</td><td>{t.status}</td>"
        f"<td>{t.turns}</td><td>{t.tool_ok}/{t.tool_calls}</td><td>{t.tokens_in} ({t.tokens_cached} cached) + {t.tokens_out}</td><td>{t.cost_usd:.5f}</td>"
        f"<td>{t.seconds:.2f}</td><td>{escape('; '.join(t.problems))}</td>{other_cells(t)}</tr>"
        for t in report.trials
    )
    if beside is None:
        facts = "".join(f"<tr><th>{k}</th><td>{_cell(v)}</td></tr>" for k, v in summary.items())
        other_head = ""
    else:
        theirs = beside[1].summary()
        facts = f"<tr><th></th><th>this run</th><th>{escape(beside[0])}</th></tr>" + "".join(
            f"<tr><th>{k}</th><td>{_cell(v)}</td><td>{_cell(theirs.get(k, ''))}</td></tr>" for k, v in summary.items()
        )
        other_head = "".join(f"<th>{escape(beside[0])}: {name}</th>" for name in ("result", "status", "customer messages", "seconds"))
    html = (
        f"<!doctype html><meta charset='utf-8'><title>crewdesk eval {escape(report.split)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}</style>"
        f"<h1>crewdesk evaluation: {escape(report.split)}</h1><table>{facts}</table><h2>Per task</h2>{svg}"
        "<table><tr><th>task</th><th>trial</th><th>language</th><th>result</th><th>ticket status</th><th>customer messages</th><th>tool calls ok</th>"
        f"<th>tokens: prompt (cached) + completion</th><th>cost $</th><th>seconds</th><th>what differed</th>{other_head}</tr>{rows}</table>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    body: dict[str, Any] = {"summary": summary, "trials": [asdict(t) for t in report.trials]}
    if beside is not None:
        body["beside"] = {"name": beside[0], "summary": beside[1].summary()}
    path.with_suffix(".json").write_text(json.dumps(body, indent=1))
    return path


def journal_for(report_path: Path) -> Path:
    return report_path.with_suffix(".trials.jsonl")
