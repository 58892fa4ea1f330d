"""Any OpenAI-compatible chat endpoint: OpenAI, vLLM, Ollama, and our own llama.cpp server."""

from __future__ import annotations

import openai
from pydantic import PrivateAttr

from crewdesk.errors import TransientError
from crewdesk.llm.base import Completion, CrewdeskLLM


class OpenAICompatibleLLM(CrewdeskLLM):
    llm_type: str = "openai_compatible"
    timeout: float = 300.0
    _client: openai.OpenAI | None = PrivateAttr(default=None)

    def client(self) -> openai.OpenAI:
        if self._client is None:
            # max_retries=0: CrewAI already retries rate limits around call(), and Celery
            # retries the ticket on transient errors; a third layer would multiply them.
            self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key or "not-needed", timeout=self.timeout, max_retries=0)
        return self._client

    def _complete(self, messages, stop):
        kwargs = {}
        if stop:
            kwargs["stop"] = stop[:4]
        if self.max_tokens:
            kwargs["max_tokens"] = int(self.max_tokens)
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.seed is not None:
            kwargs["seed"] = self.seed
        try:
            response = self.client().chat.completions.create(model=self.model, messages=messages, **kwargs)
        except (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError) as exc:
            raise TransientError(f"model endpoint {self.base_url}: {type(exc).__name__}: {exc}") from exc
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )
