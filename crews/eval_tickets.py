"""tau2-bench retail tasks as inbound tickets: load a split, and write each task's customer situation the way the
customer would write it (first person, without the benchmark's stage directions to a simulated user)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from crewdesk.store.service import DEFAULT_DB_JSON

DATASET_DIR = DEFAULT_DB_JSON.parent  # crewdesk/store/tau2: db.json and the task splits ship with the package
SPLITS = {"train": "tasks_train.json"}
_SECOND_PERSON = [
    (r"\bYou are\b", "I am"),
    (r"\byou are\b", "I am"),
    (r"\bYou're\b", "I'm"),
    (r"\byou're\b", "I'm"),
    (r"\bYou have\b", "I have"),
    (r"\byou have\b", "I have"),
    (r"\bYou've\b", "I've"),
    (r"\byou've\b", "I've"),
    (r"\bYou were\b", "I was"),
    (r"\byou were\b", "I was"),
    (r"\bYourself\b", "Myself"),
    (r"\byourself\b", "myself"),
    (r"\bYou'd\b", "I'd"),
    (r"\byou'd\b", "I'd"),
    (r"\bYou'll\b", "I'll"),
    (r"\byou'll\b", "I'll"),
    (r"\bYours\b", "Mine"),
    (r"\byours\b", "mine"),
    (r"\bYour\b", "My"),
    (r"\byour\b", "my"),
    (r"\bYou\b", "I"),
    # "you" after a preposition or a verb that takes an object is "me"; elsewhere it is the subject, "I"
    (r"\b(to|for|with|at|from|help|helps|tell|tells|ask|asks|give|gives|send|sends|call|calls|contact|let|lets) you\b", r"\1 me"),
    (r"\byou\b", "I"),
]


def load_tasks(split: str = "train", dataset_dir: Path = DATASET_DIR) -> list[dict[str, Any]]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; available: {', '.join(SPLITS)}")
    return json.loads((dataset_dir / SPLITS[split]).read_text(encoding="utf-8"))


def first_person(text: str) -> str:
    for pattern, replacement in _SECOND_PERSON:
        text = re.sub(pattern, replacement, text)
    return text


# The benchmark's user instructions talk to a simulated user about the conversation ("(... but do not reveal it to the
# agent)", "If the agent asks for confirmation, ..."): a customer writing a ticket would not write those.
_STAGE_ASIDE = re.compile(r"\s*\([^)]*\b(agent|reveal)\b[^)]*\)", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


# "If the agent asks for the cancellation reason, say you ordered by mistake": what the customer would answer when asked,
# which a customer writing one ticket states up front. A change of mind at the confirmation step is not stated up front.
_WHEN_ASKED = re.compile(
    r"^(?:if|when)\s+(?:the agent\s+)?(?:asks?|asked)\s+(?:you\s+)?(?:for|about)?\s*(?P<what>[^,]+?),\s*(?:then\s+)?(?:you\s+)?"
    r"(?:say|tell(?: (?:them|it))?|mention|answer|reply|provide)\s+(?:that\s+)?(?P<say>.+?)\.?$",
    re.I,
)


# A fallback the customer would write to the support team themselves: "if the agent cannot help, transfer to a human".
AGENT = "\x00"  # stands for the support team until the ticket is in the first person, then becomes "you"
_AGENT_FAILS = re.compile(r"\bthe agent\b(?=\s+((?:cannot|can't|can not|is not able|is unable|doesn't|does not|won't|will not)\b))\s+\1", re.I)


_YOU_VERB = {"doesn't": "don't", "does not": "do not", "is not able": "are not able", "is unable": "are unable"}


def without_stage_directions(text: str) -> str:
    text = _STAGE_ASIDE.sub("", text)
    kept = []
    for sentence in _SENTENCE.split(text):
        asked = _WHEN_ASKED.match(sentence.strip())
        if asked and not re.search(r"confirm|double.?check|mistake in", asked.group("what"), re.I):
            kept.append(f"About {asked.group('what').strip()}: {asked.group('say').strip()}.")
        elif _AGENT_FAILS.search(sentence) and not re.search(r"confirm|\bmention\b", sentence, re.I):
            kept.append(
                _AGENT_FAILS.sub(lambda m: AGENT + _YOU_VERB.get(m.group(1).lower(), m.group(1)), sentence)
            )  # "if you cannot help, transfer me to a human"
        elif not re.search(r"\bagent\b|\bmention\b", sentence, re.I):
            kept.append(sentence)
    return " ".join(kept).strip()


def ticket_for(task: dict[str, Any]) -> tuple[str, str]:
    """(subject, body): the situation written the way the customer would write it, with what they know."""
    instructions = task["user_scenario"]["instructions"]
    reason = first_person(without_stage_directions(instructions["reason_for_call"].strip())).replace(AGENT, "you ")
    known = first_person((instructions.get("known_info") or "").strip())
    subject = reason.split(".")[0][:80]
    body = f"Hello,\n\n{reason}\n\n{known}\n\nThank you."
    return subject, body
