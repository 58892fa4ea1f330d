"""The audit hash chains: each row's hash covers its content, its place in its ticket's chain and the previous row's hash;
each seal's hash covers one chain's head at the end of a run and the previous seal's hash."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
HASHED_FIELDS = ("ticket_id", "run_id", "seq", "kind", "name", "actor", "arguments", "result", "duration_ms", "error", "created_at")
SEAL_FIELDS = ("chain", "run_id", "count", "chain_hash", "created_at")
SYSTEM_CHAIN = 0  # rows that belong to no ticket (intake refusals, retention runs) share one chain


def chain_of(ticket_id: int | None) -> int:
    return ticket_id if ticket_id is not None else SYSTEM_CHAIN


def _canon(value: Any) -> Any:
    """One form for a value before and after a database round trip (JSONB turns 1.0 into 1, drops tz on SQLite)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, dict):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    return str(value)


def row_hash(prev_hash: str, fields: dict[str, Any], names: tuple[str, ...] = HASHED_FIELDS) -> str:
    payload = json.dumps({k: _canon(fields.get(k)) for k in names}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{payload}".encode()).hexdigest()


def seal_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return row_hash(prev_hash, fields, SEAL_FIELDS)
