"""kb_search: passages from the knowledge base (policies, procedures, FAQs) for the agent's question (read-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from crewdesk.memory.base import MemoryBackend, MemoryBackendError
from tools.base import GovernedTool


class _Query(BaseModel):
    query: str = Field(..., description="What to look up, in a few words, e.g. 'refund for cancelled order paid by gift card'.")


class KBSearchTool(GovernedTool):
    name: str = "kb_search"
    description: str = (
        "Search the support knowledge base (store policy, procedures, FAQs) and return the most relevant passages "
        "with their source and section. Use it when you need a rule or procedure you are not sure of."
    )
    args_schema: type[BaseModel] = _Query
    customer: str = ""
    knowledge: MemoryBackend | None = None  # the knowledge base, passed in by whoever builds the tool (crews/builder.py)
    k: int = 4

    def execute(self, **kwargs: Any) -> str:
        self.gate.check(role=self.role, tool=self.name, arguments=kwargs)
        if self.knowledge is None:
            return "The knowledge base is not configured."
        try:
            hits = self.knowledge.search_kb(str(kwargs.get("query", "")), k=self.k)  # the query keeps its PII tokens: nothing personal is searched
        except MemoryBackendError as exc:
            return f"Error: the knowledge base is unavailable ({exc})."
        if not hits:
            return "Nothing relevant found in the knowledge base."
        passages = [f"[{n}] {Path(hit.chunk.source).name} > {hit.chunk.heading}\n{hit.chunk.text}" for n, hit in enumerate(hits, 1)]
        return self.gate.vault.conceal("\n\n".join(passages))
