"""Provider clients against local HTTP stand-ins for the OpenAI and Anthropic APIs (the real ones are
unreachable here, so these servers are the mock; they assert the exact requests crewdesk sends)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import HTTPServer

import pytest

from crewdesk.errors import TransientError
from crewdesk.llm.factory import LLMFactory, estimate_cost
from crewdesk.settings import load_settings
from tests.helpers import JsonStandIn


class Recorder:
    def __init__(self, status: int = 200, reply: dict | None = None) -> None:
        self.status = status
        self.reply = reply or {}
        self.requests: list[tuple[str, dict, dict]] = []


def serve(recorder: Recorder):
    class Handler(JsonStandIn):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            recorder.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.answer(recorder.status, recorder.reply)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


OPENAI_REPLY = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Thought: ok\nFinal Answer: {\"a\": 1}\nObservation: extra"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
}


def test_openai_compatible_request_usage_and_stop_words():
    recorder = Recorder(reply=OPENAI_REPLY)
    server = serve(recorder)
    settings = load_settings(llm_provider="openai", openai_base_url=f"http://127.0.0.1:{server.server_port}/v1", openai_api_key="sk-test", llm_max_tokens=321)
    llm = LLMFactory(settings).build(tier="cheap", ticket_id=1, run_id=2)
    llm.stop = ["\nObservation:"]
    text = llm.call([{"role": "system", "content": "You are X."}, {"role": "user", "content": "hi"}, {"role": "tool", "content": "result"}])
    server.shutdown()
    path, headers, body = recorder.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == "Bearer sk-test"
    assert body["model"] == "gpt-4o-mini" and body["max_tokens"] == 321 and body["stop"] == ["\nObservation:"]
    assert [m["role"] for m in body["messages"]] == ["system", "user", "user"]  # tool turns folded: llama.cpp drops them
    assert "response_format" not in body and "tools" not in body  # ReAct text mode only
    assert text == 'Thought: ok\nFinal Answer: {"a": 1}'
    usage = llm.get_token_usage_summary()
    assert (usage.prompt_tokens, usage.completion_tokens, usage.successful_requests) == (120, 30, 1)
    assert llm.supports_function_calling() is False
    assert estimate_cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)


def test_openai_server_error_is_transient_and_not_retried_by_the_client():
    recorder = Recorder(status=500, reply={"error": {"message": "boom"}})
    server = serve(recorder)
    settings = load_settings(llm_provider="openai", openai_base_url=f"http://127.0.0.1:{server.server_port}/v1", openai_api_key="k")
    llm = LLMFactory(settings).build(tier="strong")
    with pytest.raises(TransientError, match="InternalServerError"):
        llm.call("hello")
    server.shutdown()
    assert len(recorder.requests) == 1  # one attempt: Celery owns the retry


def test_unreachable_model_server_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(llm_provider="local", local_port=port)
    llm = LLMFactory(settings).build(tier="cheap")
    with pytest.raises(TransientError, match="APIConnectionError"):
        llm.call("hello")


def test_anthropic_messages_request():
    recorder = Recorder(reply={
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-latest",
        "content": [{"type": "text", "text": "Final Answer: {}"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 50, "output_tokens": 7},
    })
    server = serve(recorder)
    settings = load_settings(llm_provider="anthropic", anthropic_api_key="ak-test", anthropic_base_url=f"http://127.0.0.1:{server.server_port}")
    llm = LLMFactory(settings).build(tier="cheap")
    text = llm.call([{"role": "system", "content": "You are Y."}, {"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    server.shutdown()
    path, headers, body = recorder.requests[0]
    assert path == "/v1/messages", path
    assert headers.get("x-api-key") == "ak-test" or headers.get("authorization") == "Bearer ak-test", sorted(headers)
    assert body["system"] == "You are Y." and body["messages"] == [{"role": "user", "content": "a\n\nb"}]
    assert text == "Final Answer: {}"
    assert llm.get_token_usage_summary().prompt_tokens == 50


def test_tiers_pick_models_per_role():
    settings = load_settings(llm_provider="openai", llm_model_cheap="small-one", llm_model_strong="big-one")
    factory = LLMFactory(settings)
    assert factory.build(tier="cheap").model == "small-one" and factory.build(tier="strong").model == "big-one"
    with pytest.raises(ValueError, match="unknown model tier"):
        factory.build(tier="medium")
    a, b = factory.build(tier="cheap"), factory.build(tier="cheap")
    assert a is not b
