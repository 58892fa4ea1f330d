"""Constrained ReAct steps: one JSON schema for "call one of these tools with these arguments, or give the final
answer", decoded by the model server, then written back as the ReAct text CrewAI parses. An unknown tool name, a
malformed argument or an answer that does not fit the task's output model cannot be produced at all."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

THOUGHT = {"type": "string", "maxLength": 240}
HINT = (
    '\n\nAnswer with one JSON object per turn: {"thought": "...", "action": "<tool name>", "action_input": {...}} '
    'to use a tool, or {"thought": "...", "final_answer": ...} when you are done.'
)


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Resolve local `$ref`s into their `$defs` and drop titles, so the schema can be nested inside another."""
    definitions = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(copy.deepcopy(definitions[node["$ref"].rsplit("/", 1)[-1]]))
            return {key: walk(value) for key, value in node.items() if key not in ("$defs", "title", "default")}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(schema)


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Every object closed and every property required (what strict structured-output modes demand)."""
    if schema.get("type") == "object" and "properties" in schema:
        schema = {
            **schema,
            "required": list(schema["properties"]),
            "additionalProperties": False,
            "properties": {name: _strict(sub) for name, sub in schema["properties"].items()},
        }
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        schema = {**schema, "items": _strict(schema["items"])}
    return schema


def step_schema(tools: Iterable[Any], answer: type[BaseModel] | None) -> dict[str, Any]:
    """One ReAct step: a call of one offered tool (its name a constant, its input that tool's argument schema), or the
    final answer (the task's output model, or free text)."""
    steps = []
    for tool in tools:
        arguments = _strict(inline_refs(tool.args_schema.model_json_schema())) if getattr(tool, "args_schema", None) else {"type": "object"}
        steps.append(
            {
                "type": "object",
                "properties": {"thought": THOUGHT, "action": {"const": tool.name}, "action_input": arguments},
                "required": ["thought", "action", "action_input"],
                "additionalProperties": False,
            }
        )
    final = _strict(inline_refs(answer.model_json_schema())) if answer is not None else {"type": "string", "maxLength": 2000}
    steps.append(
        {"type": "object", "properties": {"thought": THOUGHT, "final_answer": final}, "required": ["thought", "final_answer"], "additionalProperties": False}
    )
    return {"type": "object", "properties": {"step": {"anyOf": steps}}, "required": ["step"], "additionalProperties": False}


def with_hint(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The format reminder goes at the end of the system prompt, which stays a stable, cacheable prefix."""
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": messages[0]["content"] + HINT}, *messages[1:]]
    return [{"role": "system", "content": HINT.strip()}, *messages]


def render(value: dict[str, Any]) -> str:
    """The decoded step as the ReAct text CrewAI's parser reads."""
    step = value["step"]
    thought = " ".join(str(step.get("thought", "")).split()) or "I will continue."
    if "final_answer" in step:
        answer = step["final_answer"]
        return f"Thought: {thought}\nFinal Answer: {answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)}"
    return f"Thought: {thought}\nAction: {step['action']}\nAction Input: {json.dumps(step['action_input'], ensure_ascii=False)}"
