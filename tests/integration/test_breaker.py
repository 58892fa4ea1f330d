"""Circuit breakers and the fallback chain, against real local HTTP servers that speak OpenAI's chat-completions API and
fail on cue (500s, a 429 with Retry-After, a hang past the client timeout, then recovery), with the breakers' state in
the real Redis, and the deferral through the real Pipeline on real PostgreSQL and the real Celery task."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import ThreadingHTTPServer

import openai
import pytest
import redis
from sqlalchemy import select

from crewdesk.audit.models import AuditEvent
from crewdesk.errors import ModelOutputError, ModelUnavailable, ProviderUnavailable, TransientError, deferral_of
from crewdesk.llm import breaker
from crewdesk.llm.base import normalize_messages
from crewdesk.llm.factory import LLMFactory, estimate_cost
from crewdesk.llm.scripted import agent_role, default_responder
from crewdesk.runs.models import CrewRun
from crewdesk.settings import load_settings
from crewdesk.tickets.models import Ticket
from crews.pipeline import Pipeline
from tests.helpers import JsonStandIn

BREAKER_REDIS = "redis://127.0.0.1:6379/12"  # a db of its own: the breakers' keys and the deferred task messages


class ModelServer:
    """An OpenAI-compatible endpoint on loopback. Each request takes the next cue: ("fail", status, headers),
    ("hang", seconds) or ("ok",); with no cue left it answers. Answers come from the scripted responder (the ReAct text a
    crew agent expects), with usage counted from the text."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.cues: deque = deque()
        self.requests = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(JsonStandIn):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner._lock:
                    owner.requests += 1
                    cue = owner.cues.popleft() if owner.cues else ("ok",)
                if cue[0] == "fail":
                    self.answer(cue[1], {"error": {"message": f"cue {cue[1]}", "type": "server_error"}}, headers=cue[2] if len(cue) > 2 else None)
                    return
                if cue[0] == "hang":
                    time.sleep(cue[1])
                messages = normalize_messages(body["messages"])
                text = default_responder(messages, agent_role(messages))
                prompt = sum(len(m["content"]) for m in messages) // 4 + 1
                try:
                    self.answer(
                        200,
                        {
                            "id": "chatcmpl-1",
                            "object": "chat.completion",
                            "created": 1,
                            "model": owner.model,
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": prompt, "completion_tokens": len(text) // 4 + 1, "total_tokens": prompt + len(text) // 4 + 1},
                        },
                    )
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a hang

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def cue(self, *cues: tuple) -> None:
        self.cues.extend(cues)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def model_servers(*models: str):
    servers = [ModelServer(model) for model in models]
    try:
        yield servers
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def prefix():
    """A key prefix of this test's own in the breakers' Redis db, and every key under it deleted after."""
    name = f"test-breaker-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(BREAKER_REDIS)
    yield name
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)


def llm_settings(primary: ModelServer, prefix: str, *, fallback: str = "", **overrides):
    values = dict(
        llm_provider="openai",
        openai_base_url=primary.url,
        openai_api_key="k",
        llm_model_cheap=primary.model,
        llm_model_strong=primary.model,
        broker_url=BREAKER_REDIS,
        llm_breaker_prefix=prefix,
        llm_breaker_failures=3,
        llm_breaker_reset_seconds=2.0,
        llm_timeout=1.0,
        llm_fallback=fallback,
    )
    values.update(overrides)
    return load_settings(**values)


def key_of(server: ModelServer) -> str:
    return breaker.endpoint_key("openai", server.url)


ASK = [{"role": "system", "content": "You are Support Routing Agent."}, {"role": "user", "content": "<ticket>I was charged twice.</ticket>"}]


def test_the_circuit_opens_after_n_failures_and_calls_go_to_the_fallback_without_touching_the_primary(prefix):
    with model_servers("gpt-4o", "gpt-4.1-mini") as (primary, backup):
        settings = llm_settings(primary, prefix, fallback=f"openai:gpt-4.1-mini@{backup.url}")
        primary.cue(("fail", 500), ("fail", 502), ("fail", 503))
        llm = LLMFactory(settings).build(tier="cheap")
        for n in range(1, 4):  # each failure is counted, and the same call is answered by the fallback at once
            assert "Final Answer" in llm.call(ASK)
            assert primary.requests == n and backup.requests == n
        assert breaker.states(settings) == {key_of(primary): "open", key_of(backup): "closed"}
        for _ in range(2):  # open: the primary is not asked at all
            llm.call(ASK)
        assert primary.requests == 3 and backup.requests == 5
        assert llm.answered_by == {"gpt-4.1-mini": 5}  # what accounting and the audit row name
        assert set(llm.usage_by_model()) == {"gpt-4.1-mini"}
        # Another process (here: a fresh registry, as a new worker child has) reads the same circuit from Redis.
        breaker._registry.clear()
        assert breaker.states(settings)[key_of(primary)] == "open"


def test_the_whole_outage_500s_then_429_with_retry_after_then_a_hang_then_recovery(prefix):
    with model_servers("gpt-4o", "gpt-4.1-mini") as (primary, backup):
        settings = llm_settings(primary, prefix, fallback=f"openai:gpt-4.1-mini@{backup.url}", llm_breaker_failures=4)
        primary.cue(("fail", 500), ("fail", 500), ("fail", 429, {"Retry-After": "1"}), ("hang", 3.0))
        llm = LLMFactory(settings).build(tier="strong")
        llm.call(ASK)
        llm.call(ASK)
        assert breaker.states(settings)[key_of(primary)] == "closed"  # 2 of 4
        llm.call(ASK)  # 429: held for its Retry-After
        assert breaker.states(settings)[key_of(primary)] == "open"
        llm.call(ASK)
        assert primary.requests == 3, "a call went to the primary before its Retry-After had passed"
        time.sleep(1.1)
        started = time.monotonic()
        llm.call(ASK)  # the hang: the client gives up after llm_timeout (1 s), the 4th failure opens the circuit
        assert 0.9 < time.monotonic() - started < 2.5
        assert primary.requests == 4 and breaker.states(settings)[key_of(primary)] == "open"
        llm.call(ASK)
        assert primary.requests == 4 and backup.requests == 6 and llm.answered_by == {"gpt-4.1-mini": 6}
        time.sleep(2.1)  # llm_breaker_reset_seconds
        assert breaker.states(settings)[key_of(primary)] == "half-open"
        llm.call(ASK)  # the trial call: the primary has recovered
        assert primary.requests == 5 and backup.requests == 6
        assert breaker.states(settings)[key_of(primary)] == "closed"
        assert llm.answered_by == {"gpt-4.1-mini": 6, "gpt-4o": 1}


def test_a_failed_trial_opens_the_circuit_again(prefix):
    with model_servers("gpt-4o", "gpt-4.1-mini") as (primary, backup):
        settings = llm_settings(primary, prefix, fallback=f"openai:gpt-4.1-mini@{backup.url}", llm_breaker_failures=1)
        primary.cue(("fail", 500), ("fail", 500))
        llm = LLMFactory(settings).build(tier="cheap")
        llm.call(ASK)
        assert breaker.states(settings)[key_of(primary)] == "open"
        time.sleep(2.1)
        llm.call(ASK)  # the trial fails: open again for another reset period, and the fallback answered
        assert primary.requests == 2 and backup.requests == 2
        assert breaker.states(settings)[key_of(primary)] == "open"


def test_retry_after_is_honoured_and_the_deferral_countdown_equals_it(prefix):
    with model_servers("gpt-4o") as (primary,):
        settings = llm_settings(primary, prefix)
        primary.cue(("fail", 429, {"Retry-After": "7"}))
        llm = LLMFactory(settings).build(tier="cheap")
        started = time.monotonic()
        with pytest.raises(ModelUnavailable) as caught:
            llm.call(ASK)
        assert time.monotonic() - started < 2  # nobody sleeps the 7 s in the worker (CrewAI's own rate-limit retry is off)
        assert caught.value.retry_after == 7 and isinstance(caught.value, TransientError)
        assert isinstance(caught.value.__cause__, ProviderUnavailable) and caught.value.__cause__.status == 429
        assert "retry at" in str(caught.value) and "(in 7 s)" in str(caught.value)
        with pytest.raises(ModelUnavailable) as again:  # held: no request goes out, and the wait is what is left of it
            llm.call(ASK)
        assert primary.requests == 1 and again.value.retry_after in (6, 7)
        # Retry-After as an HTTP date, on a 503, on another endpoint
    with model_servers("gpt-4o") as (other,):
        settings = llm_settings(other, prefix)
        when = datetime.now(UTC) + timedelta(seconds=12)
        other.cue(("fail", 503, {"Retry-After": format_datetime(when, usegmt=True)}))
        with pytest.raises(ModelUnavailable) as dated:
            LLMFactory(settings).build(tier="cheap").call(ASK)
        assert 10 <= dated.value.retry_after <= 12


def test_with_the_circuit_open_the_deferral_is_the_time_left_until_the_trial(prefix):
    with model_servers("gpt-4o") as (primary,):
        settings = llm_settings(primary, prefix, llm_breaker_failures=2, llm_breaker_reset_seconds=30.0)
        primary.cue(("fail", 500), ("fail", 500))
        llm = LLMFactory(settings).build(tier="cheap")
        with pytest.raises(ModelUnavailable) as first:
            llm.call(ASK)
        assert first.value.retry_after == 15  # still closed: the pause spreads the failures over one reset period (30 s / 2)
        with pytest.raises(ModelUnavailable):
            llm.call(ASK)
        with pytest.raises(ModelUnavailable) as opened:
            llm.call(ASK)
        assert primary.requests == 2 and 28 <= opened.value.retry_after <= 31


def test_bad_requests_and_bad_answers_are_answers_not_outages(prefix):
    with model_servers("gpt-4o") as (primary,):
        settings = llm_settings(primary, prefix, llm_breaker_failures=2)
        primary.cue(("fail", 400), ("fail", 401), ("fail", 400), ("fail", 404))
        llm = LLMFactory(settings).build(tier="cheap")
        for expected in (openai.BadRequestError, openai.AuthenticationError, openai.BadRequestError, openai.NotFoundError):
            with pytest.raises(expected):
                llm.call(ASK)
        for _ in range(3):  # the scripted answer is ReAct text, not the JSON the decision's schema wants
            with pytest.raises(ModelOutputError):
                llm.decide(ASK, {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, name="pick")
        assert primary.requests == 7
        assert breaker.states(settings)[key_of(primary)] == "closed"


def test_retry_after_header_forms():
    now = 1_700_000_000.0
    assert breaker.retry_after_seconds({"retry-after": "30"}, now=now) == 30
    assert breaker.retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}, now=now) == 1.5
    date = format_datetime(datetime.fromtimestamp(now + 45, UTC), usegmt=True)
    assert breaker.retry_after_seconds({"retry-after": date}, now=now) == 45
    assert breaker.retry_after_seconds({"retry-after": "soon"}, now=now) is None
    assert breaker.retry_after_seconds({}, now=now) is None


def test_without_redis_as_broker_the_state_is_the_process_memory(prefix):
    with model_servers("gpt-4o") as (primary,):
        settings = llm_settings(primary, prefix, broker_url="memory://", llm_breaker_failures=1)
        primary.cue(("fail", 500))
        with pytest.raises(ModelUnavailable):
            LLMFactory(settings).build(tier="cheap").call(ASK)
        assert breaker.for_settings(settings).shared is False
        assert breaker.states(settings) == {key_of(primary): "open"}
        assert not list(redis.Redis.from_url(BREAKER_REDIS).scan_iter(f"{prefix}:*"))


def test_the_fallback_setting_is_checked():
    from crewdesk.llm.factory import ChainEntry, parse_chain

    assert parse_chain("openai:gpt-4o-mini, local") == [ChainEntry(provider="openai", model="gpt-4o-mini"), ChainEntry(provider="local")]
    assert parse_chain("openai:llama3.1:8b@http://ollama:11434/v1/") == [ChainEntry(provider="openai", model="llama3.1:8b", base_url="http://ollama:11434/v1")]
    with pytest.raises(ValueError, match="unknown provider 'gemini'"):
        load_settings(llm_fallback="gemini:pro,local")


# -- through the pipeline and the Celery task -------------------------------------------------------------------------------


def test_a_ticket_finishes_on_the_fallback_and_the_run_names_and_prices_the_model_that_answered(pg_url, session_factory, make_ticket, prefix):
    with model_servers("gpt-4o", "gpt-4.1-mini") as (primary, backup):
        settings = llm_settings(
            primary, prefix, database_url=pg_url, fallback=f"openai:gpt-4.1-mini@{backup.url}", llm_breaker_failures=1, llm_breaker_reset_seconds=600.0
        )
        primary.cue(("fail", 503))  # the first call opens the circuit; the ticket goes on on the fallback
        ticket_id = make_ticket("I was charged twice for my invoice this month, please refund one charge.")
        outcome = Pipeline(settings=settings, session_factory=session_factory, llm_factory=LLMFactory(settings)).process(ticket_id)
        assert outcome.status == "resolved" and primary.requests == 1 and backup.requests >= 2
        with session_factory() as db:
            run = db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket_id)).scalar_one()
            audited = db.execute(select(AuditEvent.name, AuditEvent.error).where(AuditEvent.run_id == run.id, AuditEvent.kind == "llm_call")).all()
        assert run.models["fallback for gpt-4o"] == "gpt-4.1-mini"
        assert run.llm_calls == backup.requests == len(audited)
        assert {name for name, _ in audited} == {"gpt-4.1-mini"}  # every audited call names the model that answered it
        assert run.cost_usd == pytest.approx(estimate_cost("gpt-4.1-mini", run.tokens_in, run.tokens_out)) and run.cost_usd > 0


def test_with_no_fallback_the_ticket_is_deferred_with_its_retry_time_and_never_failed(pg_url, session_factory, make_ticket, prefix, redis_url, monkeypatch):
    from workers import runtime as worker_runtime
    from workers.app import configure
    from workers.tasks import process_ticket

    with model_servers("gpt-4o") as (primary,):
        # The broker of the other worker tests (Celery keeps its first connection pool for the whole session).
        settings = llm_settings(primary, prefix, database_url=pg_url, task_max_retries=0, broker_url=redis_url)
        pipeline = Pipeline(settings=settings, session_factory=session_factory, llm_factory=LLMFactory(settings))
        ticket_id = make_ticket("The app crashes with error 500 when I open settings.")

        # The pipeline: the run ends in error, the ticket is queued again with the time it will be retried.
        primary.cue(("fail", 503, {"Retry-After": "5"}))
        with pytest.raises(TransientError) as caught:
            pipeline.process(ticket_id)
        assert deferral_of(caught.value) == 5
        with session_factory() as db:
            ticket = db.get(Ticket, ticket_id)
            assert ticket.status == "queued"
            assert "retry at" in ticket.status_reason and "(in 5 s)" in ticket.status_reason

        # The Celery task, with max_retries 0: not given up (that would be `failed`) but put back on the queue for when the
        # provider said to come back, its retry count untouched.
        configure(settings)
        monkeypatch.setattr(worker_runtime, "_runtime", worker_runtime.Runtime(settings=settings, pipeline=pipeline, channels={}))
        queue = redis.Redis.from_url(redis_url)
        try:
            before = datetime.now(UTC)
            result = process_ticket.apply(args=[ticket_id])  # the held endpoint is not called again: deferred at once
            assert primary.requests == 1
            assert result.successful() and result.result["status"] == "deferred" and result.result["retry_in"] in (4, 5)
            messages = [json.loads(raw) for raw in queue.lrange("tickets", 0, -1)]
            assert [m["headers"]["task"] for m in messages] == ["crewdesk.process_ticket"]
            headers = messages[0]["headers"]
            assert headers["argsrepr"] == f"[{ticket_id}]" and headers["retries"] == 0
            eta = datetime.fromisoformat(headers["eta"])
            assert timedelta(seconds=3) <= eta - before <= timedelta(seconds=6)
        finally:
            queue.delete("tickets")
        with session_factory() as db:
            ticket = db.get(Ticket, ticket_id)
            runs = db.execute(select(CrewRun.status).where(CrewRun.ticket_id == ticket_id)).scalars().all()
        assert ticket.status == "queued" and "retry at" in ticket.status_reason
        assert runs == ["error", "error"]

        # When it is due and the provider is back, the ticket is answered.
        time.sleep(5.1)
        assert pipeline.process(ticket_id).status == "resolved"
        assert primary.requests >= 3
