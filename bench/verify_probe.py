"""How well does the local model answer one yes/no question per item: "does the customer ask us to <do this> to <this
item>?" Probe for issue 19's write check (verify before "resolved"), measured before it is built.

    .venv/bin/python bench/verify_probe.py bench/generalization/dev.jsonl --base-url http://127.0.0.1:8090 [--limit N]

For every ticket of a set whose expected writes touch items (return, exchange, change, cancel), every item of the
customer's pending and delivered orders is asked about once, with the verb its order's status fits (the expected one
when the item is in an expected write): truth is whether the expected writes touch it. The model answers through a
grammar (yes | no), and the probability of "yes" is read from its top log-probabilities. Prints, per threshold on
P(yes): items meant that the model would veto (a correct write lost to a question), and items not meant it would pass
(a wrong write it would not catch). Talks to any llama.cpp server (`crewdesk model serve`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from crewdesk.llm.base import yes_no_from_logprobs
from crews.procedures import check

ROOT = Path(__file__).resolve().parents[1]
DB = ROOT / "crewdesk" / "store" / "tau2" / "db.json"
VERBS = {
    "return_delivered_order_items": "return",
    "exchange_delivered_order_items": "exchange",
    "modify_pending_order_items": "change",
    "cancel_pending_order": "cancel",
}


def label(item: dict[str, Any]) -> str:
    options = ", ".join(f"{k} {v}" for k, v in item["options"].items())
    return f"{item['name']} ({options})"


def question(verb: str, item: dict[str, Any], order: dict[str, Any]) -> str:
    what = {"cancel": "cancel the whole order", "return": "take back", "exchange": "exchange", "change": "change"}[verb]
    if verb == "cancel":
        return f"Does the customer ask us to cancel order {order['order_id']} (with {item['name']})?"
    return f"Does the customer ask us to {what} this item: {label(item)} from order {order['order_id']} ({order['status']})?"


def ask(client: httpx.Client, text: str, q: str) -> float:
    body = {
        "messages": check.messages(text, q),
        "max_tokens": 2,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 10,
        "cache_prompt": True,
    }
    response = client.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    content = response.json()["choices"][0]["logprobs"]["content"][0]
    return yes_no_from_logprobs([(c["token"], c["logprob"]) for c in content["top_logprobs"]])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", nargs="+")
    parser.add_argument("--base-url", default="http://127.0.0.1:8090")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--out", default="")
    parser.add_argument("--same-orders", action="store_true", help="only the items of the orders the expected writes touch (the hard cases)")
    args = parser.parse_args()
    data = json.loads(DB.read_text())
    emails = {u["email"]: uid for uid, u in data["users"].items()}
    rows = [json.loads(line) for p in args.path for line in Path(p).read_text().splitlines() if line.strip()]
    results: list[dict[str, Any]] = []
    seconds: list[float] = []
    with httpx.Client(base_url=args.base_url, timeout=120) as client:
        done = 0
        for row in rows:
            writes = [a for a in row["actions"] if a["name"] in VERBS]
            uid = emails.get(row.get("customer", "")) or row.get("user_id")
            if not writes or not uid:
                continue
            meant: dict[str, str] = {}
            for a in writes:
                order = data["orders"][a["arguments"]["order_id"]]
                ids = a["arguments"].get("item_ids") or [i["item_id"] for i in order["items"]]
                for item_id in ids:
                    meant[f"{order['order_id']}/{item_id}"] = VERBS[a["name"]]
            text = f"Subject: {row.get('subject', '')}\n{row['body']}"
            touched = {k.split("/")[0] for k in meant}
            for order_id in data["users"][uid]["orders"]:
                order = data["orders"][order_id]
                if args.same_orders and order_id not in touched:
                    continue
                if order["status"] not in {"pending", "delivered"}:
                    continue
                for item in order["items"]:
                    k = f"{order_id}/{item['item_id']}"
                    verb = meant.get(k) or ("return" if order["status"] == "delivered" else "cancel")
                    started = time.monotonic()
                    p = ask(client, text, question(verb, item, order))
                    seconds.append(time.monotonic() - started)
                    results.append({"id": row["id"], "language": row["language"], "item": k, "verb": verb, "meant": k in meant, "p_yes": round(p, 4)})
            done += 1
            print(f"{row['id']}: {sum(r['id'] == row['id'] for r in results)} items", file=sys.stderr)
            if args.limit and done >= args.limit:
                break
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in results))
    meant_rows = [r for r in results if r["meant"]]
    other = [r for r in results if not r["meant"]]
    print(f"tickets {done}, items {len(results)} ({len(meant_rows)} meant, {len(other)} not); seconds per question p50 {statistics.median(seconds):.2f}")
    pairs = [(m["p_yes"], o["p_yes"]) for m in meant_rows for o in other if m["id"] == o["id"]]
    if pairs:
        auc = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
        print(f"within-ticket AUC (a meant item scored above a not-meant one): {auc:.3f} over {len(pairs)} pairs")
    for threshold in (0.1, 0.2, 0.3, 0.5, 0.7, 0.9):
        vetoed = sum(r["p_yes"] < threshold for r in meant_rows)
        passed = sum(r["p_yes"] >= threshold for r in other)
        print(f"P(yes) >= {threshold}: meant items vetoed {vetoed}/{len(meant_rows)}; not-meant items passed {passed}/{len(other)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
