"""Attachments of an inbound mail: their bytes and safe file names, Outlook's winmail.dat (TNEF) unpacked into the
files and body it holds, and each file checked against the size limit and the allowed types."""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from email import policy
from email.message import Message

from crewdesk.intake.email.headers import printable
from crewdesk.intake.email.mime import html_to_text, normalise, sub_part


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str
    content_type: str
    size: int
    sha256: str
    data: bytes | None  # None when refused: a refused file is recorded, never stored
    refused_reason: str | None = None


def attachment_files(parts: list[Message], *, max_bytes: int, defects: list[str]) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    """(name, content type, bytes) of each attachment part, a winmail.dat's files in its place; and the bodies found
    in winmail.dat parts (Outlook's rich text mail may carry its only body there)."""
    files: list[tuple[str, str, bytes]] = []
    tnef_texts: list[str] = []
    for index, part in enumerate(parts, start=1):
        data = _attachment_bytes(part, defects)
        tnef = _unpack_tnef(data, max_bytes, defects) if _is_tnef(part) else None
        if tnef is None:
            files.append((_filename(part, index), part.get_content_type(), data))
            continue
        tnef_texts.append(tnef.text)
        for inner, inner_data in tnef.files:
            name = _clean_name(inner, len(files) + 1)
            files.append((name, mimetypes.guess_type(name)[0] or "application/octet-stream", inner_data))
    return files, tnef_texts


@dataclass
class _Tnef:
    """What an Outlook winmail.dat (application/ms-tnef) holds: its files, and the body when Outlook put it there."""

    files: list[tuple[str, bytes]]
    text: str


def _is_tnef(part: Message) -> bool:
    if part.get_content_type() in ("application/ms-tnef", "application/vnd.ms-tnef"):
        return True
    try:
        return (part.get_filename() or "").strip().lower() == "winmail.dat"
    except Exception:  # noqa: BLE001
        return False


def _unpack_tnef(data: bytes, max_bytes: int, defects: list[str]) -> _Tnef | None:
    """The files and body inside a TNEF part's bytes, or None (recorded as a defect) when it is over the size limit or
    cannot be read: the part is then kept as the attachment it is."""
    from tnefparse import TNEF

    if len(data) > max_bytes:
        defects.append(f"TNEF attachment over the size limit ({len(data)} > {max_bytes} bytes): not unpacked")
        return None
    try:
        tnef = TNEF(data)
        files = [(att.long_filename() or att.name or "", bytes(att.data or b"")) for att in tnef.attachments]
        html = tnef.htmlbody.decode("utf-8", "replace") if isinstance(tnef.htmlbody, bytes) else (tnef.htmlbody or "")
        plain = tnef.body.decode("cp1252", "replace") if isinstance(tnef.body, bytes) else (tnef.body or "")
        rtf = tnef.rtfbody if not (plain.strip() or html.strip()) else None  # decompressed by compressed_rtf
    except Exception as exc:  # noqa: BLE001 - a broken winmail.dat is one bad attachment, not a lost mail
        defects.append(f"TNEF attachment could not be unpacked: {type(exc).__name__}: {str(exc)[:120]}".rstrip(": "))
        return None
    text = normalise(plain) if plain.strip() else html_to_text(html, defects) if html.strip() else rtf_text(rtf, defects) if rtf else ""
    if not files and not text:
        defects.append("TNEF attachment could not be unpacked: no file and no body in it")
        return None
    defects.append(f"TNEF (winmail.dat) unpacked: {len(files)} file(s){', and the body' if text else ''}")
    return _Tnef(files=files, text=text)


def rtf_text(rtf: bytes, defects: list[str]) -> str:
    """Outlook's rich-text body as plain text (RTF is 7-bit; its escapes carry the rest)."""
    from striprtf.striprtf import rtf_to_text

    try:
        return normalise(rtf_to_text(rtf.rstrip(b"\x00").decode("latin-1"), errors="replace"))
    except Exception as exc:  # noqa: BLE001
        defects.append(f"TNEF rich-text body unreadable: {type(exc).__name__}")
        return ""


def _filename(part: Message, index: int) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:  # noqa: BLE001
        name = ""
    return _clean_name(name, index, eml=part.get_content_type() == "message/rfc822")


def _clean_name(name: str, index: int, *, eml: bool = False) -> str:
    """A file name safe to show and store: no path, no control characters, no leading dot, at most 255 characters."""
    name = printable(str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")
    if not name:
        name = f"attachment-{index}.eml" if eml else f"attachment-{index}"
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 250 - len(ext)] + dot + ext) if dot and len(ext) < 16 else name[:255]
    return name


def _type_allowed(content_type: str, allowed: list[str]) -> bool:
    for pattern in allowed:
        if pattern in ("*", "*/*") or pattern == content_type:
            return True
        if pattern.endswith("/*") and content_type.startswith(pattern[:-1]):
            return True
    return False


def _attachment_bytes(part: Message, defects: list[str]) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload(0) if part.is_multipart() else None
        if inner is None:
            return b""
        inner = sub_part(inner)
        for style in (policy.default, policy.compat32):
            try:
                return inner.as_bytes(policy=style)
            except Exception:  # noqa: BLE001, S112 - headers the strict policy cannot re-fold: try the next policy
                continue
        defects.append("attached message could not be re-serialised")
        return b""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        payload = None
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    if payload is not None and not isinstance(payload, bytes):  # a decoded leaf part is bytes
        raise TypeError(f"attachment payload is a {type(payload).__name__}, not bytes")
    return payload or b""


def checked_attachment(filename: str, content_type: str, data: bytes, *, max_bytes: int, allowed: list[str]) -> ParsedAttachment:
    """Kept within the size limit and the allowed types; otherwise recorded with the reason, and not stored."""
    size = len(data)
    refused = None
    if size > max_bytes:
        refused = f"over the size limit ({size} > {max_bytes} bytes)"
    elif not _type_allowed(content_type, allowed):
        refused = f"type {content_type} is not allowed"
    return ParsedAttachment(
        filename=filename,
        content_type=content_type[:255],
        size=size,
        sha256=hashlib.sha256(data).hexdigest(),
        data=None if refused else data,
        refused_reason=refused,
    )
