"""Load the demo store (tau2-bench retail db.json) into our tables, replacing what is there."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from crewdesk.errors import CrewdeskError
from crewdesk.store.models import StoreOrder, StoreProduct, StoreUser

DEFAULT_DB_JSON = Path(__file__).resolve().parent / "tau2" / "db.json"  # ships with the package (tau2/SOURCES.md)


def read_store(path: Path) -> dict:
    if not path.exists():
        raise CrewdeskError(f"{path}: no such file (the tau2-bench retail db.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CrewdeskError(f"{path}: not valid JSON ({exc})") from exc
    if not {"users", "orders", "products"} <= set(data):
        raise CrewdeskError(f"{path}: expected keys users, orders, products")
    return data


def load_store(*, db: Session, data: dict) -> dict[str, int]:
    db.execute(delete(StoreOrder))
    db.execute(delete(StoreUser))
    db.execute(delete(StoreProduct))
    users = [{"user_id": u["user_id"], "email": u["email"], "doc": u} for u in data["users"].values()]
    orders = [{"order_id": o["order_id"], "user_id": o["user_id"], "status": o["status"], "doc": o} for o in data["orders"].values()]
    products = [{"product_id": p["product_id"], "name": p["name"], "doc": p} for p in data["products"].values()]
    for model, rows in ((StoreUser, users), (StoreOrder, orders), (StoreProduct, products)):
        for start in range(0, len(rows), 500):
            db.execute(insert(model), rows[start : start + 500])
    return {"users": len(users), "orders": len(orders), "products": len(products)}
