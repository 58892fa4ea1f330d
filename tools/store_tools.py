"""One CrewAI tool per system-of-record operation, built from the operation table; all go through the gate."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, create_model

from crewdesk.store.operations import Operation, operations
from tools.base import GovernedTool

_TYPES = {"str": str, "List[str]": list[str]}


def _schema(operation: Operation) -> type[BaseModel]:
    fields = {arg.name: (_TYPES[arg.type], Field(...)) for arg in operation.arguments}
    return create_model(f"{operation.name.title().replace('_', '')}Args", **fields)  # type: ignore[call-overload]


class StoreTool(GovernedTool):
    operation: Operation
    customer: str = ""

    def execute(self, **kwargs: Any) -> Any:
        return self.gate.run(role=self.role, operation=self.operation, arguments=kwargs)


def store_tool_class(operation: Operation) -> type[StoreTool]:
    schema = _schema(operation)
    doc = operation.doc.split("\n\nArgs:")[0].split("\n\nReturns:")[0].strip()

    class _Tool(StoreTool):
        name: str = operation.name
        description: str = doc
        args_schema: type[BaseModel] = schema

        def __init__(self, **data: Any) -> None:
            super().__init__(operation=operation, **data)

    _Tool.__name__ = f"{schema.__name__[:-4]}Tool"
    return _Tool


STORE_TOOLS: dict[str, type[StoreTool]] = {name: store_tool_class(op) for name, op in operations().items()}
