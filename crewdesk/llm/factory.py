"""Build one LLM per agent per ticket (a shared instance double-counts tokens), by provider and tier."""

from __future__ import annotations

from crewdesk.llm.base import CrewdeskLLM
from crewdesk.llm.scripted import Responder, ScriptedLLM
from crewdesk.settings import LLMProvider, Settings

TIERS = ("cheap", "strong")

DEFAULT_MODELS: dict[LLMProvider, dict[str, str]] = {
    LLMProvider.local: {"cheap": "qwen2.5-coder-1.5b-instruct-q4_k_m", "strong": "qwen2.5-coder-1.5b-instruct-q4_k_m"},
    LLMProvider.openai: {"cheap": "gpt-4o-mini", "strong": "gpt-4o"},
    LLMProvider.anthropic: {"cheap": "claude-3-5-haiku-latest", "strong": "claude-sonnet-4-5"},
    LLMProvider.scripted: {"cheap": "scripted-cheap", "strong": "scripted-strong"},
}

# USD per million tokens (input, output). Unknown models cost 0 and are reported as such.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "claude-3-5-haiku-latest": (0.80, 4.00),
    "claude-sonnet-4-5": (3.00, 15.00),
}


def estimate_cost(model: str, tokens_in: int, tokens_out: int) -> float:
    price_in, price_out = PRICES.get(model, (0.0, 0.0))
    return (tokens_in * price_in + tokens_out * price_out) / 1_000_000


class LLMFactory:
    def __init__(self, settings: Settings, *, base_url: str | None = None, responder: Responder | None = None) -> None:
        self.settings = settings
        self.provider = settings.llm_provider
        self.responder = responder
        if base_url is None and self.provider is LLMProvider.local:
            base_url = f"http://{settings.local_host}:{settings.local_port}/v1"
        self.base_url = base_url

    def model_for(self, tier: str) -> str:
        if tier not in TIERS:
            raise ValueError(f"unknown model tier {tier!r}; expected one of {TIERS}")
        configured = self.settings.llm_model_cheap if tier == "cheap" else self.settings.llm_model_strong
        return configured or DEFAULT_MODELS[self.provider][tier]

    def build(self, *, tier: str, ticket_id: int | None = None, run_id: int | None = None) -> CrewdeskLLM:
        s = self.settings
        common = dict(model=self.model_for(tier), tier=tier, temperature=s.llm_temperature, max_tokens=s.llm_max_tokens, ticket_id=ticket_id, run_id=run_id)
        if self.provider is LLMProvider.scripted:
            llm: CrewdeskLLM = ScriptedLLM(responder=self.responder, latency_ms=s.scripted_latency_ms, **common)
        elif self.provider is LLMProvider.anthropic:
            from crewdesk.llm.anthropic_llm import AnthropicLLM

            llm = AnthropicLLM(api_key=s.anthropic_api_key.get_secret_value(), base_url=s.anthropic_base_url or None, timeout=s.llm_timeout, **common)
        else:
            from crewdesk.llm.openai_compat import OpenAICompatibleLLM

            base_url = self.base_url or s.openai_base_url
            api_key = s.openai_api_key.get_secret_value() if self.provider is LLMProvider.openai else "local"
            llm = OpenAICompatibleLLM(base_url=base_url, api_key=api_key, timeout=s.llm_timeout, provider="openai", seed=0 if self.provider is LLMProvider.local else None,
                                      llama_server=self.provider is LLMProvider.local, constrain_react=self.provider is LLMProvider.local, **common)
            if self.provider is LLMProvider.local:
                llm.context_window = s.local_ctx
        return llm

    def warm(self) -> None:
        """Open the client once (per Celery child) so the first ticket pays no set-up."""
        if self.provider in (LLMProvider.local, LLMProvider.openai):
            llm = self.build(tier="cheap")
            llm.client()  # type: ignore[attr-defined]
            if self.provider is LLMProvider.local:
                llm.client().models.list()


def start_local_server(settings: Settings):
    """Assemble the packaged model and serve it; callers stop() it (also done at exit)."""
    from crewdesk.llm.local import LocalModelServer, ensure_model

    model_path = settings.local_model_path or ensure_model(settings.models_dir)
    server = LocalModelServer(
        model_path=model_path,
        host=settings.local_host,
        port=settings.local_port,
        n_ctx=settings.local_ctx,
        threads=settings.local_threads,
        parallel=settings.local_parallel,
        binary=settings.local_server_bin,
        start_timeout=settings.local_start_timeout,
        log_path=settings.home / "logs" / "llama-server.log",
    )
    server.start()
    return server
