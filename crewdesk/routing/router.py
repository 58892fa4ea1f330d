"""Which design routes by default, and one place to build any of the three. The embedding design is the default: it
measured best on Bitext (README.md, "Measured"), needs no model server, and costs ~15 ms per ticket; the hybrid adds
a model call only on the tickets it is unsure of."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from crewdesk.routing.embedding import EmbeddingRouter
from crewdesk.routing.model import Decider, HybridRouter, LLMRouter
from crewdesk.routing.schemas import Route

Design = Literal["embedding", "model", "hybrid"]
DEFAULT_DESIGN: Design = "embedding"


class Router(Protocol):
    def route(self, text: str) -> Route: ...


def build_router(*, cache_dir: Path | str | None, llm: Decider | None = None, design: Design = DEFAULT_DESIGN) -> Router:
    """cache_dir: where the example vectors are cached (e.g. settings.home / "cache"); llm: for model and hybrid."""
    if design == "embedding":
        return EmbeddingRouter(cache_dir=cache_dir)
    if llm is None:
        raise ValueError(f"the {design} routing design needs an LLM with decide()")
    if design == "model":
        return LLMRouter(llm)
    return HybridRouter(EmbeddingRouter(cache_dir=cache_dir), LLMRouter(llm))
