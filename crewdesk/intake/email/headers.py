"""Header fields of an inbound mail read defensively: raw 8-bit bytes made printable, Message-IDs, addresses and the
date, with whatever could not be read recorded as a defect rather than raised; and the lenient parsing policies, whose
message factory repairs the MIME header fields that steer the parser before it reads the body."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.errors import MessageDefect
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime

_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
_ADDRESS = re.compile(r"[^<>\r\n]+@[^@\s<>]+")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM_START = re.compile(_TOKEN + r"\s*=")
_MIME_TYPE = re.compile(rf"\s*({_TOKEN})/{_TOKEN}\s*(?:;|$)")
_LONE_CR = re.compile(r"\r(?!\n)")


def printable(value: str) -> str:
    """Raw 8-bit header bytes arrive as surrogates; PostgreSQL refuses those and NUL. Decode them as UTF-8, replace the rest."""
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        try:
            value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:  # mixed with surrogates that are not escaped bytes
            pass
    value = value.encode("utf-8", "replace").decode("utf-8")  # lone surrogates of any other kind
    return value.replace("\x00", "\ufffd")


def raw_header(msg: Message, name: str) -> str:
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            return " ".join(str(value).split())
    return ""


def all_raw_headers(msg: Message, name: str, limit: int = 50) -> list[str]:
    """Every value of a header field, unfolded and printable, top first (the nearest MTA's first)."""
    return [printable(" ".join(str(value).split())) for key, value in msg.raw_items() if key.lower() == name.lower()][:limit]


def header_text(msg: Message, name: str, defects: list[str]) -> str:
    try:
        value = msg.get(name)
        text = "" if value is None else str(value)
    except Exception as exc:  # noqa: BLE001 - malformed header: keep the raw text
        defects.append(f"{name}: undecodable header ({type(exc).__name__}), kept raw")
        text = raw_header(msg, name)
    return " ".join(printable(text).split())


def message_ids(value: str) -> list[str]:
    found = _MESSAGE_ID.findall(value)
    if not found:  # some clients omit the angle brackets
        found = [token.strip("<>,;") for token in value.split() if "@" in token]
    return [printable(item)[:512] for item in found if item]


def _pairs(msg: Message, name: str, defects: list[str]) -> list[tuple[str, str]]:
    try:
        header = msg.get(name)
        addresses = getattr(header, "addresses", None)
        if addresses:
            return [(a.display_name or "", a.addr_spec or "") for a in addresses]
    except Exception as exc:  # noqa: BLE001
        defects.append(f"{name}: unparseable address header ({type(exc).__name__})")
    return getaddresses([header_text(msg, name, defects)])


def _usable(address: str) -> str:
    address = printable(address).strip().strip("<>").lower()
    return address if len(address) <= 320 and _ADDRESS.fullmatch(address) else ""


def first_address(msg: Message, name: str, defects: list[str]) -> tuple[str, str]:
    pairs = _pairs(msg, name, defects)
    for display, address in pairs:
        if _usable(address):
            return _usable(address), " ".join(printable(display).split())
    return "", " ".join(printable(pairs[0][0]).split()) if pairs else ""


def all_addresses(msg: Message, name: str, defects: list[str]) -> list[str]:
    return [a for _, address in _pairs(msg, name, defects) if (a := _usable(address))][:50]


def header_date(msg: Message, defects: list[str]) -> datetime | None:
    raw = raw_header(msg, "Date")
    if not raw:
        return None
    try:
        value = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append(f"Date: unparseable ({printable(raw)[:60]})")
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- lenient parsing ----------------------------------------------------------------------------------------------


class RepairedHeaderDefect(MessageDefect):
    """A MIME header field the lenient message factory repaired before the parser read it; str() says what was done."""


def _separated_params(value: str) -> str:
    """A Content-Type or Content-Disposition value with the `;` restored where a parameter follows whitespace without
    one (`multipart/mixed\\n boundary="b"`, `inline filename=x.txt`). Quoted strings are left alone."""
    out: list[str] = []
    quoted = escaped = False
    last = ""  # the last character outside whitespace, quotes included
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted:
            quoted = escaped or ch != '"'
            escaped = not escaped and ch == "\\"
            last = ch
        elif ch.isspace():
            j = i
            while j < len(value) and value[j].isspace():
                j += 1
            if last not in ("", ";", "=") and _PARAM_START.match(value, j):
                out.append(";")
            out.append(value[i:j])
            i = j
            continue
        else:
            quoted = ch == '"'
            last = ch
        out.append(ch)
        i += 1
    return "".join(out)


def repaired_mime_header(name: str, value: str) -> tuple[str, str]:
    """(value, what was repaired or "") for a MIME header field: a stray CR and trailing whitespace removed (a
    `quoted-printable  ` transfer encoding is otherwise not recognised, and the part is left encoded), and a missing
    `;` before a parameter of Content-Type or Content-Disposition restored (otherwise a folded boundary is lost)."""
    lowered = name.strip().lower()
    if not (lowered.startswith("content-") or lowered == "mime-version"):
        return value, ""
    notes = []
    cleaned = _LONE_CR.sub(" ", value).rstrip(" \t\r\n")
    if cleaned.rstrip() != value.rstrip() or (lowered == "content-transfer-encoding" and cleaned != value):
        notes.append("stray CR or trailing whitespace removed")
    if lowered in ("content-type", "content-disposition"):
        separated = _separated_params(cleaned)
        if separated != cleaned:
            notes.append("missing ';' before a parameter restored")
        cleaned = separated
    return cleaned, "; ".join(notes)


def _content_type_rank(value: str) -> int:
    """How readable a Content-Type value is: a text type, or a multipart with a boundary (2), any other well-formed type
    (1), or not a type at all (0)."""
    match = _MIME_TYPE.match(value)
    if not match:
        return 0
    maintype = match.group(1).lower()
    if maintype == "text" or (maintype == "multipart" and "boundary" in value.lower()):
        return 2
    return 1


def _set_raw_leniently(msg: Message, name: str, value: str, set_raw: Callable[[str, str], None]) -> None:
    value, repaired = repaired_mime_header(name, value)
    if repaired:
        msg.defects.append(RepairedHeaderDefect(f"{name.strip()}: {repaired}"))
    if name.strip().lower() != "content-type" or "content-type" not in msg:
        set_raw(name, value)
        return
    # A second Content-Type: the parser reads the first. Keep the first unless this one is more readable (a text part
    # whose first Content-Type says application/octet-stream otherwise loses its text).
    earlier = [(key, str(old)) for key, old in msg.raw_items() if key.lower() == "content-type"]
    if _content_type_rank(value) > max(_content_type_rank(old) for _, old in earlier):
        del msg["content-type"]
        for key, old in [(name, value), *earlier]:
            set_raw(key, old)
    else:
        set_raw(name, value)
    msg.defects.append(RepairedHeaderDefect(f"{len(earlier) + 1} Content-Type fields: read {printable(msg.get_content_type())}"))


class LenientMessage(EmailMessage):
    """policy.default's message, with the MIME header fields repaired as they are parsed (see repaired_mime_header)
    and, of several Content-Type fields, the most readable one read."""

    def set_raw(self, name: str, value: str) -> None:
        _set_raw_leniently(self, name, value, super().set_raw)


class LenientCompatMessage(Message):
    """The same repairs for the legacy (compat32) parse."""

    def set_raw(self, name: str, value: str) -> None:
        _set_raw_leniently(self, name, value, super().set_raw)


LENIENT = policy.default.clone(message_factory=LenientMessage)
LENIENT_COMPAT32 = policy.compat32.clone(message_factory=LenientCompatMessage)
