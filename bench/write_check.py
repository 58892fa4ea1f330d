"""What the write check (crews/procedures/check.py) would do at each bar, from one run that only recorded it.

    CREWDESK_WRITE_CHECK=audit CREWDESK_HOME=/tmp/ev crewdesk eval examples SET.jsonl --report /tmp/ev/r.html
    .venv/bin/python bench/write_check.py /tmp/ev            # reads /tmp/ev/crewdesk.db and /tmp/ev/r.trials.jsonl

In audit mode every item write made unasked is checked (decision/write_checked, with P(yes) per item) and made anyway,
so one run gives the set's result without the check and, for every bar, what holding the doubted writes would change:
a held write is stated for the customer's yes, so its order stays as it was and the ticket is not `resolved`. A ticket
then has exactly the expected store effects when every problem it had was a write to an order expected unchanged that
the check held, and no write the check held was one the set expects. Prints exact and resolved-but-wrong per bar.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from pathlib import Path

ORDER = re.compile(r"^order (#W\d+): expected (unchanged)?")
BARS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)
ORDER_BARS = (0.5, 0.6, 0.7, 0.8, 0.9)


def simulate(trials, checked, asked_orders, write_bar: float, order_bar: float | None) -> tuple[int, int, int]:
    """(exact, resolved but wrong, tickets not resolved by the checks) with both checks at these bars."""
    exact = wrong = stopped = 0
    for t in trials:
        orders = checked.get(t["task_id"], {})
        held = {o for o, p in orders.items() if p < write_bar}
        unchanged_expected: set[str] = set()
        named: set[str] = set()
        other = 0
        for problem in t["problems"]:
            m = ORDER.match(problem)
            if m:
                named.add(m.group(1))
                if m.group(2):
                    unchanged_expected.add(m.group(1))
                    continue
            other += 1  # a wrong write held is still not the expected one; a user's problem is not an order's
        success = t["success"] if not held else (not (held - named) and other == 0 and unchanged_expected <= held)
        status = t["status"] if not held else "waiting_on_customer"
        if status == "resolved" and order_bar is not None and any(p >= order_bar for p in asked_orders.get(t["task_id"], [])):
            status = "waiting_on_customer"
        stopped += status != t["status"]
        exact += success
        wrong += status == "resolved" and not success
    return exact, wrong, stopped


def main() -> int:
    home = Path(sys.argv[1])
    trials = [json.loads(line) for line in (home / "r.trials.jsonl").read_text().splitlines() if line.strip()]
    db = sqlite3.connect(home / "crewdesk.db")
    checked: dict[str, dict[str, float]] = {}  # task id -> order -> lowest P(yes) of its written items
    asked_orders: dict[str, list[float]] = {}  # task id -> P(yes) of each named order nothing was done about
    rows = db.execute(
        "select t.external_id, e.name, e.arguments from audit_events e join tickets t on t.id = e.ticket_id where e.name in ('write_checked', 'order_checked')"
    ).fetchall()
    for external, name, arguments in rows:
        task = external.rsplit("-", 1)[0]
        args = json.loads(arguments)
        if name == "order_checked":
            asked_orders.setdefault(task, []).append(args["p_yes"])
            continue
        lowest = min((i["p_yes"] for i in args["items"]), default=1.0)
        orders = checked.setdefault(task, {})
        orders[args["order_id"]] = min(lowest, orders.get(args["order_id"], 1.0))
    n = len(trials)
    print(
        f"{home}: {n} tickets; {sum(len(v) for v in checked.values())} writes checked in {len(checked)} tickets; "
        f"{sum(len(v) for v in asked_orders.values())} untouched orders asked about in {len(asked_orders)} tickets"
    )
    order_bars: list[float | None] = [None, *ORDER_BARS]
    print("exact / resolved-but-wrong / tickets the checks stop from resolving; rows: write bar, columns: order bar (none = not asked)")
    print("write bar | " + " | ".join("none" if b is None else f"{b:.1f}" for b in order_bars))
    for bar in BARS:
        cells = [simulate(trials, checked, asked_orders, bar, ob) for ob in order_bars]
        print(f"{bar:.1f} | " + " | ".join(f"{e}/{n} {w} {s}" for e, w, s in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
