"""Any OpenAI-compatible chat endpoint: OpenAI, vLLM, Ollama, and our own llama.cpp server."""

from __future__ import annotations

import dataclasses
import json

import openai
from pydantic import PrivateAttr

from crewdesk.errors import ModelOutputError
from crewdesk.llm.base import Completion, CrewdeskLLM, is_transient_status, provider_unavailable, yes_no_from_logprobs


class OpenAICompatibleLLM(CrewdeskLLM):
    llm_type: str = "openai_compatible"
    timeout: float = 300.0
    # Our own llama.cpp server: greedy decoding needs top_k (not an OpenAI parameter), and prompt caching is asked for.
    llama_server: bool = False
    _client: openai.OpenAI | None = PrivateAttr(default=None)

    def client(self) -> openai.OpenAI:
        if self._client is None:
            # max_retries=0: the SDK would otherwise retry 408/409/429/5xx and timeouts itself (twice, by default). Our
            # circuit breaker counts each failure, the fallback chain takes the call at once, and Celery defers the ticket
            # by the provider's Retry-After; a hidden layer of retries would multiply them and hide the failures.
            self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key or "not-needed", timeout=self.timeout, max_retries=0)
        return self._client

    def _complete(self, messages, stop):
        kwargs: dict = {}
        if stop:
            kwargs["stop"] = stop[:4]
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.llama_server:
            kwargs["extra_body"] = {"cache_prompt": True}
        return self._create(messages, **kwargs)

    def _complete_json(self, messages, schema, name):
        # Strict structured output: OpenAI decodes against the schema; llama.cpp's server turns it into a grammar.
        kwargs: dict = {"temperature": 0.0, "response_format": {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}}
        if self.llama_server:
            kwargs["extra_body"] = {"top_k": 1, "cache_prompt": True}
        return self._create(messages, **kwargs)

    def _complete_yes_no(self, messages, name):
        """The first token's probabilities of yes and no (`logprobs`), greedy and one token long: a calibrated answer
        rather than a coin the small model always tosses the same way."""
        kwargs: dict = {"temperature": 0.0, "logprobs": True, "top_logprobs": 10}
        if self.llama_server:
            kwargs["extra_body"] = {"top_k": 1, "cache_prompt": True}
        response = self._request(messages, max_tokens=1, **kwargs)
        completion = self._completion(response)
        content = getattr(getattr(response.choices[0], "logprobs", None), "content", None) or []
        top = [(c.token, c.logprob) for c in (content[0].top_logprobs or [])] if content else []
        if not top:  # an endpoint that does not report probabilities: the word it wrote
            top = [(completion.text.strip().lower(), 0.0)]
        p = yes_no_from_logprobs(top)
        return dataclasses.replace(completion, text=json.dumps({"answer": "yes" if p >= 0.5 else "no", "p_yes": round(p, 4)}))

    def _create(self, messages, **kwargs) -> Completion:
        return self._completion(self._request(messages, **kwargs))

    def _request(self, messages, **kwargs):
        """One chat completion, its failures mapped to ours (transient, the run's budget, the context outgrown)."""
        if self.max_tokens and "max_tokens" not in kwargs:
            kwargs["max_tokens"] = int(self.max_tokens)
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if self.request_timeout() is not None:
            kwargs["timeout"] = self.request_timeout()
        try:
            response = self.client().chat.completions.create(model=self.model, messages=messages, **kwargs)
        except openai.APITimeoutError as exc:
            timed_out = self._timed_out(exc)
            if timed_out is not exc:
                raise timed_out from exc
            raise provider_unavailable(f"model endpoint {self.base_url}", exc) from exc
        except openai.APIConnectionError as exc:  # refused, reset, and timed out (APITimeoutError is one)
            raise provider_unavailable(f"model endpoint {self.base_url}", exc) from exc
        except openai.BadRequestError as exc:
            if "context" in str(exc):  # llama.cpp's exceed_context_size_error, OpenAI's context_length_exceeded
                raise ModelOutputError(f"the conversation outgrew the model's context: {exc}") from exc
            raise
        except openai.APIStatusError as exc:  # 429 (RateLimitError), 5xx (InternalServerError), 408: may pass; 401, 404: will not
            if is_transient_status(exc.status_code):
                raise provider_unavailable(f"model endpoint {self.base_url}", exc, status=exc.status_code, headers=exc.response.headers) from exc
            raise
        return response

    @staticmethod
    def _completion(response) -> Completion:
        choice = response.choices[0]
        usage = response.usage
        details = getattr(usage, "prompt_tokens_details", None) if usage else None
        return Completion(
            text=choice.message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cached_tokens=(getattr(details, "cached_tokens", 0) or 0) if details else 0,
        )
