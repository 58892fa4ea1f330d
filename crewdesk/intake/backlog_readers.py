"""Streaming readers for backlog exports (CSV, crewdesk JSONL, Zendesk JSON and NDJSON, Jira CSV): each yields Rows
with the line they start on, in constant memory, and can skip rows already stored without validating them.

Here: which format a file is, opening it with its reader, and crewdesk's own JSON lines. The CSV and Jira CSV readers
are in backlog_csv.py, the Zendesk one in backlog_zendesk.py, what they share in backlog_rows.py."""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crewdesk.errors import InvalidTicket
from crewdesk.intake.backlog_csv import CsvRows, JiraRows, column_key
from crewdesk.intake.backlog_rows import EXCERPT_CHARS as EXCERPT_CHARS  # re-exported: crewdesk/intake/backlog.py imports it from here
from crewdesk.intake.backlog_rows import MAX_LINE_CHARS, Lines, bad_row
from crewdesk.intake.backlog_zendesk import ZendeskRows
from crewdesk.intake.files import DEFAULT_SOURCE, Row, iter_jsonl

FORMATS = ("csv", "jsonl", "zendesk", "jira-csv")
DEFAULT_SOURCES = {"csv": DEFAULT_SOURCE, "jsonl": DEFAULT_SOURCE, "zendesk": "zendesk", "jira-csv": "jira"}


class _JsonlRows:
    """crewdesk's own JSON lines (see files.py); --source overrides each row's source."""

    def __init__(self, lines: Lines, *, source: str | None) -> None:
        self.lines, self.source = lines, source

    def rows(self, skip: int) -> Iterator[Row]:
        for number, text in self.lines:
            if text is not None:
                stripped = text.strip()
                if not stripped or stripped.startswith("//"):
                    continue
            if skip:
                skip -= 1
                continue
            if text is None:
                yield bad_row(number, f"line longer than {MAX_LINE_CHARS:,} characters", "", "")
                continue
            for row in iter_jsonl((text,), start=number):
                if row.ticket is not None and self.source is not None:
                    row = Row(row.line, row.ticket.model_copy(update={"source": self.source}), None, row.external_id, row.raw)
                yield row


class BacklogReader:
    """An open backlog file: rows() streams it, position() says how far (bytes) for a progress bar."""

    def __init__(self, path: Path, fmt: str, source: str | None) -> None:
        self.path, self.fmt = path, fmt
        self.binary = path.open("rb")
        self.size = path.stat().st_size
        # utf-8-sig drops a BOM; undecodable bytes become U+FFFD rather than stopping the import; newline="" keeps
        # line ends inside quoted CSV fields as they are.
        self.text = io.TextIOWrapper(self.binary, encoding="utf-8-sig", errors="replace", newline="")
        effective = source or DEFAULT_SOURCES[fmt]
        if fmt == "csv":
            self.reader: CsvRows | ZendeskRows | _JsonlRows = CsvRows(Lines(self.text), source=effective, path=path)
        elif fmt == "jira-csv":
            self.reader = JiraRows(Lines(self.text), source=effective, path=path)
        elif fmt == "zendesk":
            self.reader = ZendeskRows(self.text, source=effective)
        else:
            self.reader = _JsonlRows(Lines(self.text), source=source)
        if isinstance(self.reader, CsvRows):
            try:
                self.reader.prepare()
            except BaseException:
                self.text.close()
                raise

    def rows(self, skip: int = 0) -> Iterator[Row]:
        """Rows after the first `skip` (which are only parsed for their boundaries, not validated)."""
        return self.reader.rows(skip)

    def position(self) -> int:
        return self.binary.tell()

    def close(self) -> None:
        self.text.close()


@contextmanager
def open_backlog(path: str | Path, *, fmt: str = "auto", source: str | None = None) -> Iterator[BacklogReader]:
    file = check_file(path)
    fmt = detect_format(file) if fmt in (None, "", "auto") else check_format(fmt)
    reader = BacklogReader(file, fmt, _check_source(source))
    try:
        yield reader
    finally:
        reader.close()


def check_file(path: str | Path) -> Path:
    file = Path(path)
    if not file.exists():
        raise InvalidTicket(f"{file}: no such file")
    if not file.is_file():
        raise InvalidTicket(f"{file}: not a regular file")
    return file


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidTicket(f"unknown format {fmt!r}: one of auto, {', '.join(FORMATS)}")
    return fmt


def _check_source(source: str | None) -> str | None:
    if source is not None and not (1 <= len(source) <= 32 and "\x00" not in source):
        raise InvalidTicket(f"--source must be 1 to 32 characters, got {source!r}")
    return source


def _head(path: Path, size: int = 1 << 16) -> str:
    with path.open("rb") as handle:
        data = handle.read(size)
    return codecs.getincrementaldecoder("utf-8-sig")(errors="replace").decode(data)


def _looks_zendesk(head: str) -> bool:
    first = next((line for line in head.splitlines() if line.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return True  # a value spread over lines: a JSON document, not JSON lines
    return isinstance(record, dict) and (
        bool({"tickets", "ticket", "requester_id", "via"} & record.keys()) or ("description" in record and "body" not in record)
    )


def detect_format(path: str | Path) -> str:
    """By extension and a peek at the content."""
    file = Path(path)
    head = _head(file)
    suffix = file.suffix.lower()
    stripped = head.lstrip()
    if suffix == ".json":
        return "zendesk"
    if suffix in (".jsonl", ".ndjson") or (suffix != ".csv" and stripped[:1] in ("{", "[")):
        return "zendesk" if stripped[:1] == "[" or _looks_zendesk(head) else "jsonl"
    header = next(csv.reader([head.splitlines()[0] if head else ""]), [])
    return "jira-csv" if "issue_key" in {column_key(name) for name in header} else "csv"
