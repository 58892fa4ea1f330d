"""A throwaway PostgreSQL database per benchmark run, migrated to head, dropped afterwards (bench/*.py share it)."""

from __future__ import annotations

import os
import uuid

PG_ADMIN = os.environ.get("CREWDESK_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_db() -> str:
    import psycopg

    from crewdesk.migrate import upgrade

    name = f"crewdesk_bench_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rpartition("/")[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    upgrade(url)
    return url


def drop_db(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')
