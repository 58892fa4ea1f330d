"""The operations agents may take on the system of record, with their kind (read, write, generic) and
their documentation, as tau2-bench retail defines them (crewdesk/store/tau2/tools.json, MIT)."""

from __future__ import annotations

import ast
import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from crewdesk.store.interface import READ, WRITE, RetailStore, StoreError

GENERIC = "generic"
SPEC_FILE = Path(__file__).parent / "tau2" / "tools.json"


@dataclass(frozen=True)
class Argument:
    name: str
    type: str  # "str" or "List[str]"


@dataclass(frozen=True)
class Operation:
    name: str
    kind: str
    arguments: tuple[Argument, ...]
    doc: str
    run: Callable[[RetailStore | None, dict[str, Any]], Any]


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def calculate(expression: str) -> str:
    """Arithmetic only (+ - * / and parentheses), without eval."""
    if not set(expression) <= set("0123456789+-*/(). "):
        raise StoreError("Invalid characters in expression")

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        raise StoreError("Invalid expression")

    try:
        return str(round(float(walk(ast.parse(expression, mode="eval"))), 2))
    except (SyntaxError, ZeroDivisionError) as exc:
        raise StoreError(f"Invalid expression: {exc}") from exc


def _store_method(name: str) -> Callable[[RetailStore | None, dict[str, Any]], Any]:
    def run(store: RetailStore | None, arguments: dict[str, Any]) -> Any:
        assert store is not None
        return getattr(store, name)(**arguments)

    return run


_GENERIC_RUNS: dict[str, Callable[[RetailStore | None, dict[str, Any]], Any]] = {
    "calculate": lambda _store, args: calculate(args["expression"]),
    # Recorded as an effect; the pipeline escalates the ticket to a person afterwards.
    "transfer_to_human_agents": lambda _store, args: "Transfer successful",
}


@cache
def operations() -> dict[str, Operation]:
    found: dict[str, Operation] = {}
    for spec in json.loads(SPEC_FILE.read_text(encoding="utf-8")):
        kind = {"READ": READ, "WRITE": WRITE}.get(spec["tool_type"], GENERIC)
        name = spec["name"]
        if name == "transfer_to_human_agents":
            kind = WRITE  # an effect on the ticket: recorded once, never repeated
        run = _GENERIC_RUNS.get(name) or _store_method(name)
        found[name] = Operation(name, kind, tuple(Argument(a["name"], a["type"]) for a in spec["arguments"]), spec["docstring"], run)
    return found


def as_jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
