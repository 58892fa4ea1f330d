"""How well does the local model read a ticket by itself, as one typed request decoded against a schema grounded in the
customer's records (`crews/procedures/extract.py`)? Probe for issue 19's deliverable 2, measured before it is wired in.

    .venv/bin/python bench/extract_probe.py bench/generalization/dev.jsonl [more sets] --base-url http://127.0.0.1:8090 \
        [--limit N] [--out answers.jsonl]

For every ticket the model gets the message and the customer's open orders (items lettered) and answers the schema:
a list of (order, kind, items). Its answer is compared with the set's expected writes at that level (kind, order, item
ids; variants and addresses are not compared). Prints per set: tickets whose reading equals the expected writes, split
into tickets that expect writes and tickets that expect none, the median seconds, and per expected kind how often the
model found it. --out keeps each answer for the cross-check simulation (`bench/extract_cross.py`)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from crews.procedures import extract
from crews.procedures.facts import load_customer

ROOT = Path(__file__).resolve().parents[1]
DB = ROOT / "crewdesk" / "store" / "tau2" / "db.json"


def lookup_in(data: dict[str, Any]):
    def lookup(tool: str, **arguments: Any) -> Any:
        if tool == "get_user_details":
            return data["users"][arguments["user_id"]]
        if tool == "get_order_details":
            return data["orders"][arguments["order_id"]]
        raise KeyError(tool)

    return lookup


def text_of(row: dict[str, Any]) -> str:
    subject = str(row.get("subject") or "").strip()
    body = str(row.get("body") or "").strip()
    return f"{subject}\n\n{body}" if subject else body


def ask(client: httpx.Client, built: extract.Prompt) -> tuple[dict[str, Any], dict[str, Any]]:
    body = {
        "messages": built.messages,
        "temperature": 0,
        "max_tokens": 400,
        "cache_prompt": True,
        "response_format": {"type": "json_schema", "json_schema": {"name": "read_request", "strict": True, "schema": built.schema}},
    }
    response = client.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    payload = response.json()
    try:
        return json.loads(payload["choices"][0]["message"]["content"]), payload.get("usage", {})
    except json.JSONDecodeError:  # cut off at max_tokens: no reading (the flow holds its writes then)
        return {}, payload.get("usage", {})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", nargs="+")
    parser.add_argument("--base-url", default="http://127.0.0.1:8090")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--out", default="")
    parser.add_argument("--ids", default="")
    args = parser.parse_args()
    data = json.loads(DB.read_text())
    emails = {u["email"]: uid for uid, u in data["users"].items()}
    lookup = lookup_in(data)
    wanted = set(args.ids.split(",")) if args.ids else None
    done = (
        {(r["set"], r["id"]) for r in (json.loads(x) for x in Path(args.out).read_text().splitlines() if x.strip())}
        if args.out and Path(args.out).exists()
        else set()
    )
    out = open(args.out, "a") if args.out else None  # noqa: SIM115 - one file for the whole run; a stopped run goes on
    with httpx.Client(base_url=args.base_url, timeout=300) as client:
        for path in args.path:
            rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
            rows = [r for r in rows if (wanted is None or r["id"] in wanted) and (Path(path).stem, r["id"]) not in done][: args.limit or None]
            right = Counter()
            kinds_found, kinds_expected = Counter(), Counter()
            seconds: list[float] = []
            for row in rows:
                if row["customer"] not in emails:
                    continue
                customer = load_customer(lookup, user_id=emails[row["customer"]], how="probe")
                built = extract.prompt(text_of(row), customer)
                started = time.perf_counter()
                answer, usage = ask(client, built)
                seconds.append(time.perf_counter() - started)
                got = extract.parse(answer, built)
                expected = [extract.of_tool_call(a["name"], a["arguments"]) for a in row["actions"]]
                ok = extract.same(got, expected)
                group = "writes" if expected else "none"
                right[group, ok] += 1
                for request in expected:
                    kinds_expected[request.kind] += 1
                    kinds_found[request.kind] += request in got
                if out:
                    out.write(
                        json.dumps(
                            {
                                "set": Path(path).stem,
                                "id": row["id"],
                                "ok": ok,
                                "got": [r.__dict__ for r in got],
                                "expected": [r.__dict__ for r in expected],
                                "seconds": round(seconds[-1], 2),
                                "prompt_tokens": usage.get("prompt_tokens"),
                            }
                        )
                        + "\n"
                    )
                    out.flush()
                print(
                    f"{'ok  ' if ok else 'MISS'} {row['id']} {seconds[-1]:.1f}s got={[(r.kind, r.order_id, r.item_ids) for r in got]} expected={[(r.kind, r.order_id, r.item_ids) for r in expected]}",
                    flush=True,
                )
            w = right["writes", True], right["writes", True] + right["writes", False]
            n = right["none", True], right["none", True] + right["none", False]
            print(
                f"== {path}: equal to the expected writes {w[0] + n[0]}/{len(rows)} (expecting writes {w[0]}/{w[1]}, expecting none {n[0]}/{n[1]}); median {statistics.median(seconds):.1f} s, p95 {sorted(seconds)[int(0.95 * (len(seconds) - 1))]:.1f} s"
            )
            print("   per expected kind found: " + ", ".join(f"{k} {kinds_found[k]}/{kinds_expected[k]}" for k in sorted(kinds_expected)))
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
