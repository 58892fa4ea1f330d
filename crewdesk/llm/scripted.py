"""A deterministic model for tests and benchmarks: answers CrewAI's ReAct prompts from rules, optionally slowly."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import PrivateAttr

from crewdesk.llm.base import Completion, CrewdeskLLM, rough_token_count

Responder = Callable[[list[dict[str, str]], str], str]
# decide(name, messages, schema) -> the decision; a responder object may carry one as its `decide` attribute.
Decider = Callable[[str, list[dict[str, str]], dict[str, Any]], Any]

_TICKET = re.compile(r"<ticket>(.*?)</ticket>", re.S)

_KEYWORDS = {
    "billing": ("refund", "charge", "invoice", "billing", "payment", "paid", "price", "subscription", "card", "money"),
    "technical": ("error", "crash", "bug", "not working", "broken", "install", "api", "timeout", "login fails", "sync", "slow", "500"),
    "account": ("password", "account", "email address", "username", "2fa", "locked", "delete my", "profile", "sign in"),
}


def ticket_text(messages: list[dict[str, str]]) -> str:
    for message in reversed(messages):
        match = _TICKET.search(message["content"])
        if match:
            return match.group(1)
    return messages[-1]["content"] if messages else ""


def agent_role(messages: list[dict[str, str]]) -> str:
    for message in messages:
        if message["role"] == "system":
            match = re.search(r"You are ([^.\n]+)", message["content"])
            if match:
                return match.group(1).strip().lower()
    return ""


def heuristic_triage(text: str) -> dict[str, Any]:
    lowered = text.lower()
    scores = {cat: sum(lowered.count(word) for word in words) for cat, words in _KEYWORDS.items()}
    category, best = max(scores.items(), key=lambda kv: kv[1])
    if best == 0:
        category = "other"
    angry = any(w in lowered for w in ("unacceptable", "furious", "ridiculous", "worst", "!!!"))
    urgent = any(w in lowered for w in ("urgent", "asap", "immediately", "down for everyone", "production"))
    total = sum(scores.values())
    return {
        "category": category,
        "priority": "urgent" if urgent else ("high" if angry else "normal"),
        "language": "de" if re.search(r"\b(ich|nicht|bitte|und)\b", lowered) else "en",
        "sentiment": "angry" if angry else "neutral",
        "summary": " ".join(text.split())[:140] or "empty ticket",
        "confidence": round(0.4 + 0.5 * (best / total), 2) if total else 0.3,
    }


def react_final(payload: dict[str, Any]) -> str:
    return "Thought: I now know the final answer\nFinal Answer: " + json.dumps(payload)


def default_responder(messages: list[dict[str, str]], role: str) -> str:
    """Route by the agent's role, as a real model would read its system prompt."""
    text = ticket_text(messages)
    if "rout" in role or "triage" in role:
        return react_final(heuristic_triage(text))
    if "escalat" in role:
        return react_final(
            {
                "customer_reply": "Thank you for your patience. A member of our team will follow up with you personally.",
                "handoff_summary": "Needs a human: " + " ".join(text.split())[:200],
                "team": "tier2",
            }
        )
    return react_final(
        {
            "customer_reply": "Thanks for reaching out. Here is what we found and what to do next: " + " ".join(text.split())[:160],
            "internal_note": f"Handled by {role or 'specialist'}.",
            "needs_human": False,
            "escalation_reason": "",
        }
    )


class ScriptedLLM(CrewdeskLLM):
    """`responder(messages, role) -> text`; `latency_ms` sleeps per call to stand in for a real model."""

    llm_type: str = "scripted"
    provider: str = "scripted"
    latency_ms: int = 0
    _responder: Responder | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _prompts: list[list[dict[str, str]]] = PrivateAttr(default_factory=list)

    def __init__(self, responder: Responder | None = None, **data: Any) -> None:
        super().__init__(**data)
        if responder is not None:
            self._responder = responder

    @property
    def prompts(self) -> list[list[dict[str, str]]]:
        return self._prompts

    def _complete(self, messages, stop):
        with self._lock:
            self._prompts.append(messages)
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        text = (self._responder or default_responder)(messages, agent_role(messages))
        prompt = sum(rough_token_count(m["content"]) for m in messages)
        return Completion(text=text, prompt_tokens=prompt, completion_tokens=rough_token_count(text))

    def _complete_json(self, messages, schema, name):
        with self._lock:
            self._prompts.append(messages)
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        decider: Decider = getattr(self._responder, "decide", None) or (lambda _name, _messages, schema: schema_default(schema))
        text = json.dumps(decider(name, messages, schema))
        prompt = sum(rough_token_count(m["content"]) for m in messages)
        return Completion(text=text, prompt_tokens=prompt, completion_tokens=rough_token_count(text))


def schema_default(schema: dict[str, Any]) -> Any:
    """The first value a schema allows: the first enum member, the first alternative, every required property. A scripted
    model with no plan for a decision answers this, which is always valid and never clever."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return schema_default(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        return {name: schema_default(sub) for name, sub in schema.get("properties", {}).items() if name in schema.get("required", [])}
    if kind == "array":
        return [schema_default(schema["items"])] * int(schema.get("minItems", 0))
    defaults: dict[Any, Any] = {"string": "", "integer": schema.get("minimum", 0), "number": schema.get("minimum", 0), "boolean": False, "null": None}
    return defaults.get(kind)


def react_action(tool: str, arguments: dict[str, Any]) -> str:
    return f"Thought: I need to use {tool}\nAction: {tool}\nAction Input: {json.dumps(arguments)}"


class PlanResponder:
    """Follows a fixed plan per role: each tool call in turn (one per model turn, as CrewAI's ReAct loop
    expects), then a final answer. A role's plan may be a list of episodes, one per conversation, for a
    specialist a hierarchical manager delegates to more than once. The evaluation's oracle and the tool
    tests use it."""

    def __init__(self, *, triage: dict[str, Any], plans: dict[str, list], finals: dict[str, dict[str, Any] | str | list]) -> None:
        self.triage = triage
        self.plans = plans
        self.finals = finals
        self._episodes: dict[str, int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(role: str, table: dict) -> str | None:
        return next((key for key in table if key in role), None)

    def _episode(self, key: str, step: int) -> int:
        with self._lock:
            if step == 0:
                self._episodes[key] = self._episodes.get(key, -1) + 1
            return max(0, self._episodes.get(key, 0))

    @staticmethod
    def _pick(value: list, episode: int):
        return value[min(episode, len(value) - 1)] if value else None

    def __call__(self, messages: list[dict[str, str]], role: str) -> str:
        if "rout" in role:
            return react_final(self.triage)
        key = self._key(role, self.plans) or self._key(role, self.finals)
        if key is None:
            return default_responder(messages, role)
        step = sum(1 for m in messages if m["role"] == "assistant")
        episode = self._episode(key, step)
        plan = self.plans.get(key, [])
        if plan and isinstance(plan[0], list):
            plan = self._pick(plan, episode) or []
        if step < len(plan):
            return react_action(*plan[step])
        final = self.finals.get(key)
        if isinstance(final, list):
            final = self._pick(final, episode)
        if isinstance(final, str):
            return "Thought: I now know the final answer\nFinal Answer: " + final
        if final is not None:
            return react_final(final)
        return default_responder(messages, role)
