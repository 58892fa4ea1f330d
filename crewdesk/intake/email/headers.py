"""Header fields of an inbound mail read defensively: raw 8-bit bytes made printable, Message-IDs, addresses and the
date, with whatever could not be read recorded as a defect rather than raised."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
_ADDRESS = re.compile(r"[^<>\r\n]+@[^@\s<>]+")


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
