"""The Zendesk backlog reader: a {"tickets": [...]} export streamed value by value, or NDJSON, over a sliding
buffer that tracks line numbers, so a large export is never held whole and a broken ticket is reported where it starts."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from itertools import islice

from crewdesk.intake.backlog_rows import MAX_RECORD_CHARS, bad_row, priority_of, validated_row
from crewdesk.intake.files import Row, parse_record


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


class ZendeskRows:
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
            return bad_row(line, str(item), "", "")
        if not isinstance(item, dict):
            return parse_record(item, line=line)
        customer = _dig(item, "via", "source", "from", "address") or _dig(item, "requester", "email") or item.get("requester_id") or item.get("customer")
        record = {
            "external_id": item.get("id", item.get("external_id")),
            "subject": item.get("subject") or item.get("raw_subject") or "",
            "body": item.get("description") or item.get("body") or "",
            "customer": str(customer or ""),
            "priority": priority_of(item.get("priority")),
            "source": self.source,
        }
        if isinstance(record["external_id"], (int, float)) and not isinstance(record["external_id"], bool):
            record["external_id"] = str(record["external_id"])
        excerpt = {k: item.get(k) for k in ("id", "subject", "status", "priority", "requester_id") if k in item}
        return validated_row(line, record, excerpt)

    def rows(self, skip: int) -> Iterator[Row]:
        for line, item in islice(self._items(), skip, None):
            yield self.to_row(line, item)
