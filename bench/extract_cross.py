"""What would comparing the rules' writes with the model's own reading do? Simulation on answers already recorded, no
model call: `bench/extract_probe.py --out ANSWERS` (the model's typed reading per ticket) and `bench/reader_sets.py
--writes=WRITES` (the rules' writes and outcome per ticket), for the same sets.

    .venv/bin/python bench/extract_cross.py ANSWERS.jsonl WRITES.jsonl

Per set and rule, prints exact tickets that would become a question (the cost), wrong `resolved` tickets that would
(what it saves), and wrong `resolved` left. Rules:
- write: a write the rules planned that the model's reading does not hold (same kind, order and items) is put to the
  customer for a yes instead of being made; the ticket is not resolved;
- write+order: also, a ticket the rules resolved where the model reads a request on an open order that nothing was
  written to is asked about (the rules may have passed over a request)."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from crews.procedures import extract


def load(path: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["set"], r["id"]): r for r in (json.loads(line) for line in Path(path).read_text().splitlines() if line.strip())}


def key(r: dict[str, Any] | extract.Request) -> tuple[str, str, tuple[str, ...]]:
    if isinstance(r, extract.Request):
        return (r.kind, r.order_id, r.item_ids)
    return (r["kind"], r["order_id"], tuple(r["item_ids"]))


def main(answers_path: str, writes_path: str) -> int:
    answers, writes = load(answers_path), load(writes_path)
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for k, w in sorted(writes.items()):
        a = answers.get(k)
        if a is None:
            continue
        s = table[k[0]]
        model = {key(r) for r in a["got"]}
        expected = {key(r) for r in a["expected"]}
        rules = {key(extract.of_tool_call(x["name"], x["arguments"] or {})) for x in w["writes"]}
        resolved, exact = w["status"] == "resolved", w["exact"]
        s["tickets"] += 1
        s["exact"] += exact
        s["wrong"] += resolved and not exact
        s["model_equal_expected"] += model == expected
        doubted = bool(rules - model)
        unread = {r for r in model - rules if r[1]}  # a request on an order the rules wrote nothing of that kind to
        for rule, held in (("write", doubted), ("write+order", doubted or (resolved and bool(unread)))):
            if held and exact:
                s[f"{rule}: exact lost"] += 1
            if held and resolved and not exact:
                s[f"{rule}: wrong stopped"] += 1
            if held and resolved and not exact and model == expected:
                s[f"{rule}: wrong stopped, model right"] += 1
        if resolved and not exact:
            print(f"WRONG {k[1]}: rules {sorted(rules)} model {sorted(model)} expected {sorted(expected)}")
    for name, s in table.items():
        print(f"== {name}: {s['tickets']} tickets, rules exact {s['exact']}, wrong resolved {s['wrong']}; model equal to expected {s['model_equal_expected']}")
        for rule in ("write", "write+order"):
            print(
                f"   {rule:12s} exact lost {s[f'{rule}: exact lost']}, wrong stopped {s[f'{rule}: wrong stopped']} "
                f"(model right on {s[f'{rule}: wrong stopped, model right']}), wrong left {s['wrong'] - s[f'{rule}: wrong stopped']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
