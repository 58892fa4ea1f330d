"""Provider clients against local HTTP stand-ins for the OpenAI and Anthropic APIs (the real ones are
unreachable here, so these servers are the mock; they assert the exact requests crewdesk sends)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import HTTPServer, ThreadingHTTPServer

import pytest

from crewdesk.errors import ModelOutputError, TransientError
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
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            recorder.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.answer(recorder.status, recorder.reply)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


OPENAI_REPLY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": 'Thought: ok\nFinal Answer: {"a": 1}\nObservation: extra'}, "finish_reason": "stop"}],
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
    recorder = Recorder(
        reply={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-haiku-latest",
            "content": [{"type": "text", "text": "Final Answer: {}"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 50, "output_tokens": 7},
        }
    )
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


DECISION_SCHEMA = {
    "type": "object",
    "properties": {"action": {"enum": ["return", "keep"]}, "items": {"type": "array", "items": {"enum": ["i1", "i2"]}, "minItems": 1}},
    "required": ["action", "items"],
    "additionalProperties": False,
}


def _openai_reply(content: str, cached: int = 0) -> dict:
    return {
        **OPENAI_REPLY,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 9, "total_tokens": 109, "prompt_tokens_details": {"cached_tokens": cached}},
    }


def test_a_decision_on_the_local_server_is_greedy_cached_and_decoded_against_its_schema():
    """The local provider talks to llama.cpp's llama-server (here a stand-in that records the request)."""
    recorder = Recorder(reply=_openai_reply('{"action": "return", "items": ["i2"]}', cached=80))
    server = serve(recorder)
    settings = load_settings(llm_provider="local", local_port=server.server_port)
    llm = LLMFactory(settings).build(tier="cheap", ticket_id=1, run_id=2)
    decision = llm.decide([{"role": "system", "content": "Rules."}, {"role": "user", "content": "Ticket."}], DECISION_SCHEMA, name="pick_items")
    server.shutdown()
    _, _, body = recorder.requests[0]
    assert decision == {"action": "return", "items": ["i2"]}
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "pick_items", "strict": True, "schema": DECISION_SCHEMA}}
    assert body["temperature"] == 0 and body["top_k"] == 1 and body["cache_prompt"] is True
    usage = llm.get_token_usage_summary()
    assert (usage.prompt_tokens, usage.cached_prompt_tokens, usage.completion_tokens) == (100, 80, 9)


def test_openai_gets_the_same_schema_in_strict_mode_without_llama_parameters():
    recorder = Recorder(reply=_openai_reply('{"action": "keep", "items": ["i1"]}'))
    server = serve(recorder)
    settings = load_settings(llm_provider="openai", openai_base_url=f"http://127.0.0.1:{server.server_port}/v1", openai_api_key="k")
    llm = LLMFactory(settings).build(tier="strong")
    assert llm.decide([{"role": "user", "content": "x"}], DECISION_SCHEMA, name="pick_items") == {"action": "keep", "items": ["i1"]}
    server.shutdown()
    _, _, body = recorder.requests[0]
    assert body["response_format"]["json_schema"]["strict"] is True and body["response_format"]["json_schema"]["schema"] == DECISION_SCHEMA
    assert "top_k" not in body and "cache_prompt" not in body
    assert llm.constrain_react is False  # API models keep CrewAI's ReAct text; only the small local model is constrained per step


def test_an_answer_outside_the_schema_is_a_model_output_error_never_a_value():
    recorder = Recorder(reply=_openai_reply('{"action": "refund everything", "items": ["i9"]}'))
    server = serve(recorder)
    settings = load_settings(llm_provider="openai", openai_base_url=f"http://127.0.0.1:{server.server_port}/v1", openai_api_key="k")
    llm = LLMFactory(settings).build(tier="strong")
    with pytest.raises(ModelOutputError, match="does not fit its schema"):
        llm.decide([{"role": "user", "content": "x"}], DECISION_SCHEMA, name="pick_items")
    server.shutdown()


def test_anthropic_decides_through_a_forced_tool_whose_input_schema_is_the_decision():
    recorder = Recorder(
        reply={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-haiku-latest",
            "content": [{"type": "tool_use", "id": "tu_1", "name": "pick_items", "input": {"action": "return", "items": ["i1", "i2"]}}],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 70, "output_tokens": 12, "cache_read_input_tokens": 64},
        }
    )
    server = serve(recorder)
    settings = load_settings(llm_provider="anthropic", anthropic_api_key="ak", anthropic_base_url=f"http://127.0.0.1:{server.server_port}")
    llm = LLMFactory(settings).build(tier="cheap")
    decision = llm.decide([{"role": "system", "content": "Rules."}, {"role": "user", "content": "Ticket."}], DECISION_SCHEMA, name="pick_items")
    server.shutdown()
    _, _, body = recorder.requests[0]
    assert decision == {"action": "return", "items": ["i1", "i2"]}
    assert body["tools"][0]["name"] == "pick_items" and body["tools"][0]["input_schema"] == DECISION_SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": "pick_items"} and body["system"] == "Rules."
    assert llm.get_token_usage_summary().cached_prompt_tokens == 64


def test_a_constrained_react_step_offers_only_the_agents_tools_and_is_rendered_for_crewai():
    """Each step of the local model is one JSON object decoded against the agent's own tools and its task's output."""
    from crewdesk.llm import react
    from crewdesk.tickets.schemas import Triage
    from tools.store_tools import STORE_TOOLS

    class Offered:
        name = "find_user_id_by_email"
        args_schema = STORE_TOOLS["find_user_id_by_email"].model_fields["args_schema"].default

    schema = react.step_schema([Offered()], Triage)
    steps = schema["properties"]["step"]["anyOf"]
    assert [s["properties"].get("action", {}).get("const") for s in steps] == ["find_user_id_by_email", None]
    assert steps[0]["properties"]["action_input"]["required"] == ["email"] and steps[0]["properties"]["action_input"]["additionalProperties"] is False
    assert steps[1]["properties"]["final_answer"]["properties"]["category"]["enum"] == ["billing", "technical", "account", "other"]
    recorder = Recorder(
        reply=_openai_reply('{"step": {"thought": "look the customer up", "action": "find_user_id_by_email", "action_input": {"email": "<EMAIL_1>"}}}')
    )
    server = serve(recorder)
    llm = LLMFactory(load_settings(llm_provider="local", local_port=server.server_port)).build(tier="strong")
    llm.react_schema = schema
    text = llm.call([{"role": "system", "content": "You are Billing."}, {"role": "user", "content": "Tool Name: find_user_id_by_email\n..."}])
    server.shutdown()
    _, _, body = recorder.requests[0]
    assert body["response_format"]["json_schema"]["schema"] == schema and body["messages"][0]["content"].startswith("You are Billing.")
    assert text == 'Thought: look the customer up\nAction: find_user_id_by_email\nAction Input: {"email": "<EMAIL_1>"}'
    assert react.render({"step": {"thought": "done", "final_answer": {"category": "billing"}}}) == 'Thought: done\nFinal Answer: {"category": "billing"}'


def test_the_scripted_model_answers_a_decision_with_its_plan_or_the_first_allowed_value():
    from crewdesk.llm.scripted import ScriptedLLM

    llm = ScriptedLLM(model="scripted")
    assert llm.decide([{"role": "user", "content": "x"}], DECISION_SCHEMA, name="pick_items") == {"action": "return", "items": ["i1"]}

    class Planned:
        def __call__(self, messages, role):
            return "unused"

        def decide(self, name, messages, schema):
            return {"action": "keep", "items": ["i2"]} if name == "pick_items" else None

    assert ScriptedLLM(model="scripted", responder=Planned()).decide([], DECISION_SCHEMA, name="pick_items") == {"action": "keep", "items": ["i2"]}


def test_a_conversation_that_outgrows_the_context_is_a_model_output_error_so_the_ticket_goes_to_a_person():
    recorder = Recorder(
        status=400,
        reply={
            "error": {"code": 400, "message": "request (9211 tokens) exceeds the available context size (8192 tokens)", "type": "exceed_context_size_error"}
        },
    )
    server = serve(recorder)
    llm = LLMFactory(load_settings(llm_provider="local", local_port=server.server_port)).build(tier="strong")
    with pytest.raises(ModelOutputError, match="outgrew the model's context"):
        llm.call("hello")
    server.shutdown()


def test_an_answer_past_the_runs_deadline_is_cut_and_is_the_runs_budget_not_the_endpoint_failing():
    """A run's budget (CallBudget) gives each call only the time left: the request is cut there and raises
    BudgetExhausted (a model-output error: the ticket goes to a person), not a transient error that would count against
    the endpoint's circuit breaker and defer the ticket. The stand-in would answer after 10 s; the run has 0.5 s left (the
    bound below is loose on purpose: it shows the request was cut, not how fast)."""
    import time

    from crewdesk.errors import BudgetExhausted
    from crewdesk.llm.base import CallBudget

    class Slow(JsonStandIn):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(10.0)
            try:
                self.answer(200, OPENAI_REPLY)
            except OSError:  # the client has gone: what the test wants
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True  # shutdown does not wait for the sleeping handler
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = load_settings(llm_provider="openai", openai_base_url=f"http://127.0.0.1:{server.server_port}/v1", openai_api_key="k")
    llm = LLMFactory(settings).build(tier="strong").within(CallBudget(max_calls=5, seconds=0.5))
    started = time.monotonic()
    with pytest.raises(BudgetExhausted, match="ran out while"):
        llm.call("hello")
    assert time.monotonic() - started < 8.0
    with pytest.raises(BudgetExhausted, match="are up"):  # nothing left: the next call is not even sent
        llm.call("again")
    server.shutdown()
    assert not isinstance(BudgetExhausted("x"), TransientError) and isinstance(BudgetExhausted("x"), ModelOutputError)


def _logprob_reply(top: list[tuple[str, float]]) -> dict:
    reply = _openai_reply(top[0][0])
    reply["choices"][0]["logprobs"] = {
        "content": [{"token": top[0][0], "logprob": top[0][1], "bytes": None, "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top]}]
    }
    return reply


def test_a_yes_no_check_on_the_local_server_reads_the_probability_of_yes_from_the_first_tokens_logprobs():
    """The write check's question (crews/procedures/check.py): one greedy token with its top log-probabilities; "Yes",
    "yes" and " yes" are one answer, and tokens that are neither do not count."""
    import math

    top = [("Yes", math.log(0.5)), ("No", math.log(0.2)), (" yes", math.log(0.1)), ("To", math.log(0.15)), ("no", math.log(0.05))]
    recorder = Recorder(reply=_logprob_reply(top))
    server = serve(recorder)
    settings = load_settings(llm_provider="local", local_port=server.server_port)
    llm = LLMFactory(settings).build(tier="cheap", ticket_id=1, run_id=2)
    p = llm.yes_probability([{"role": "system", "content": "Check."}, {"role": "user", "content": "Does the customer ask ...?"}], name="check_write")
    server.shutdown()
    _, _, body = recorder.requests[0]
    assert p == pytest.approx(0.6 / 0.85, abs=1e-3)
    assert body["logprobs"] is True and body["top_logprobs"] == 10 and body["max_tokens"] == 1
    assert body["temperature"] == 0 and body["top_k"] == 1 and body["cache_prompt"] is True


def test_a_yes_no_check_without_logprobs_reads_the_word_and_the_scripted_model_says_yes():
    recorder = Recorder(reply=_openai_reply("No"))
    server = serve(recorder)
    settings = load_settings(llm_provider="openai", openai_base_url=f"http://127.0.0.1:{server.server_port}/v1", openai_api_key="k")
    assert LLMFactory(settings).build(tier="strong").yes_probability([{"role": "user", "content": "x?"}], name="check_write") == 0.0
    server.shutdown()
    scripted = LLMFactory(load_settings(llm_provider="scripted")).build(tier="cheap")
    assert scripted.yes_probability([{"role": "user", "content": "x?"}], name="check_write") == 1.0  # the first value its schema allows
