"""Load tasks/procedures/procedures.yaml and replies.yaml, and check them against what the code provides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from crews.config import ConfigError
from crews.procedures import wording
from crews.procedures.wording import Vocabulary
from tools.registry import REGISTRY as TOOL_REGISTRY

CHOICES = ("items", "address", "payment", "none")
ORDER_STATUSES = ("pending", "processed", "delivered", "cancelled", "any")
KEYS = {"intent", "description", "orders", "choose", "policy", "tool", "role"}
OPTIONAL = {"confirm"}


@dataclass(frozen=True)
class ProcedureSpec:
    key: str
    intent: str
    description: str
    orders: tuple[str, ...]
    choose: str
    policy: tuple[str, ...]
    tool: str | None
    role: str
    confirm: bool = False  # the write is stated whole to the customer and made only on their yes (CREWDESK_CONFIRM_WRITES=policy)


@dataclass(frozen=True)
class Procedures:
    by_intent: dict[str, ProcedureSpec]
    replies: dict[str, Any]
    vocabulary: Vocabulary  # tasks/procedures/vocabulary.yaml: the words of requests, keeping, the rest, which order

    def covers(self, intents: list[str]) -> bool:
        return bool(intents) and all(intent in self.by_intent for intent in intents)


def load_replies(directory: Path) -> dict[str, Any]:
    return yaml.safe_load((directory / "replies.yaml").read_text(encoding="utf-8")) or {}


def load_procedures(directory: Path, *, policy_rules: set[str], roles: set[str]) -> Procedures:
    """Every problem is listed at once, as crews/config.py does for agents and tasks."""
    problems: list[str] = []
    raw = yaml.safe_load((directory / "procedures.yaml").read_text(encoding="utf-8")) or {}
    replies = load_replies(directory)
    by_intent: dict[str, ProcedureSpec] = {}
    for key, spec in raw.items():
        if not isinstance(spec, dict):
            problems.append(f"procedure '{key}' must be a mapping")
            continue
        unknown, missing = set(spec) - KEYS - OPTIONAL, KEYS - set(spec)
        if unknown or missing:
            problems.append(f"procedure '{key}': unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
            continue
        if spec["choose"] not in CHOICES:
            problems.append(f"procedure '{key}': choose must be one of {CHOICES}")
        for status in spec["orders"] or []:
            if status not in ORDER_STATUSES:
                problems.append(f"procedure '{key}': order status '{status}' is not one of {ORDER_STATUSES}")
        for rule in spec["policy"] or []:
            if rule not in policy_rules:
                problems.append(f"procedure '{key}': unknown policy rule '{rule}' (known: {sorted(policy_rules)})")
            elif rule not in replies.get("rules", {}):
                problems.append(f"procedure '{key}': rule '{rule}' has no explanation under rules: in replies.yaml")
        if not isinstance(spec.get("confirm", False), bool):
            problems.append(f"procedure '{key}': confirm must be true or false")
        elif spec.get("confirm") and not spec["tool"]:
            problems.append(f"procedure '{key}': confirm needs a tool (a write to state and confirm)")
        if spec["tool"] and spec["tool"] not in TOOL_REGISTRY:
            problems.append(f"procedure '{key}': unknown tool '{spec['tool']}'")
        if spec["role"] not in roles:
            problems.append(f"procedure '{key}': role '{spec['role']}' is not defined in agents/")
        if spec["intent"] in by_intent:
            problems.append(f"procedure '{key}': intent '{spec['intent']}' already has procedure '{by_intent[spec['intent']].key}'")
        by_intent[spec["intent"]] = ProcedureSpec(
            key,
            spec["intent"],
            str(spec["description"]).strip(),
            tuple(spec["orders"] or ()),
            spec["choose"],
            tuple(spec["policy"] or ()),
            spec["tool"] or None,
            spec["role"],
            bool(spec.get("confirm", False)),
        )
    for message in ("greeting", "closing", "not_identified", "handoff", "not_found"):
        if "en" not in replies.get(message, {}):
            problems.append(f"replies.yaml: '{message}' needs at least an English text")
    vocabulary = None
    try:
        vocabulary = wording.load(directory)
    except (OSError, ValueError) as exc:
        problems.append(f"vocabulary.yaml: {exc}")
    for message in ("ambiguous",):
        if "en" not in replies.get(message, {}):
            problems.append(f"replies.yaml: '{message}' needs at least an English text")
    if problems or vocabulary is None:
        raise ConfigError("procedures are invalid:\n  " + "\n  ".join(problems))
    return Procedures(by_intent=by_intent, replies=replies, vocabulary=vocabulary)
