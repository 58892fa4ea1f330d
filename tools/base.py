"""GovernedTool: a CrewAI BaseTool whose every run goes through the gate first."""

from __future__ import annotations

import json
from typing import Any

from crewai.tools import BaseTool
from pydantic import ConfigDict

from crewdesk.connectors.base import StoreError
from tools.gate import Gate, ToolDenied


class GovernedTool(BaseTool):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    gate: Gate
    role: str
    customer: str = ""  # the identity the ticket's channel gave (the sender's address), for tools that read per customer

    def _run(self, **kwargs: Any) -> str:
        try:
            result = self.execute(**kwargs)
        except ToolDenied as exc:
            return f"DENIED: {exc}"
        except StoreError as exc:
            return f"Error: {exc}"
        return result if isinstance(result, str) else json.dumps(result)

    def execute(self, **kwargs: Any) -> Any:
        raise NotImplementedError
