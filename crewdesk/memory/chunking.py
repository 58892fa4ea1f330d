"""Knowledge-base files -> chunks (markdown, HTML as safe text, plain text, ABCD guidelines.json / kb.json): split by
headings, then paragraphs packed up to a size cap with a small overlap; each chunk keeps its heading path."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from crewdesk.errors import CrewdeskError
from crewdesk.memory.schemas import KBChunk

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".txt": "text", ".json": "json"}
MAX_FILE_BYTES = 20 * 1024 * 1024
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class UnsupportedDocument(CrewdeskError):
    """A file the knowledge base cannot read."""


@dataclass(frozen=True)
class Section:
    heading: str
    text: str
    product: str = ""


@dataclass(frozen=True)
class Document:
    source: str
    title: str
    sections: list[Section]


def iter_files(path: Path) -> Iterator[Path]:
    """The file itself, or every supported file under a directory, in a stable order."""
    if not path.exists():
        raise UnsupportedDocument(f"{path}: no such file or directory")
    if path.is_file():
        yield path
        return
    for child in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")):
        if child.suffix.lower() == ".json" and _json_kind(child) is None:
            continue  # a directory may hold other JSON (ABCD's samples, ontology): skip what is not a KB format
        yield child


def read_document(path: Path) -> Document:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UnsupportedDocument(f"{path}: unsupported file type (use .md, .html, .txt, or ABCD guidelines.json / kb.json)")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise UnsupportedDocument(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    raw = path.read_text(encoding="utf-8", errors="replace")
    source = str(path.resolve())
    if kind == "markdown":
        return _markdown(source, raw, fallback_title=path.stem)
    if kind == "html":
        return _markdown(source, html_to_text(raw), fallback_title=path.stem)
    if kind == "text":
        return Document(source, path.stem, [Section(path.stem, raw)])
    return _abcd(source, path)


def html_to_text(html: str) -> str:
    """Markdown-ish text: scripts and styles are dropped, links and images too, so nothing live reaches a prompt."""
    import html2text

    converter = html2text.HTML2Text()
    converter.ignore_links = True
    converter.ignore_images = True
    converter.ignore_tables = False
    converter.body_width = 0
    return converter.handle(html)


def _markdown(source: str, raw: str, *, fallback_title: str) -> Document:
    path: list[str]
    lines: list[str]
    title, path, sections, lines = "", [], [], []
    in_fence = False

    def flush() -> None:
        body = "\n".join(lines).strip()
        if body:
            sections.append(Section(" > ".join(path) or title or fallback_title, body))
        lines.clear()

    for line in raw.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        flush()
        level, text = len(match.group(1)), _plain(match.group(2))
        if level == 1 and not title:
            title = text
        path[:] = path[: level - 1] + [""] * max(0, level - 1 - len(path)) + [text]
        path[:] = [p for p in path if p]
    flush()
    return Document(source, title or fallback_title, sections)


def _plain(text: str) -> str:
    return re.sub(r"(\*\*|__)(.+?)\1", r"\2", text).strip()


def _json_kind(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "subflows" in v for v in data.values()):
        return "guidelines"
    if isinstance(data, dict) and data and all(isinstance(v, list) and all(isinstance(a, str) for a in v) for v in data.values()):
        return "actions"
    return None


def _abcd(source: str, path: Path) -> Document:
    kind = _json_kind(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if kind == "guidelines":
        sections = []
        for flow, spec in data.items():
            for subflow, detail in spec["subflows"].items():
                paragraphs = [f"{flow} ({spec.get('description', '')}): {subflow}."]
                instructions = list(detail.get("instructions", []))
                if instructions:
                    paragraphs.append(instructions[0])
                for number, action in enumerate(detail.get("actions", []), 1):
                    lines = [f"Step {number} [{action.get('button', '')}] ({action.get('type', '')}): {action.get('text', '')}"]
                    lines += [f"- {sub}" for sub in action.get("subtext", [])]
                    paragraphs.append("\n".join(lines))
                paragraphs += instructions[1:]
                product = subflow.split()[0].lower() if flow == "Single-Item Query" else ""
                sections.append(Section(f"{flow} > {subflow}", "\n\n".join(paragraphs), product))
        return Document(source, "ABCD agent guidelines", sections)
    if kind == "actions":
        sections = [
            Section(name, f"Required agent actions for {name.replace('_', ' ')} ({name}), in order: {', '.join(actions)}.") for name, actions in data.items()
        ]
        return Document(source, "ABCD required action sequences", sections)
    raise UnsupportedDocument(f"{path}: JSON that is neither ABCD guidelines.json nor kb.json")


def chunk_document(document: Document, *, max_chars: int = 1200, overlap: int = 150) -> list[KBChunk]:
    chunks: list[KBChunk] = []
    seen: set[str] = set()
    for section in document.sections:
        for text in _pack(_paragraphs(section.text, max_chars), max_chars=max_chars, overlap=overlap):
            key = chunk_id(document.source, section.heading, text)
            if key in seen:  # the same passage twice under one heading is stored once
                continue
            seen.add(key)
            chunks.append(
                KBChunk(id=key, source=document.source, title=document.title, heading=section.heading, text=text, product=section.product, position=len(chunks))
            )
    return chunks


def chunk_id(source: str, heading: str, text: str) -> str:
    content = hashlib.sha256(text.encode()).hexdigest()
    return hashlib.sha256(f"{source}\0{heading}\0{content}".encode()).hexdigest()[:32]


def _paragraphs(text: str, max_chars: int) -> list[str]:
    """Blank-line paragraphs; one longer than the cap is cut at sentence ends, then at spaces."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", _plain(text)):
        block = "\n".join(line.rstrip() for line in block.strip().splitlines())
        if not block:
            continue
        if len(block) <= max_chars:
            out.append(block)
            continue
        piece = ""
        for sentence in _SENTENCE.split(block):
            while len(sentence) > max_chars:
                cut = sentence.rfind(" ", 0, max_chars)
                cut = cut if cut > 0 else max_chars
                out.append((piece + " " + sentence[:cut]).strip() if piece and len(piece) + cut < max_chars else sentence[:cut])
                piece, sentence = "", sentence[cut:].strip()
            if piece and len(piece) + 1 + len(sentence) > max_chars:
                out.append(piece)
                piece = ""
            piece = f"{piece} {sentence}".strip()
        if piece:
            out.append(piece)
    return out


def _pack(paragraphs: list[str], *, max_chars: int, overlap: int) -> list[str]:
    """Greedy packing; a new chunk starts with the end of the previous one (whole words, at most `overlap` chars)
    so an answer that straddles a boundary is still found whole in one of them."""
    chunks: list[str] = []
    current: list[str] = []
    for paragraph in paragraphs:
        if current and len("\n\n".join([*current, paragraph])) > max_chars:
            chunks.append("\n\n".join(current))
            tail = _tail(chunks[-1], overlap)
            current = [tail] if tail and len(tail) + 2 + len(paragraph) <= max_chars else []
        current.append(paragraph)
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def _tail(text: str, limit: int) -> str:
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    space = cut.find(" ")
    return "…" + (cut[space + 1 :] if 0 <= space < len(cut) - 1 else cut)
