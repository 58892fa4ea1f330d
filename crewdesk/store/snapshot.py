"""Copy the store tables aside and put them back, so every evaluation trial starts from the same store."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

TABLES = ("store_users", "store_orders", "store_products")


def take(db: Session) -> None:
    for table in TABLES:
        db.execute(text(f"DROP TABLE IF EXISTS {table}_snapshot"))
        db.execute(text(f"CREATE TABLE {table}_snapshot AS SELECT * FROM {table}"))


def restore(db: Session) -> None:
    for table in TABLES:
        db.execute(text(f"DELETE FROM {table}"))
        db.execute(text(f"INSERT INTO {table} SELECT * FROM {table}_snapshot"))


def drop(db: Session) -> None:
    for table in TABLES:
        db.execute(text(f"DROP TABLE IF EXISTS {table}_snapshot"))
