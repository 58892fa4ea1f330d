"""GovernedTool: a CrewAI BaseTool whose every run goes through the gate first."""

from __future__ import annotations

from typing import Any

from crewai.tools import BaseTool
from pydantic import ConfigDict

from tools.gate import Gate, ToolDenied


class GovernedTool(BaseTool):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    gate: Gate
    role: str

    def _run(self, **kwargs: Any) -> str:
        try:
            key = self.gate.check(role=self.role, tool=self.name, arguments=kwargs)
        except ToolDenied as exc:
            return f"DENIED: {exc}"
        return self.execute(idempotency_key=key, **kwargs)

    def execute(self, *, idempotency_key: str, **kwargs: Any) -> str:
        raise NotImplementedError
