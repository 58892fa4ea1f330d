"""Backlog CSV readers: a plain ticket CSV (columns found by name) and Jira's CSV export (comments folded into the
body). Records may span lines inside quoted fields; a stray quote is reported and does not swallow the rows after it."""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

from crewdesk.errors import InvalidTicket
from crewdesk.intake.backlog_rows import EXCERPT_CHARS, MAX_LINE_CHARS, MAX_RECORD_CHARS, Lines, bad_row, priority_of, validated_row
from crewdesk.intake.files import Row
from crewdesk.tickets.schemas import MAX_BODY_CHARS

MAX_RECORD_LINES = 1_000  # a quoted CSV field still open after this many lines is taken for a stray quote


def _still_quoted(text: str, in_quotes: bool) -> bool:
    """Whether a quoted field is still open at the end of this line, following Python's csv (non-strict) rules: a
    quote opens a field only at its start, "" inside is an escaped quote, any other quote is literal."""
    i, n = 0, len(text)
    while (q := text.find('"', i)) >= 0:
        if in_quotes:
            if q + 1 < n and text[q + 1] == '"':
                i = q + 2
                continue
            in_quotes = False
        elif q == 0 or text[q - 1] == ",":
            in_quotes = True
        i = q + 1
    return in_quotes


def _closes_cleanly(text: str) -> bool:
    """Whether the quoted field open at the start of this line closes with a quote followed by a comma or the line's
    end. A stray quote's field is "closed" by the next row's opening quote instead, which is followed by text."""
    i = 0
    while (q := text.find('"', i)) >= 0:
        if text[q + 1 : q + 2] == '"':
            i = q + 2
            continue
        return text[q + 1 : q + 2] in (",", "\r", "\n", "")
    return False


def _fields(text: str) -> list[str]:
    if '"' not in text:
        return text.rstrip("\r\n").split(",")
    return next(csv.reader((text,)), [])


def _csv_records(lines: Lines, width: Callable[[], int | None]) -> Iterator[tuple[int, list[str] | None, str | None, str]]:
    """(first line, fields, error, first line's text when in error) per CSV record; blank lines are skipped. A multi-line record that never closes,
    closes on another field's opening quote, or ends with the wrong field count was a stray quote: its first line is
    reported and the lines after it are read again as rows of their own, so one broken quote does not swallow the
    good rows behind it. (CSV cannot tell every stray quote from a multi-line field; these catch the usual ones.)"""
    for number, text in lines:
        if text is None:
            yield number, None, f"line longer than {MAX_LINE_CHARS:,} characters", ""
            continue
        if not text.strip():
            continue
        if '"' not in text or not _still_quoted(text, False):
            yield number, _fields(text), None, ""
            continue
        parts: list[tuple[int, str | None]]
        parts, size, broken = [(number, text)], len(text), None
        for more_number, more in lines:
            parts.append((more_number, more))
            if more is None:
                broken = f"quoted field opened on line {number} runs into a line longer than {MAX_LINE_CHARS:,} characters"
                break
            size += len(more)
            if not _still_quoted(more, True):
                if not _closes_cleanly(more):
                    broken = f"quoted field opened on line {number} is closed by another field's quote on line {more_number} (a stray quote?)"
                break
            if len(parts) >= MAX_RECORD_LINES or size >= MAX_RECORD_CHARS:
                broken = f"quoted field opened on line {number} is still open {len(parts)} lines later (a stray quote?)"
                break
        else:
            broken = f"quoted field opened on line {number} never closes (a stray quote?)"
        if broken is None:
            fields = _fields("".join(t for _, t in parts if t is not None))
            expected = width()
            if expected is None or len(fields) == expected:
                yield number, fields, None, ""
                continue
            broken = f"quoted field opened on line {number} closes on line {parts[-1][0]} where the row then has {len(fields)} fields, not {expected} (a stray quote?)"
        yield number, None, broken, text[:EXCERPT_CHARS]
        lines.push_back(parts[1:])


COLUMNS = {
    "external_id": ("external_id", "id", "ticket_id"),
    "subject": ("subject", "title"),
    "body": ("body", "description", "message"),
    "customer": ("customer", "email", "requester"),
    "priority": ("priority",),
}


def column_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


class CsvRows:
    """A plain ticket CSV: header row, columns matched case-insensitively (COLUMNS lists the names)."""

    def __init__(self, lines: Lines, *, source: str, path: Path) -> None:
        self.header: list[str] | None = None
        self.records = _csv_records(lines, lambda: len(self.header) if self.header is not None else None)
        self.source, self.path = source, path

    def prepare(self) -> None:
        """Read and check the header now, so an unusable file fails before anything is stored."""
        for _, fields, _, _ in self.records:
            if fields is not None:
                self.header = [f.strip() for f in fields]
                break
        if self.header is None:
            raise InvalidTicket(f"{self.path}: no header row")
        self.on_header([column_key(name) for name in self.header])

    def on_header(self, keys: list[str]) -> None:
        assert self.header is not None  # prepare() read it
        self.index = {}
        for field, names in COLUMNS.items():
            found = next((keys.index(name) for name in names if name in keys), None)
            if found is not None:
                self.index[field] = found
        if "body" not in self.index:
            raise InvalidTicket(f"{self.path}: the header has no body column (one of {', '.join(COLUMNS['body'])}): {', '.join(self.header)}")

    def to_row(self, line: int, fields: list[str]) -> Row:
        assert self.header is not None  # prepare() read it
        raw = dict(zip(self.header, (f[:EXCERPT_CHARS] for f in fields), strict=False))
        if len(fields) != len(self.header):
            return bad_row(line, f"expected {len(self.header)} fields, got {len(fields)}", fields[0] if fields else "", raw)
        record: dict[str, str | None] = {field: fields[i] for field, i in self.index.items()}
        if "external_id" not in self.index:  # no id column: the content is the identity, so a re-import still de-duplicates
            record["external_id"] = "sha-" + hashlib.sha256("\x1f".join(fields).encode("utf-8", "replace")).hexdigest()[:24]
        record["priority"] = priority_of(record.get("priority"))
        record["source"] = self.source
        return validated_row(line, record, raw)

    def rows(self, skip: int) -> Iterator[Row]:
        for line, fields, error, text in islice(self.records, skip, None):
            if fields is None:
                assert error is not None  # _csv_records gives the reason for every record it cannot read
                yield bad_row(line, error, text.split(",", 1)[0][:255], text)
            else:
                yield self.to_row(line, fields)


class JiraRows(CsvRows):
    """A Jira CSV export: "Issue key", "Summary", "Description", "Reporter", "Priority", "Status", and a column per
    comment, all named "Comment". Comments follow the description in the body, trimmed to fit."""

    def on_header(self, keys: list[str]) -> None:
        assert self.header is not None  # prepare() read it

        def first(*names: str) -> int | None:
            return next((keys.index(n) for n in names if n in keys), None)

        self.key, self.summary, self.description = first("issue_key"), first("summary"), first("description")
        self.reporter, self.priority, self.status = first("reporter_email", "reporter"), first("priority"), first("status")
        self.comments = [i for i, k in enumerate(keys) if k == "comment"]
        if self.key is None or (self.summary is None and self.description is None):
            raise InvalidTicket(f"{self.path}: not a Jira CSV export (needs 'Issue key' and 'Summary' or 'Description'): {', '.join(self.header)}")

    def to_row(self, line: int, fields: list[str]) -> Row:
        assert self.header is not None  # prepare() read it
        raw = dict(zip(self.header, (f[:EXCERPT_CHARS] for f in fields), strict=False))
        if len(fields) != len(self.header):
            return bad_row(line, f"expected {len(self.header)} fields, got {len(fields)}", fields[0] if fields else "", raw)

        def get(index: int | None) -> str:
            return fields[index].strip() if index is not None else ""

        summary, description = get(self.summary), get(self.description)
        body = description
        notes = []
        for index in self.comments:
            text = fields[index].strip()
            parts = text.split(";", 2)  # Jira writes "date;author;text"
            if len(parts) == 3:
                notes.append(f"[{parts[0].strip()}] {parts[1].strip()}: {parts[2].strip()}")
            elif text:
                notes.append(text)
        if notes and len(description) <= MAX_BODY_CHARS:
            room = MAX_BODY_CHARS - len(description) - 20
            extra = "\n\n".join(notes)
            body = (description + "\n\nComments:\n" if description else "") + (extra[:room] if room > 0 else "")
        record = {
            "external_id": get(self.key),
            "subject": summary,
            "body": body.strip() or summary,
            "customer": get(self.reporter),
            "priority": priority_of(get(self.priority)),
            "source": self.source,
        }
        return validated_row(line, record, raw)
