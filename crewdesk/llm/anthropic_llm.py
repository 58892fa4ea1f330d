"""Anthropic's Messages API through the official SDK."""

from __future__ import annotations

import json
from typing import Any, cast

import anthropic
from pydantic import PrivateAttr

from crewdesk.llm.base import Completion, CrewdeskLLM, is_transient_status, provider_unavailable


def split_system(messages: list[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
    """Anthropic takes the system prompt apart and wants user/assistant turns alternating."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns: list[dict[str, str]] = []
    for message in messages:
        if message["role"] == "system":
            continue
        role = "assistant" if message["role"] == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1] = {"role": role, "content": turns[-1]["content"] + "\n\n" + message["content"]}
        else:
            turns.append({"role": role, "content": message["content"]})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": "(start)"})
    return system, turns


class AnthropicLLM(CrewdeskLLM):
    llm_type: str = "anthropic"
    provider: str = "anthropic"
    timeout: float = 300.0
    _client: anthropic.Anthropic | None = PrivateAttr(default=None)

    def client(self) -> anthropic.Anthropic:
        if self._client is None:
            kwargs: dict[str, Any] = {"api_key": self.api_key, "timeout": self.timeout, "max_retries": 0}
            if self.base_url:
                kwargs["base_url"] = self.base_url
            self._client = anthropic.Anthropic(**kwargs)
        return self._client

    def _complete(self, messages, stop):
        system, turns = split_system(messages)
        kwargs: dict[str, Any] = {"max_tokens": int(self.max_tokens or 1024)}
        if system:
            kwargs["system"] = system
        if stop:
            kwargs["stop_sequences"] = [s for s in stop if s.strip()][:4]
        # anthropic SDK 2.x no longer takes sampling parameters (temperature) on messages.create.
        try:
            response = self.client().messages.create(
                model=self.model, messages=cast("list[Any]", turns), **self._timeout_kwargs(), **kwargs
            )  # role/content dicts, as the SDK takes
        except anthropic.APITimeoutError as exc:
            timed_out = self._timed_out(exc)
            raise (timed_out if timed_out is not exc else provider_unavailable("anthropic", exc)) from exc
        except anthropic.APIConnectionError as exc:  # refused, reset, and timed out (APITimeoutError is one)
            raise provider_unavailable("anthropic", exc) from exc
        except anthropic.APIStatusError as exc:  # 429, 529 (overloaded) and other 5xx may pass; 400, 401 will not
            if is_transient_status(exc.status_code):
                raise provider_unavailable("anthropic", exc, status=exc.status_code, headers=exc.response.headers) from exc
            raise
        text = "".join(block.text for block in cast("list[Any]", response.content) if getattr(block, "type", "") == "text")
        return self._completion(text, response)

    def _complete_json(self, messages, schema, name):
        """A forced tool call whose input schema is the decision's schema: the tool input is the answer."""
        system, turns = split_system(messages)
        kwargs: dict[str, Any] = {
            "max_tokens": int(self.max_tokens or 1024),
            "tools": [{"name": name, "description": f"Record the decision '{name}'.", "input_schema": schema}],
            "tool_choice": {"type": "tool", "name": name},
        }
        if system:
            kwargs["system"] = system
        try:
            response = self.client().messages.create(
                model=self.model, messages=cast("list[Any]", turns), **self._timeout_kwargs(), **kwargs
            )  # role/content dicts, as the SDK takes
        except anthropic.APITimeoutError as exc:
            timed_out = self._timed_out(exc)
            raise (timed_out if timed_out is not exc else provider_unavailable("anthropic", exc)) from exc
        except anthropic.APIConnectionError as exc:  # refused, reset, and timed out (APITimeoutError is one)
            raise provider_unavailable("anthropic", exc) from exc
        except anthropic.APIStatusError as exc:  # 429, 529 (overloaded) and other 5xx may pass; 400, 401 will not
            if is_transient_status(exc.status_code):
                raise provider_unavailable("anthropic", exc, status=exc.status_code, headers=exc.response.headers) from exc
            raise
        answer = next((block.input for block in cast("list[Any]", response.content) if getattr(block, "type", "") == "tool_use"), None)
        return self._completion(json.dumps(answer) if answer is not None else "", response)

    def _timeout_kwargs(self) -> dict[str, Any]:
        return {"timeout": self.request_timeout()} if self.request_timeout() is not None else {}

    @staticmethod
    def _completion(text: str, response) -> Completion:
        usage = response.usage
        return Completion(
            text=text, prompt_tokens=usage.input_tokens, completion_tokens=usage.output_tokens, cached_tokens=getattr(usage, "cache_read_input_tokens", 0) or 0
        )
