"""Build one LLM per agent per ticket (a shared instance double-counts tokens), by provider and tier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from crewdesk.llm.base import CrewdeskLLM
from crewdesk.llm.scripted import Responder, ScriptedLLM
from crewdesk.settings import LLMProvider, ModelSettings

if TYPE_CHECKING:
    from crewdesk.llm.breaker import Breakers
    from crewdesk.llm.openai_compat import OpenAICompatibleLLM

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


ANTHROPIC_DEFAULT_URL = "https://api.anthropic.com"


@dataclass(frozen=True)
class ChainEntry:
    """One model of the fallback chain: a provider, optionally its model (else the provider's default for the tier) and its
    endpoint (else the provider's configured one)."""

    provider: LLMProvider
    model: str | None = None
    base_url: str | None = None


def parse_chain(text: str) -> list[ChainEntry]:
    """CREWDESK_LLM_FALLBACK: comma-separated `provider[:model][@base_url]`, tried in order, e.g. `local`,
    `openai:gpt-4o-mini,local`, `openai:llama3.1:8b@http://ollama:11434/v1,local` (a model name may hold colons)."""
    entries = []
    for item in (part.strip() for part in (text or "").split(",")):
        if not item:
            continue
        head, _, base_url = item.partition("@")
        name, _, model = head.partition(":")
        try:
            provider = LLMProvider(name.strip().lower())
        except ValueError:
            raise ValueError(
                f"llm_fallback entry {item!r}: unknown provider {name.strip()!r}; expected one of {', '.join(p.value for p in LLMProvider)}"
            ) from None
        entries.append(ChainEntry(provider, model.strip() or None, base_url.strip().rstrip("/") or None))
    return entries


def endpoint_of(settings: ModelSettings, provider: LLMProvider, base_url: str | None = None) -> str | None:
    """The URL a provider's calls go to (None for the in-process scripted model)."""
    if provider is LLMProvider.scripted:
        return None
    if base_url:
        return base_url
    if provider is LLMProvider.local:
        return f"http://{settings.local_host}:{settings.local_port}/v1"
    if provider is LLMProvider.anthropic:
        return settings.anthropic_base_url or ANTHROPIC_DEFAULT_URL
    return settings.openai_base_url


def chain_keys(settings: ModelSettings, *, base_url: str | None = None) -> list[str]:
    """The breaker keys of the configured chain: the provider's endpoint, then each fallback's, without repeats."""
    from crewdesk.llm.breaker import endpoint_key

    keys: list[str] = []
    primary = [(settings.llm_provider, base_url)] + [(e.provider, e.base_url) for e in parse_chain(settings.llm_fallback)]
    for provider, url in primary:
        if provider is LLMProvider.scripted:
            continue
        key = endpoint_key(provider.value, endpoint_of(settings, provider, url))
        if key not in keys:
            keys.append(key)
    return keys


class LLMFactory:
    def __init__(self, settings: ModelSettings, *, base_url: str | None = None, responder: Responder | None = None) -> None:
        self.settings = settings
        self.provider = settings.llm_provider
        self.responder = responder
        if base_url is None and self.provider is LLMProvider.local:
            base_url = f"http://{settings.local_host}:{settings.local_port}/v1"
        self.base_url = base_url
        self.fallback = parse_chain(settings.llm_fallback)
        self._breakers: Breakers | None = None

    def model_for(self, tier: str) -> str:
        if tier not in TIERS:
            raise ValueError(f"unknown model tier {tier!r}; expected one of {TIERS}")
        configured = self.settings.llm_model_cheap if tier == "cheap" else self.settings.llm_model_strong
        return configured or DEFAULT_MODELS[self.provider][tier]

    @property
    def breakers(self) -> Breakers:
        """This process's circuit breakers (crewdesk/llm/breaker.py), opened on first use."""
        if self._breakers is None:
            from crewdesk.llm import breaker

            self._breakers = breaker.for_settings(self.settings)
        return self._breakers

    def build(self, *, tier: str, ticket_id: int | None = None, run_id: int | None = None) -> CrewdeskLLM:
        """The tier's model of the configured provider, guarded by its endpoint's circuit breaker, with the fallback chain
        (CREWDESK_LLM_FALLBACK) that takes each call its endpoint cannot (see CrewdeskLLM._answer: per call, not per
        ticket). Accounting and audit name the model that answered each call."""
        llm = self._build_one(self.provider, model=self.model_for(tier), base_url=self.base_url, tier=tier, ticket_id=ticket_id, run_id=run_id)
        fallbacks: list[CrewdeskLLM] = []
        seen = {(llm.breaker_key, llm.model)}
        for entry in self.fallback:
            model = entry.model or DEFAULT_MODELS[entry.provider][tier]
            candidate = self._build_one(entry.provider, model=model, base_url=entry.base_url, tier=tier, ticket_id=ticket_id, run_id=run_id)
            if (candidate.breaker_key, candidate.model) not in seen:
                seen.add((candidate.breaker_key, candidate.model))
                fallbacks.append(candidate)
        return llm.guard(self.breakers, fallbacks)

    def _build_one(self, provider: LLMProvider, *, model: str, base_url: str | None, tier: str, ticket_id: int | None, run_id: int | None) -> CrewdeskLLM:
        from crewdesk.llm.breaker import endpoint_key

        s = self.settings
        common: dict[str, Any] = dict(model=model, tier=tier, temperature=s.llm_temperature, max_tokens=s.llm_max_tokens, ticket_id=ticket_id, run_id=run_id)
        url = endpoint_of(s, provider, base_url)
        if provider is LLMProvider.scripted:
            llm: CrewdeskLLM = ScriptedLLM(responder=self.responder, latency_ms=s.scripted_latency_ms, **common)
        elif provider is LLMProvider.anthropic:
            from crewdesk.llm.anthropic_llm import AnthropicLLM

            llm = AnthropicLLM(
                api_key=s.anthropic_api_key.get_secret_value(), base_url=url if url != ANTHROPIC_DEFAULT_URL else None, timeout=s.llm_timeout, **common
            )
        else:
            from crewdesk.llm.openai_compat import OpenAICompatibleLLM

            api_key = s.openai_api_key.get_secret_value() if provider is LLMProvider.openai else "local"
            llm = OpenAICompatibleLLM(
                base_url=url,
                api_key=api_key,
                timeout=s.llm_timeout,
                provider="openai",
                seed=0 if provider is LLMProvider.local else None,
                llama_server=provider is LLMProvider.local,
                constrain_react=provider is LLMProvider.local,
                **common,
            )
            if provider is LLMProvider.local:
                llm.context_window = s.local_ctx
        llm.breaker_key = endpoint_key(provider.value, url) if url else None
        return llm

    def warm(self) -> None:
        """Open the client once (per Celery child) so the first ticket pays no set-up."""
        if self.provider in (LLMProvider.local, LLMProvider.openai):
            llm = cast("OpenAICompatibleLLM", self.build(tier="cheap"))  # both providers build an OpenAICompatibleLLM
            llm.client()
            if self.provider is LLMProvider.local:
                llm.client().models.list()


def start_local_server(settings: ModelSettings):
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
