"""Streaming readers for backlog exports (CSV, crewdesk JSONL, Zendesk JSON and NDJSON, Jira CSV): each yields Rows
with the line they start on, in constant memory, and can skip rows already stored without validating them."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

from crewdesk.errors import InvalidTicket
from crewdesk.intake.files import DEFAULT_SOURCE, Row, iter_jsonl, parse_record
from crewdesk.tickets.schemas import MAX_BODY_CHARS

FORMATS = ("csv", "jsonl", "zendesk", "jira-csv")
DEFAULT_SOURCES = {"csv": DEFAULT_SOURCE, "jsonl": DEFAULT_SOURCE, "zendesk": "zendesk", "jira-csv": "jira"}
MAX_LINE_CHARS = 1_000_000  # a longer physical line is a bad row, read past in pieces so memory stays bounded
MAX_RECORD_LINES = 1_000  # a quoted CSV field still open after this many lines is taken for a stray quote
MAX_RECORD_CHARS = 2_000_000  # the most one CSV record or one JSON ticket may hold in memory
EXCERPT_CHARS = 300  # of a bad row, kept as evidence


class _Lines:
    """Physical lines with their numbers, read in bounded pieces, with push-back to re-read after a stray quote.
    An over-long line comes back as (number, None)."""

    pending: deque[tuple[int, str | None]]

    def __init__(self, handle: io.TextIOBase) -> None:
        self.handle, self.number, self.pending = handle, 0, deque()

    def __iter__(self) -> _Lines:
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


def _csv_records(lines: _Lines, width: Callable[[], int | None]) -> Iterator[tuple[int, list[str] | None, str | None, str]]:
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


def _priority(value: object) -> str | None:
    """Exports name priorities their own way; an unknown one is left for triage rather than refusing the ticket."""
    return PRIORITIES.get(str(value).strip().lower()) if value not in (None, "") else None


def _bad(line: int, reason: str, external_id: str, raw: dict | str) -> Row:
    return Row(line, None, f"line {line}: {reason}", external_id or f"line{line}", raw)


def _validated(line: int, record: dict, raw: dict | str) -> Row:
    """Checks with a plainer reason than pydantic's for the usual gaps, then TicketIn's validation."""
    external_id = str(record.get("external_id") or "").strip()
    if not external_id:
        return _bad(line, "id is empty", "", raw)
    if not str(record.get("body") or "").strip():
        return _bad(line, "body is empty", external_id, raw)
    row = parse_record(record, line=line)
    return Row(row.line, row.ticket, row.error, row.external_id, raw)


COLUMNS = {
    "external_id": ("external_id", "id", "ticket_id"),
    "subject": ("subject", "title"),
    "body": ("body", "description", "message"),
    "customer": ("customer", "email", "requester"),
    "priority": ("priority",),
}


def _column_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


class _CsvRows:
    """A plain ticket CSV: header row, columns matched case-insensitively (COLUMNS lists the names)."""

    def __init__(self, lines: _Lines, *, source: str, path: Path) -> None:
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
        self.on_header([_column_key(name) for name in self.header])

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
            return _bad(line, f"expected {len(self.header)} fields, got {len(fields)}", fields[0] if fields else "", raw)
        record: dict[str, str | None] = {field: fields[i] for field, i in self.index.items()}
        if "external_id" not in self.index:  # no id column: the content is the identity, so a re-import still de-duplicates
            record["external_id"] = "sha-" + hashlib.sha256("\x1f".join(fields).encode("utf-8", "replace")).hexdigest()[:24]
        record["priority"] = _priority(record.get("priority"))
        record["source"] = self.source
        return _validated(line, record, raw)

    def rows(self, skip: int) -> Iterator[Row]:
        for line, fields, error, text in islice(self.records, skip, None):
            if fields is None:
                assert error is not None  # _csv_records gives the reason for every record it cannot read
                yield _bad(line, error, text.split(",", 1)[0][:255], text)
            else:
                yield self.to_row(line, fields)


class _JiraRows(_CsvRows):
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
            return _bad(line, f"expected {len(self.header)} fields, got {len(fields)}", fields[0] if fields else "", raw)

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
            "priority": _priority(get(self.priority)),
            "source": self.source,
        }
        return _validated(line, record, raw)


class _JsonBroken(Exception):
    """A value that is not valid JSON; reported as a bad row at the line its ticket starts on."""


_WS = re.compile(r"[ \t\n\r]*")
_INDENT = re.compile(r"[ \t]*")


def _match_end(pattern: re.Pattern[str], text: str, pos: int) -> int:
    match = pattern.match(text, pos)
    assert match is not None  # _WS and _INDENT match the empty string
    return match.end()


KEEP_BEHIND = 4096  # characters kept before the cursor, so a line's indentation can still be measured


class _JsonStream:
    """JSON values read incrementally with raw_decode over a sliding buffer, tracking line numbers; one value at a
    time is in memory (at most MAX_RECORD_CHARS)."""

    def __init__(self, handle: io.TextIOBase, chunk: int = 1 << 16) -> None:
        self.handle, self.chunk = handle, chunk
        self.buf, self.pos, self.line, self.eof = "", 0, 1, False
        self.decoder = json.JSONDecoder()

    def _more(self, want: int = 0) -> bool:
        if self.eof:
            return False
        cut = max(self.buf.rfind("\n", 0, self.pos) + 1, self.pos - KEEP_BEHIND)
        if cut > 0:
            self.buf, self.pos = self.buf[cut:], self.pos - cut
        text = self.handle.read(max(self.chunk, want))
        if not text:
            self.eof = True
            return False
        self.buf += text
        return True

    def _advance(self, end: int) -> None:
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end

    def column(self) -> int:
        return self.pos - (self.buf.rfind("\n", 0, self.pos) + 1)  # exact for indentation up to KEEP_BEHIND

    def peek(self) -> str:
        while True:
            self._advance(_match_end(_WS, self.buf, self.pos))
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def take(self) -> None:
        self.pos += 1  # a structural character, never a newline

    def small_object(self) -> dict | None:
        """The object at the cursor if it is already complete in the buffer (the fast path for NDJSON), else None
        and the cursor stays put."""
        try:
            obj, end = self.decoder.raw_decode(self.buf, self.pos)
        except json.JSONDecodeError:
            return None
        if not isinstance(obj, dict) or (end >= len(self.buf) and not self.eof):
            return None
        if "tickets" not in obj:
            self._advance(end)
        return obj

    def value(self) -> object:
        self.peek()  # raw_decode does not skip leading whitespace
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:  # a number at the buffer's end may go on in the next chunk
                    self._advance(end)
                    return obj
            except json.JSONDecodeError as exc:
                truncated = exc.pos >= len(self.buf) - 8 or exc.msg.startswith("Unterminated string")
                if self.eof or not truncated or len(self.buf) - self.pos > MAX_RECORD_CHARS:
                    where = self.line + self.buf.count("\n", self.pos, exc.pos)
                    raise _JsonBroken(f"not valid JSON (line {where}: {exc.msg.removesuffix(' at')})") from None
            self._more(want=len(self.buf) - self.pos)

    def skip_to_line_at(self, column: int) -> bool:
        """Resynchronise after a broken value: at the next line that opens an object at `column` (where the next
        ticket of a pretty-printed export, or the next line of NDJSON, starts)."""
        while True:
            while (newline := self.buf.find("\n", self.pos)) < 0:
                self.pos = len(self.buf)
                if not self._more():
                    return False
            self._advance(newline + 1)
            while (end := _match_end(_INDENT, self.buf, self.pos)) >= len(self.buf) and self._more():
                pass
            if end < len(self.buf) and end - self.pos == column and self.buf[end] == "{":
                self.pos = end
                return True


def _dig(item: dict, *keys: str) -> object:
    value: object = item
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


class _ZendeskRows:
    """A Zendesk tickets export: the {"tickets": [...]} document (its array streamed element by element), or
    NDJSON with one ticket (or one {"ticket": ...} / {"tickets": [...]} page) per line. A broken ticket is reported
    and reading goes on at the next ticket that starts at the same indentation."""

    def __init__(self, handle: io.TextIOBase, *, source: str) -> None:
        self.stream, self.source = _JsonStream(handle), source

    def _items(self) -> Iterator[tuple[int, object]]:
        stream = self.stream
        while (ch := stream.peek()) != "":
            line, column = stream.line, stream.column()
            try:
                if ch == "[":
                    stream.take()
                    yield from self._array()
                elif ch == "{":
                    yield from self._object(line)
                else:
                    yield line, stream.value()
            except _JsonBroken as broken:
                yield line, broken
                if not stream.skip_to_line_at(column):
                    return

    def _array(self) -> Iterator[tuple[int, object]]:
        stream = self.stream
        if stream.peek() == "]":
            stream.take()
            return
        while True:
            stream.peek()
            line, column = stream.line, stream.column()
            try:
                yield line, stream.value()
                ch = stream.peek()
                if ch not in (",", "]"):
                    raise _JsonBroken(f"expected ',' or ']' after the ticket that starts on line {line}, got {ch or 'end of file'!r}")
            except _JsonBroken as broken:
                yield line, broken
                if not stream.skip_to_line_at(column):
                    return
                continue
            stream.take()
            if ch == "]":
                return

    def _object(self, line: int) -> Iterator[tuple[int, object]]:
        """A top-level object: one ticket (an NDJSON line), or a page or document whose "tickets" array is streamed."""
        stream = self.stream
        whole = stream.small_object()
        if whole is not None and "tickets" not in whole:
            yield line, whole["ticket"] if isinstance(whole.get("ticket"), dict) and len(whole) == 1 else whole
            return
        stream.take()  # key by key, so a large "tickets" array is never held whole
        fields, streamed = {}, False
        while (ch := stream.peek()) != "}":
            if ch == ",":
                stream.take()
                continue
            if ch != '"':
                raise _JsonBroken(f"expected a key, got {ch or 'end of file'!r}")
            key = stream.value()
            if stream.peek() != ":":
                raise _JsonBroken("expected ':' after a key")
            stream.take()
            if key == "tickets" and stream.peek() == "[":
                stream.take()
                streamed = True
                yield from self._array()
            else:
                fields[key] = stream.value()
        stream.take()
        if not streamed:
            yield line, fields.get("ticket") if isinstance(fields.get("ticket"), dict) and len(fields) == 1 else fields

    def to_row(self, line: int, item: object) -> Row:
        if isinstance(item, _JsonBroken):
            return _bad(line, str(item), "", "")
        if not isinstance(item, dict):
            return parse_record(item, line=line)
        customer = _dig(item, "via", "source", "from", "address") or _dig(item, "requester", "email") or item.get("requester_id") or item.get("customer")
        record = {
            "external_id": item.get("id", item.get("external_id")),
            "subject": item.get("subject") or item.get("raw_subject") or "",
            "body": item.get("description") or item.get("body") or "",
            "customer": str(customer or ""),
            "priority": _priority(item.get("priority")),
            "source": self.source,
        }
        if isinstance(record["external_id"], (int, float)) and not isinstance(record["external_id"], bool):
            record["external_id"] = str(record["external_id"])
        excerpt = {k: item.get(k) for k in ("id", "subject", "status", "priority", "requester_id") if k in item}
        return _validated(line, record, excerpt)

    def rows(self, skip: int) -> Iterator[Row]:
        for line, item in islice(self._items(), skip, None):
            yield self.to_row(line, item)


class _JsonlRows:
    """crewdesk's own JSON lines (see files.py); --source overrides each row's source."""

    def __init__(self, lines: _Lines, *, source: str | None) -> None:
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
                yield _bad(number, f"line longer than {MAX_LINE_CHARS:,} characters", "", "")
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
            self.reader: _CsvRows | _ZendeskRows | _JsonlRows = _CsvRows(_Lines(self.text), source=effective, path=path)
        elif fmt == "jira-csv":
            self.reader = _JiraRows(_Lines(self.text), source=effective, path=path)
        elif fmt == "zendesk":
            self.reader = _ZendeskRows(self.text, source=effective)
        else:
            self.reader = _JsonlRows(_Lines(self.text), source=source)
        if isinstance(self.reader, _CsvRows):
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
    return "jira-csv" if "issue_key" in {_column_key(name) for name in header} else "csv"
