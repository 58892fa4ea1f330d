"""Parse a model's answer into a pydantic model ourselves: small models wrap JSON in prose and fences."""

from __future__ import annotations

import json
import re
from typing import TypeVar

import json_repair
from pydantic import BaseModel, ValidationError

from crewdesk.errors import ModelOutputError

M = TypeVar("M", bound=BaseModel)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)


def extract_json_object(text: str) -> dict:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        start, end = candidate.find("{"), candidate.rfind("}")
        if start == -1 or end <= start:
            continue
        snippet = candidate[start : end + 1]
        try:
            value = json.loads(snippet)
        except json.JSONDecodeError:
            value = json_repair.loads(snippet)
        if isinstance(value, dict) and value:
            return value
    raise ModelOutputError(f"no JSON object in model output: {text[:200]!r}")


def parse_model_output(text: str, model: type[M]) -> M:
    value = extract_json_object(text)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ModelOutputError(f"model output does not match {model.__name__}: {details}") from exc


def json_guardrail(model: type[BaseModel]):
    """A CrewAI task guardrail: accept lenient JSON, hand CrewAI canonical JSON, or ask the agent to retry."""

    def guardrail(output):  # unannotated: CrewAI inspects annotations, which are strings here
        try:
            parsed = parse_model_output(output.raw, model)
        except ModelOutputError as exc:
            fields = ", ".join(model.model_fields)
            return False, f"{exc}. Answer with only one JSON object with the keys: {fields}."
        return True, parsed.model_dump_json()

    guardrail.__name__ = f"json_{model.__name__.lower()}_guardrail"
    return guardrail
