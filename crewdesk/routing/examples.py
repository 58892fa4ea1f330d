"""Labelled examples a router is built from: the packaged Bitext train split (mapped to our intents) and our own seed
phrasings. Read from the installed package only."""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from crewdesk.routing.mapping import BITEXT_TO_INTENT
from crewdesk.routing.schemas import Intent

BITEXT_FILE = "bitext/train.jsonl"
SEED_FILE = "seed/examples.jsonl"


@dataclass(frozen=True)
class Example:
    text: str
    label: str  # the finest label we have: Bitext's intent for its rows, ours for seed rows
    intent: Intent


def _rows(name: str) -> Iterable[dict]:
    with importlib.resources.files("crewdesk.routing").joinpath(name).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def bitext_examples() -> list[Example]:
    return [Example(text=row["text"], label=row["intent"], intent=BITEXT_TO_INTENT[row["intent"]]) for row in _rows(BITEXT_FILE)]


def seed_examples() -> list[Example]:
    return [Example(text=row["text"], label=row["intent"], intent=Intent(row["intent"])) for row in _rows(SEED_FILE)]


def default_examples() -> list[Example]:
    return bitext_examples() + seed_examples()


def digest(examples: Sequence[Example]) -> str:
    """sha256 of the labelled texts in order: the key of their cached embeddings."""
    h = hashlib.sha256()
    for example in examples:
        h.update(f"{example.label}\t{example.intent.value}\t{example.text}\n".encode())
    return h.hexdigest()
