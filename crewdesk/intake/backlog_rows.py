"""What every backlog reader shares (crewdesk/intake/backlog_readers.py opens a file with the right one): the
memory limits, physical lines read in bounded pieces, the priority names exports use, and how a record becomes a
Row (validated as a ticket, or a bad row with its reason and an excerpt as evidence)."""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Sequence

from crewdesk.intake.files import Row, parse_record

MAX_LINE_CHARS = 1_000_000  # a longer physical line is a bad row, read past in pieces so memory stays bounded
MAX_RECORD_CHARS = 2_000_000  # the most one CSV record or one JSON ticket may hold in memory
EXCERPT_CHARS = 300  # of a bad row, kept as evidence


class Lines:
    """Physical lines with their numbers, read in bounded pieces, with push-back to re-read after a stray quote.
    An over-long line comes back as (number, None)."""

    pending: deque[tuple[int, str | None]]

    def __init__(self, handle: io.TextIOBase) -> None:
        self.handle, self.number, self.pending = handle, 0, deque()

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> tuple[int, str | None]:
        if self.pending:
            return self.pending.popleft()
        text = self.handle.readline(MAX_LINE_CHARS)
        if not text:
            raise StopIteration
        self.number += 1
        if len(text) >= MAX_LINE_CHARS and not text.endswith(("\n", "\r")):
            while (more := self.handle.readline(MAX_LINE_CHARS)) and not more.endswith(("\n", "\r")):
                pass
            return self.number, None
        return self.number, text

    def push_back(self, lines: Sequence[tuple[int, str | None]]) -> None:
        self.pending.extendleft(reversed(lines))


PRIORITIES = {
    "urgent": "urgent",
    "critical": "urgent",
    "blocker": "urgent",
    "highest": "urgent",
    "p1": "urgent",
    "high": "high",
    "major": "high",
    "p2": "high",
    "normal": "normal",
    "medium": "normal",
    "p3": "normal",
    "low": "low",
    "minor": "low",
    "lowest": "low",
    "trivial": "low",
    "p4": "low",
    "p5": "low",
}


def priority_of(value: object) -> str | None:
    """Exports name priorities their own way; an unknown one is left for triage rather than refusing the ticket."""
    return PRIORITIES.get(str(value).strip().lower()) if value not in (None, "") else None


def bad_row(line: int, reason: str, external_id: str, raw: dict | str) -> Row:
    return Row(line, None, f"line {line}: {reason}", external_id or f"line{line}", raw)


def validated_row(line: int, record: dict, raw: dict | str) -> Row:
    """Checks with a plainer reason than pydantic's for the usual gaps, then TicketIn's validation."""
    external_id = str(record.get("external_id") or "").strip()
    if not external_id:
        return bad_row(line, "id is empty", "", raw)
    if not str(record.get("body") or "").strip():
        return bad_row(line, "body is empty", external_id, raw)
    row = parse_record(record, line=line)
    return Row(row.line, row.ticket, row.error, row.external_id, raw)
