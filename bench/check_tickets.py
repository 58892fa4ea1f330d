"""Check an evaluation set's expected store effects against the demo store, before anything is run on it.

    .venv/bin/python bench/check_tickets.py bench/generalization/dev.jsonl [more files...]

Each line is a ticket with `actions` (the writes a correct answer makes, as tool calls) and optionally `customer`
(the channel's e-mail). For every ticket, on a fresh copy of the demo store (SQLite in memory): the customer exists,
every action's order belongs to the ticket's customer, and every action succeeds when replayed in order. A ticket
that fails any check is printed with the reason; the exit code is 1 if any did.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from crewdesk.connectors.base import StoreError
from crewdesk.connectors.builtin_store import SqlRetailStore, state_hash
from crewdesk.store.models import StoreOrder, StoreProduct, StoreUser
from crewdesk.store.operations import operations
from crewdesk.store.service import DEFAULT_DB_JSON, load_store, read_store

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
LANGUAGES = {"en", "de", "es", "fr"}


def _fresh(data: dict[str, Any]):
    engine = create_engine("sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool)
    for model in (StoreUser, StoreOrder, StoreProduct):
        model.__table__.create(engine)
    factory = sessionmaker(bind=engine)
    with factory.begin() as db:
        load_store(db=db, data=data)
    return factory


def check(rows: list[dict[str, Any]], data: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    ops = operations()
    factory = _fresh(data)
    with factory() as db:
        pristine = state_hash(db)
    emails = {u["email"]: u["user_id"] for u in data["users"].values()}
    seen: set[str] = set()
    for row in rows:
        tid = row.get("id", "?")
        if tid in seen:
            problems.append(f"{tid}: duplicate id")
        seen.add(tid)
        for key in ("id", "body", "language", "actions"):
            if key not in row:
                problems.append(f"{tid}: missing {key}")
        if row.get("language") not in LANGUAGES:
            problems.append(f"{tid}: language {row.get('language')!r} not one of {sorted(LANGUAGES)}")
        owner = emails.get(row.get("customer") or "")
        if row.get("customer") and owner is None:
            problems.append(f"{tid}: customer {row['customer']} is not a user of the demo store")
        owner = owner or row.get("user_id")
        factory = _fresh(data)
        with factory() as db:
            shop = SqlRetailStore(db)
            for n, action in enumerate(row.get("actions", [])):
                name, arguments = action.get("name"), action.get("arguments", {})
                if name not in WRITES:
                    problems.append(f"{tid}: action {n} {name!r} is not a write (list only the writes)")
                    continue
                order_id = arguments.get("order_id")
                if order_id:
                    order = db.execute(select(StoreOrder).where(StoreOrder.order_id == order_id)).scalar_one_or_none()
                    if order is None:
                        problems.append(f"{tid}: action {n} {name}: no order {order_id}")
                        continue
                    if owner and order.user_id != owner:
                        problems.append(f"{tid}: action {n} {name}: order {order_id} belongs to {order.user_id}, not the ticket's customer {owner}")
                if name == "modify_user_address" and owner and arguments.get("user_id") != owner:
                    problems.append(f"{tid}: action {n} modify_user_address for {arguments.get('user_id')}, not {owner}")
                try:
                    with db.begin_nested():
                        ops[name].run(shop, arguments)
                except (StoreError, KeyError, TypeError) as exc:
                    problems.append(f"{tid}: action {n} {name} fails on the store: {exc}")
            db.commit()
            changed = state_hash(db) != pristine
        writes = [a for a in row.get("actions", []) if a.get("name") != "transfer_to_human_agents"]
        if writes and not changed:
            problems.append(f"{tid}: its actions change nothing in the store")
    return problems


def main(paths: list[str]) -> int:
    data = read_store(DEFAULT_DB_JSON)
    bad = 0
    for path in paths:
        rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        problems = check(rows, data)
        languages: dict[str, int] = {}
        for row in rows:
            languages[row.get("language", "?")] = languages.get(row.get("language", "?"), 0) + 1
        with_writes = sum(1 for r in rows if r.get("actions"))
        print(
            f"{path}: {len(rows)} tickets ({', '.join(f'{k} {v}' for k, v in sorted(languages.items()))}), {with_writes} with writes, {len(problems)} problems"
        )
        for problem in problems:
            print("  " + problem)
        bad += bool(problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
