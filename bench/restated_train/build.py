"""Build the restated-train set: every tau2 retail train ticket written again in two other phrasings (parts written by
hand, see README.md here), each with its task's reference writes as `actions`, so `crewdesk eval examples` scores it
the way `crewdesk eval tau2-retail` scores the original wording.

    .venv/bin/python bench/restated_train/build.py      # writes bench/restated_train/restated.jsonl
"""

from __future__ import annotations

import json
from pathlib import Path

from crews.eval_tickets import load_tasks

HERE = Path(__file__).resolve().parent
WRITES = {
    "cancel_pending_order",
    "modify_pending_order_address",
    "modify_pending_order_items",
    "modify_pending_order_payment",
    "modify_user_address",
    "return_delivered_order_items",
    "exchange_delivered_order_items",
    "transfer_to_human_agents",
}


def main() -> None:
    tasks = {task["id"]: task for task in load_tasks("train")}
    rows = [json.loads(line) for part in sorted(HERE.glob("part*.jsonl")) for line in part.read_text(encoding="utf-8").splitlines() if line.strip()]
    seen = {(row["task_id"], row["variant"]) for row in rows}
    missing = [f"{task_id}{variant}" for task_id in tasks for variant in "ab" if (task_id, variant) not in seen]
    if missing:
        raise SystemExit(f"restatements missing for {', '.join(missing)}")
    out = []
    for row in sorted(rows, key=lambda r: (list(tasks).index(r["task_id"]), r["variant"])):
        actions = [{"name": a["name"], "arguments": a["arguments"]} for a in tasks[row["task_id"]]["evaluation_criteria"]["actions"] if a["name"] in WRITES]
        out.append(
            {
                "id": row["id"],
                "task_id": row["task_id"],
                "variant": row["variant"],
                "language": "en",
                "subject": row["subject"],
                "body": row["body"],
                "actions": actions,
            }
        )
    (HERE / "restated.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    print(f"{len(out)} tickets written to {HERE / 'restated.jsonl'}")


if __name__ == "__main__":
    main()
