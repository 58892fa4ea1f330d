"""The body of an inbound mail: its MIME tree walked for text parts, attachments and delivery reports (attached
messages read only as a fallback), text decoded from any declared charset, and HTML converted to plain text."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser

import html2text

from crewdesk.intake.email.headers import LENIENT_COMPAT32, RepairedHeaderDefect, printable

MAX_DEPTH = 32  # MIME nesting; deeper is an attack or a broken generator, not a customer
# Labels mail clients use that Python's codecs lack or map to a strict subset of what is really sent.
CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "sjis": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "unicode-1-1-utf-7": "utf-7",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
}
ASCII_LABELS = frozenset({"us-ascii", "ascii", "unknown-8bit", "x-unknown", "unknown", "default"})


@dataclass
class Body:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    nested_plain: list[str] = field(default_factory=list)  # inside attached messages: used only when the mail itself has no text
    nested_html: list[str] = field(default_factory=list)
    attachments: list[Message] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # multiparts whose boundary was not found
    too_deep: bool = False
    reports: list[str] = field(default_factory=list)  # message/delivery-status and the like, wherever they sit
    boundaries: list[str] = field(default_factory=list)  # of the multiparts walked so far: their delimiters are never text


def read_body(msg: Message, raw: bytes, defects: list[str]) -> Body:
    """The text parts, attachments and delivery reports of a parsed mail (`raw` is its bytes, for a lenient re-read)."""
    body = Body()
    _walk(_structure(msg, raw, defects), body=body, depth=0, nested=False, defects=defects)
    return body


def _walk(part: Message, *, body: Body, depth: int, nested: bool, defects: list[str], alternative: bool = False) -> None:
    if depth > MAX_DEPTH:
        defects.append(f"MIME nesting deeper than {MAX_DEPTH} levels: the rest was skipped")
        body.too_deep = True
        return
    defects.extend(str(d) if isinstance(d, RepairedHeaderDefect) else type(d).__name__ for d in getattr(part, "defects", []))
    ctype = part.get_content_type()
    if ctype in ("message/delivery-status", "message/disposition-notification", "message/feedback-report"):
        if not nested:  # a customer forwarding a bounce to us is asking for help, not bouncing
            body.reports.append(ctype)
        return
    if ctype == "message/rfc822":
        if not nested:
            body.attachments.append(part)  # kept whole as an .eml; its own attachments travel inside it
        for inner in part.get_payload() if part.is_multipart() else []:
            _walk(sub_part(inner), body=body, depth=depth + 1, nested=True, defects=defects)
        return
    if part.get_content_maintype() == "multipart":
        payload = part.get_payload()
        if not isinstance(payload, list):
            body.broken.append(ctype)
            return
        if boundary := part.get_boundary():
            body.boundaries.append(boundary)
        for sub in payload:
            _walk(sub_part(sub), body=body, depth=depth + 1, nested=nested, defects=defects, alternative=ctype == "multipart/alternative")
        return
    try:
        disposition, filename = part.get_content_disposition(), part.get_filename()
    except Exception:  # noqa: BLE001 - a broken Content-Disposition: treat the part as an attachment
        disposition, filename = "attachment", None
    if ctype in ("text/plain", "text/html") and _is_body_text(disposition, filename, body=body, nested=nested, alternative=alternative):
        text = _without_delimiters(_decode_part(part, defects), body.boundaries, defects)
        if ctype == "text/plain":
            (body.nested_plain if nested else body.plain).append(text)
        else:
            (body.nested_html if nested else body.html).append(text)
        return
    if not nested:
        body.attachments.append(part)


def _is_body_text(disposition: str | None, filename: str | None, *, body: Body, nested: bool, alternative: bool) -> bool:
    """Whether a text part is (part of) the body rather than a file. Unnamed and not an attachment: body. Named and
    inline: body only as the first text found or as one rendering of a multipart/alternative (some clients name every
    body part); a named inline part after the body is a file shown inline (`inline; filename=x.txt`), as the standard
    library's iter_attachments counts it."""
    if disposition not in (None, "inline"):
        return False
    if not filename:
        return True
    if disposition is None:
        return False
    found = (body.nested_plain, body.nested_html) if nested else (body.plain, body.html)
    return alternative or not any(t.strip() for texts in found for t in texts)


def _without_delimiters(text: str, boundaries: list[str], defects: list[str]) -> str:
    """The text without trailing MIME delimiter lines of the message's own boundaries. The parser leaves one in the
    last part when it is not a delimiter to the letter (indented, or with a quoted-printable "=" after it)."""
    if not boundaries or "--" not in text:
        return text
    delimiters = {f"--{b}" for b in boundaries} | {f"--{b}--" for b in boundaries}
    lines = text.rstrip().splitlines()
    cut = len(lines)
    while cut and (not (line := lines[cut - 1].strip()) or line in delimiters or line.rstrip("=").rstrip() in delimiters):
        cut -= 1
    if cut == len(lines) or not any(line.strip() for line in lines[cut:]):
        return text
    defects.append("MIME delimiter line left in a text part: removed")
    return "\n".join(lines[:cut])


def sub_part(item: object) -> Message:
    """One part of a multipart payload: the parsers only ever put Messages there."""
    if not isinstance(item, Message):
        raise TypeError(f"MIME sub-part is a {type(item).__name__}, not a Message")
    return item


def _structure(msg: Message, raw: bytes, defects: list[str]) -> Message:
    """The MIME tree to read bodies from. The strict parser loses unquoted boundaries containing "=" (Outlook's
    ----=_NextPart_...); the legacy parser keeps them, so use it for the body when the strict one found no parts."""
    if msg.get_content_maintype() != "multipart" or msg.is_multipart():
        return msg
    legacy = BytesParser(policy=LENIENT_COMPAT32).parsebytes(raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw)
    if legacy.is_multipart():
        defects.append("MIME boundary only readable leniently (unquoted boundary with '=')")
        return legacy
    return msg


def choose_text(body: Body, defects: list[str]) -> str:
    """Prefer text/plain; convert HTML only when there is no plain text. HTML itself is never kept."""
    for plain, html in ((body.plain, body.html), (body.nested_plain, body.nested_html)):
        text = "\n\n".join(t.strip() for t in plain if t.strip())
        if text:
            return normalise(text)
        text = "\n\n".join(h for h in (html_to_text(t, defects) for t in html) if h)
        if text:
            return normalise(text)
    return ""


def normalise(text: str) -> str:
    return printable(text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def html_to_text(html: str, defects: list[str] | None = None) -> str:
    """HTML as readable text (links kept as text, images, scripts and styles dropped)."""
    converter = html2text.HTML2Text()
    converter.body_width = 0  # no hard wrapping: the crew reads paragraphs
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.unicode_snob = True
    try:
        return converter.handle(html).strip()
    except Exception as exc:  # noqa: BLE001 - html2text on hostile markup: fall back to stripping tags
        if defects is not None:
            defects.append(f"HTML conversion failed ({type(exc).__name__}): tags stripped instead")
        stripped = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", html)
        return " ".join(re.sub(r"<[^>]*>", " ", stripped).split())


def _decode_part(part: Message, defects: list[str]) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception as exc:  # noqa: BLE001 - a broken transfer encoding: use the raw payload
        defects.append(f"undecodable transfer encoding ({type(exc).__name__})")
        payload = part.get_payload(decode=False)
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogateescape")
    if payload is not None and not isinstance(payload, bytes):  # a text part is never multipart
        raise TypeError(f"text part payload is a {type(payload).__name__}, not bytes")
    try:
        charset = part.get_content_charset()
    except Exception:  # noqa: BLE001
        charset = None
    return decode_bytes(payload or b"", charset, defects)


def decode_bytes(data: bytes, charset: str | None, defects: list[str]) -> str:
    """Decode text in any declared charset, never failing: unknown or lying labels fall back with a recorded defect."""
    label = (charset or "").strip().strip('"').lower()
    if not label or label in ASCII_LABELS:
        for codec in ("ascii", "utf-8"):
            try:
                return data.decode(codec)
            except UnicodeDecodeError:
                pass
        defects.append(f"8-bit text labelled {label or 'with no charset'}: decoded as windows-1252")
        return data.decode("cp1252", "replace")
    codec = CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(codec)
        if not getattr(info, "_is_text_encoding", True):  # e.g. charset=base64: a bytes codec, not a charset
            raise LookupError(codec)
    except LookupError:
        defects.append(f"unknown charset {label!r}: decoded as UTF-8 with replacement")
        return data.decode("utf-8", "replace")
    try:
        return data.decode(info.name)
    except UnicodeDecodeError:
        pass
    except Exception:  # noqa: BLE001, S110 - codec bugs on garbage input (utf-7 and friends)
        pass
    if info.name not in ("utf-8", "utf_8"):
        try:
            text = data.decode("utf-8")
            defects.append(f"text labelled {label} is UTF-8: decoded as UTF-8")
            return text
        except UnicodeDecodeError:
            pass
    defects.append(f"text not valid {label}: undecodable bytes replaced")
    try:
        return data.decode(info.name, "replace")
    except Exception:  # noqa: BLE001
        return data.decode("utf-8", "replace")
