"""Raw messages from files, one at a time: a single .eml/.txt, a directory of them (recursive), an mbox, a Maildir."""

from __future__ import annotations

import mailbox
import os
import re
from collections.abc import Iterator
from pathlib import Path

from crewdesk.errors import CrewdeskError

BOM = b"\xef\xbb\xbf"
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:")  # an RFC 5322 field name and its colon


class EmailSourceError(CrewdeskError):
    """The path cannot be read as mail (missing, unreadable)."""


def iter_messages(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """(ref, raw bytes) per message, in file order (Maildir: by delivery time), holding one message in memory at a time.

    ref says where the message came from: the file, `file#N` for the N-th message of an mbox, `dir:key` in a Maildir.
    Directories are read recursively in name order; hidden files are skipped; a Maildir inside one is read as one."""
    root = Path(path)
    if not root.exists():
        raise EmailSourceError(f"{root}: no such file or directory")
    try:
        if root.is_dir():
            yield from _iter_directory(root)
        else:
            yield from _iter_file(root)
    except OSError as exc:
        raise EmailSourceError(f"{exc.filename or root}: cannot read ({exc.strerror or exc})") from exc


def is_maildir(path: Path) -> bool:
    return all((path / sub).is_dir() for sub in ("cur", "new", "tmp"))


def _iter_directory(root: Path) -> Iterator[tuple[str, bytes]]:
    if is_maildir(root):
        yield from _iter_maildir(root)
        return
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in list(dirnames):
            if is_maildir(here / name):
                dirnames.remove(name)  # not walked as loose files: tmp/ holds half-delivered mail
                yield from _iter_maildir(here / name)
        for name in sorted(filenames):
            if not name.startswith("."):  # editor backups, .gitattributes, Maildir++ state files
                yield from _iter_file(here / name)


def _iter_file(path: Path) -> Iterator[tuple[str, bytes]]:
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.removeprefix(BOM).startswith(b"From "):
        yield from _iter_mbox(path)
    else:
        yield str(path), path.read_bytes()


def _iter_mbox(path: Path) -> Iterator[tuple[str, bytes]]:
    """Split an mbox at its `From ` separator lines, streaming.

    A `From ` line separates messages only when a header line follows it: mboxo writers leave body lines such as
    "From Russia with love" unescaped. Not mailbox.mbox, which splits at every such line and drops everything before
    the first one it recognises (a file starting with a byte-order mark loses its first message). Lines escaped as
    `>From ` (mboxrd, and mboxo's only escape) are unescaped."""
    lines: list[bytes] = []
    number = 0
    pending: bytes | None = None  # a `From ` line waiting for the next line to say what it is
    with path.open("rb") as handle:
        for index, line in enumerate(handle):
            if index == 0:
                line = line.removeprefix(BOM)
            if pending is not None:
                if _HEADER_LINE.match(line):
                    if any(part.strip() for part in lines):
                        number += 1
                        yield f"{path}#{number}", b"".join(lines)
                    lines = []
                else:
                    lines.append(pending)
                pending = None
            if line.startswith(b"From "):
                pending = line
                continue
            escaped = line.startswith(b">") and line.lstrip(b">").startswith(b"From ")
            lines.append(line[1:] if escaped else line)
    if pending is not None:
        lines.append(pending)
    if any(part.strip() for part in lines):
        yield f"{path}#{number + 1}", b"".join(lines)


def _iter_maildir(path: Path) -> Iterator[tuple[str, bytes]]:
    box = mailbox.Maildir(str(path), factory=None, create=False)
    # Maildir names start with the delivery time: sorted keys replay a thread in order, so replies find their ticket.
    for key in sorted(box.iterkeys()):
        try:
            raw = box.get_bytes(key)
        except KeyError:  # delivered elsewhere or deleted while we read
            continue
        yield f"{path}:{key}", raw
