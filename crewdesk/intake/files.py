"""JSONL / JSON ticket files, streamed line by line; each row is a ticket or a rejection with its line number."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from crewdesk.errors import InvalidTicket
from crewdesk.tickets.schemas import TicketIn

DEFAULT_SOURCE = "file"


@dataclass(frozen=True)
class Row:
    line: int
    ticket: TicketIn | None
    error: str | None
    external_id: str
    raw: dict | str


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "row"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_record(record: object, *, line: int) -> Row:
    if not isinstance(record, dict):
        text = json.dumps(record)[:200]
        return Row(line, None, f"line {line}: expected a JSON object, got {type(record).__name__}", _fallback_id(text, line), text)
    data = dict(record)
    if "external_id" not in data and "id" in data:
        data["external_id"] = data.pop("id")
    data.setdefault("source", DEFAULT_SOURCE)
    try:
        ticket = TicketIn.model_validate(data)
    except ValidationError as exc:
        ext = str(data.get("external_id") or _fallback_id(json.dumps(record, sort_keys=True, default=str), line))
        return Row(line, None, f"line {line}: {_describe(exc)}", ext, record)
    return Row(line, ticket, None, ticket.external_id, record)


def _fallback_id(text: str, line: int) -> str:
    return f"line{line}-" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]


def iter_jsonl(lines: Iterable[str], *, start: int = 1) -> Iterator[Row]:
    """start: the line number of the first line given (a resumed backlog import skips what it already stored)."""
    for number, text in enumerate(lines, start=start):
        stripped = text.strip()
        if not stripped or stripped.startswith("//"):
            continue
        try:
            record = json.loads(stripped)
        except json.JSONDecodeError as exc:
            yield Row(number, None, f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})", _fallback_id(stripped, number), stripped[:2000])
            continue
        yield parse_record(record, line=number)


def iter_file(path: str | Path, stream: IO[str] | None = None) -> Iterator[Row]:
    """Rows from a .jsonl file (or '-' with a stream), or a .json array."""
    if str(path) == "-":
        if stream is None:
            raise InvalidTicket("reading '-' needs standard input")
        yield from iter_jsonl(stream)
        return
    file = Path(path)
    if not file.exists():
        raise InvalidTicket(f"{file}: no such file")
    if file.is_dir():
        raise InvalidTicket(f"{file}: is a directory, expected a .jsonl or .json file")
    if file.suffix == ".json":
        try:
            records = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidTicket(f"{file}: not valid JSON ({exc})") from exc
        if not isinstance(records, list):
            records = [records]
        for index, record in enumerate(records, start=1):
            yield parse_record(record, line=index)
        return
    with file.open(encoding="utf-8", errors="replace") as handle:
        yield from iter_jsonl(handle)
