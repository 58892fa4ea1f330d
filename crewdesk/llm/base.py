"""A BaseLLM that every provider shares: events, stop words, token and time accounting."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import jsonschema
from crewai import BaseLLM
from crewai.events.types.llm_events import LLMCallType
from crewai.llms.base_llm import llm_call_context
from pydantic import PrivateAttr

from crewdesk.errors import BudgetExhausted, ModelOutputError, ProviderUnavailable
from crewdesk.llm import react

if TYPE_CHECKING:
    from crewai.utilities.types import LLMMessage


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens the server took from its cache (KV prefix or provider prompt cache)


def normalize_messages(messages: str | list[dict[str, Any]]) -> list[dict[str, str]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):  # multimodal parts: keep the text
            content = "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
        role = message.get("role", "user")
        if role == "tool":  # llama.cpp's server drops tool messages; fold them into user text
            role = "user"
        out.append({"role": role, "content": content or ""})
    return out


YES_NO: dict[str, Any] = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"], "additionalProperties": False}


def yes_no_from_logprobs(top: list[tuple[str, float]]) -> float:
    """P(yes) from the first answer token's top log-probabilities: "Yes", "yes" and " yes" are one answer, and only yes
    and no count (the rest of the mass is neither)."""
    mass = {"yes": 0.0, "no": 0.0}
    for token, logprob in top:
        word = token.strip().lower().rstrip(".,!")
        if word in mass:
            mass[word] += math.exp(logprob)
    total = mass["yes"] + mass["no"]
    return mass["yes"] / total if total else 0.0


def parse_yes_no(text: str) -> float:
    try:
        value = json.loads(text)
        return min(1.0, max(0.0, float(value["p_yes"])))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ModelOutputError(f"yes/no answer not understood: {text[:200]!r}") from exc


def parse_decision(text: str, schema: dict[str, Any], name: str) -> dict[str, Any]:
    """A constrained answer is valid by construction; a provider that ignored the constraint is caught here."""
    try:
        value = json.loads(text)
        jsonschema.validate(value, schema)
    except (json.JSONDecodeError, jsonschema.ValidationError) as exc:
        raise ModelOutputError(f"decision {name}: the answer does not fit its schema: {str(exc).splitlines()[0]}") from exc
    return value


# HTTP statuses that say "not now" rather than "not this request": request timeout, rate limit, and every server error.
TRANSIENT_STATUSES = frozenset({408, 429})


def provider_unavailable(label: str, exc: Exception, *, status: int | None = None, headers=None) -> ProviderUnavailable:
    """A transient provider failure, with the wait its Retry-After asks for (429 and 503 carry one; any other it names is
    honoured too)."""
    from crewdesk.llm.breaker import retry_after_seconds

    retry_after = retry_after_seconds(headers)
    wait = f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""
    return ProviderUnavailable(f"{label}: {type(exc).__name__}: {exc}{wait}", retry_after=retry_after, status=status)


def is_transient_status(status: int | None) -> bool:
    return status is not None and (status in TRANSIENT_STATUSES or status >= 500)


def usage_of(completion: Completion) -> dict[str, int]:
    """In the keys CrewAI's UsageMetrics reads, so per-LLM totals include the cached part of the prompt."""
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        "cached_prompt_tokens": completion.cached_tokens,
    }


class CallBudget:
    """A ticket run's allowance of model calls and wall time, shared by every LLM the run builds (the triage, a crew's
    agents, a procedure's decisions, the hand-over's summary). A crew that loops, or a model too slow for the ticket, ends
    the run's model work instead of holding a worker: each call takes one from the allowance, may take at most the time
    that is left (its request is cut there), and a call beyond either raises BudgetExhausted."""

    def __init__(self, *, max_calls: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_calls, self.seconds, self._clock = max_calls, seconds, clock
        self.started = clock()
        self.calls = 0
        self._lock = threading.Lock()  # a hierarchical crew's agents may call from CrewAI's threads

    @property
    def remaining(self) -> float:
        return self.seconds - (self._clock() - self.started)

    def take(self, name: str) -> float:
        """One call's share: the seconds it may take."""
        with self._lock:
            if self.calls >= self.max_calls:
                raise BudgetExhausted(f"the run made its {self.max_calls} model calls (CREWDESK_RUN_MAX_MODEL_CALLS); {name} was not asked")
            left = self.remaining
            if left <= 0:
                raise BudgetExhausted(f"the run's {self.seconds:g} s for model calls are up (CREWDESK_RUN_MAX_SECONDS); {name} was not asked")
            self.calls += 1
            return left


class CrewdeskLLM(BaseLLM):
    """ReAct text mode only (supports_function_calling False): small models call tools reliably only there."""

    llm_type: str = "crewdesk"
    tier: str = "strong"
    context_window: int = 8192
    # Set per ticket by the crew builder; the audit listener reads them from the event source.
    run_id: int | None = None
    ticket_id: int | None = None
    # Set by the factory for providers that decode against a schema, and by the crew builder per agent: each ReAct
    # step is then decoded against the step schema of the agent's tools and its task's output (crewdesk/llm/react.py).
    constrain_react: bool = False
    react_schema: dict[str, Any] | None = None
    # The circuit breaker of this model's endpoint (crewdesk/llm/breaker.py); None for an in-process model. The factory
    # attaches the breakers and the fallback models (CREWDESK_LLM_FALLBACK) that take a call this endpoint cannot.
    breaker_key: str | None = None
    _seconds: float = PrivateAttr(default=0.0)
    _durations: dict[str, float] = PrivateAttr(default_factory=dict)
    _breakers: Any = PrivateAttr(default=None)
    _fallbacks: list[CrewdeskLLM] = PrivateAttr(default_factory=list)
    _by_model: dict[str, list[int]] = PrivateAttr(default_factory=dict)  # model that answered -> [prompt, completion, cached, calls]
    _budget: CallBudget | None = PrivateAttr(default=None)
    _request_timeout: float | None = PrivateAttr(default=None)  # this call's share of the run's time (providers cut the request there)

    @classmethod
    def _wrap_call_method(cls, method_name: str) -> None:
        """CrewAI wraps every BaseLLM subclass's call() in its own rate-limit retry (3 attempts, sleeping the provider's
        Retry-After in the worker between them). Not ours: a 429 is counted by the endpoint's circuit breaker, the call goes
        to the next model of the fallback chain at once, and a ticket no model can take is deferred by the Retry-After
        (crewdesk/llm/breaker.py). A second retry layer would multiply the requests and hold a worker asleep."""

    def supports_function_calling(self) -> bool:
        return False

    def supports_stop_words(self) -> bool:
        return True

    def get_context_window_size(self) -> int:
        return self.context_window

    @property
    def llm_seconds(self) -> float:
        return self._seconds

    def pop_call_duration_ms(self, call_id: str) -> float | None:
        return self._durations.pop(call_id, None)

    def guard(self, breakers: Any, fallbacks: list[CrewdeskLLM]) -> CrewdeskLLM:
        """Calls go through `breakers` and, when this model's endpoint cannot take one, to `fallbacks` in order."""
        self._breakers = breakers
        self._fallbacks = list(fallbacks)
        return self

    @property
    def fallbacks(self) -> list[CrewdeskLLM]:
        return self._fallbacks

    def within(self, budget: CallBudget | None) -> CrewdeskLLM:
        """Calls count against the run's allowance (CallBudget); None: unlimited (tools and benchmarks outside a run)."""
        self._budget = budget
        return self

    @property
    def budget(self) -> CallBudget | None:
        return self._budget

    def request_timeout(self) -> float | None:
        """The seconds this call may still take, when less than the provider's own timeout; None: the provider's."""
        return self._request_timeout

    def _timed_out(self, exc: Exception) -> Exception:
        """A request cut at the run's deadline is the run's budget, not the endpoint failing (no breaker counts it)."""
        if self._request_timeout is not None:
            return BudgetExhausted(f"the run's time for model calls ran out while {self.model} was answering ({type(exc).__name__})")
        return exc

    def usage_by_model(self) -> dict[str, tuple[int, int]]:
        """(prompt, completion) tokens by the model that answered: a fallback's calls are priced as the fallback's."""
        return {model: (row[0], row[1]) for model, row in self._by_model.items()}

    @property
    def answered_by(self) -> dict[str, int]:
        """Successful calls by the model that answered them."""
        return {model: row[3] for model, row in self._by_model.items()}

    def _answer(self, round_trip) -> tuple[CrewdeskLLM, Completion]:
        """One round trip on this model, or on the first fallback that can take it (see crewdesk.llm.breaker.walk).
        Fallback is per call, not per ticket: a crew whose provider dies in the middle of a ticket goes on, on the next
        model of the chain, from the step it was at; choosing once when the ticket's LLMs are built would lose the run in
        progress and never notice an outage that starts after it."""
        if self._breakers is None:
            return self, round_trip(self)
        from crewdesk.llm.breaker import walk

        return walk([self, *self._fallbacks], round_trip, self._breakers)

    @abstractmethod
    def _complete(self, messages: list[dict[str, str]], stop: list[str]) -> Completion:
        """One round trip to the model."""

    @abstractmethod
    def _complete_json(self, messages: list[dict[str, str]], schema: dict[str, Any], name: str) -> Completion:
        """One round trip whose answer is decoded against `schema` (grammar, strict structured output or a forced
        tool), greedily: the text is a JSON document that fits the schema."""

    def decide(self, messages: list[dict[str, str]], schema: dict[str, Any], *, name: str, actor: str | None = None) -> dict[str, Any]:
        """One small model decision, constrained to a JSON schema (enums of what the tools returned, never free ids).
        Audited like every other call (the LLM call events carry the prompt and the answer), under `actor`'s name when
        given (a role that decides without a crew)."""
        normalized = normalize_messages(messages)
        decision: dict[str, Any] = {}

        def produce() -> tuple[Completion, str, str]:
            llm, completion = self._answer(lambda llm: llm._complete_json(normalized, schema, name))
            decision.update(parse_decision(completion.text, schema, name))
            return completion, completion.text, llm.model

        caller = SimpleNamespace(role=actor, id=f"{actor}:{self.run_id}") if actor else None  # what CrewAI's events read of an agent
        self._traced(normalized, produce, from_agent=caller)
        return decision

    def yes_probability(self, messages: list[dict[str, str]], *, name: str, actor: str | None = None) -> float:
        """One yes/no question, answered as the probability of yes (0..1): a check of something already read, not a
        choice among options. Providers that report token probabilities give them (OpenAI-compatible servers, llama.cpp
        among them); the others answer a constrained yes/no, read as 1.0 or 0.0. Audited like every other call."""
        normalized = normalize_messages(messages)
        answer: dict[str, float] = {}

        def produce() -> tuple[Completion, str, str]:
            llm, completion = self._answer(lambda llm: llm._complete_yes_no(normalized, name))
            answer["p"] = parse_yes_no(completion.text)
            return completion, completion.text, llm.model

        caller = SimpleNamespace(role=actor, id=f"{actor}:{self.run_id}") if actor else None
        self._traced(normalized, produce, from_agent=caller)
        return answer["p"]

    def _complete_yes_no(self, messages: list[dict[str, str]], name: str) -> Completion:
        """A yes/no answer whose text is `{"answer": "yes"|"no", "p_yes": p}`; by default a constrained decision (p is 1 or 0)."""
        completion = self._complete_json(messages, YES_NO, name)
        said = parse_decision(completion.text, YES_NO, name)["answer"]
        return dataclasses.replace(completion, text=json.dumps({"answer": said, "p_yes": 1.0 if said == "yes" else 0.0}))

    def call(self, messages, tools=None, callbacks=None, available_functions=None, from_task=None, from_agent=None, response_model=None):
        normalized = normalize_messages(messages)

        def constrained(llm: CrewdeskLLM) -> bool:  # a fallback decodes as its own provider does, with this agent's schema
            return llm.constrain_react and self.react_schema is not None

        def round_trip(llm: CrewdeskLLM) -> Completion:
            if constrained(llm):
                assert self.react_schema is not None
                return llm._complete_json(react.with_hint(normalized), self.react_schema, "react_step")
            return llm._complete(normalized, list(self.stop_sequences or []))

        def produce() -> tuple[Completion, str, str]:
            llm, completion = self._answer(round_trip)
            if constrained(llm):
                assert self.react_schema is not None
                return completion, react.render(parse_decision(completion.text, self.react_schema, "react_step")), llm.model
            text = self._apply_stop_words(completion.text) if self.stop_sequences else completion.text
            return completion, repair_action(text, normalized), llm.model

        return self._traced(
            normalized, produce, tools=tools, callbacks=callbacks, available_functions=available_functions, from_task=from_task, from_agent=from_agent
        )

    def _traced(
        self, normalized: list[dict[str, str]], produce, *, tools=None, callbacks=None, available_functions=None, from_task=None, from_agent=None
    ) -> str:
        """One model round trip between CrewAI's started and completed (or failed) events, with its time and usage. A
        run's budget is taken first: a call it does not allow is never made (and has no event)."""
        share = self._budget.take("a call to " + self.model) if self._budget is not None else None
        for llm in (self, *self._fallbacks):
            llm._request_timeout = share if share is not None and share < getattr(llm, "timeout", float("inf")) else None
        with llm_call_context() as call_id:
            self._emit_call_started_event(
                messages=cast("list[LLMMessage]", normalized),
                tools=tools,
                callbacks=callbacks,
                available_functions=available_functions,
                from_task=from_task,
                from_agent=from_agent,
            )
            started = time.perf_counter()
            try:
                completion, text, model = produce()
            except Exception as exc:
                self._account(call_id, time.perf_counter() - started)
                self._emit_call_failed_event(error=f"{type(exc).__name__}: {exc}", from_task=from_task, from_agent=from_agent)
                raise
            self._account(call_id, time.perf_counter() - started)
            usage = usage_of(completion)
            self._track_token_usage_internal(usage)
            row = self._by_model.setdefault(model, [0, 0, 0, 0])
            row[0] += completion.prompt_tokens
            row[1] += completion.completion_tokens
            row[2] += completion.cached_tokens
            row[3] += 1
            primary = self.model
            self.model = model  # the event (and so the audit row) names the model that answered, a fallback's too
            try:
                self._emit_call_completed_event(
                    response=text,
                    call_type=LLMCallType.LLM_CALL,
                    from_task=from_task,
                    from_agent=from_agent,
                    messages=cast("list[LLMMessage]", normalized),
                    usage=usage,
                )
            finally:
                self.model = primary
            return text

    def _account(self, call_id: str, elapsed: float) -> None:
        self._seconds += elapsed
        self._durations[call_id] = elapsed * 1000


_TOOL_NAME = re.compile(r"^Tool Name: *(\S+) *$", re.M)
# The action's name is everything up to "Action Input:", as CrewAI reads it: it may run over several lines.
_ACTION = re.compile(r"^(Action: *)(.+?)[ \t]*(?=\n+Action Input:|\Z)", re.M | re.S)


def repair_action(text: str, messages: list[dict[str, str]]) -> str:
    """Small models write `Action: find_user_id_by_email with their e-mail` after reading a prompt that says so.
    When the action line starts with an offered tool's name and goes on with words, keep the name (the longest): CrewAI
    would otherwise answer "tool not found" to the same line until it gives up on the task."""
    match = _ACTION.search(text)
    if match is None:
        return text
    offered = {name for m in messages for name in _TOOL_NAME.findall(m.get("content") or "")}
    action = match.group(2).strip().strip("`'\"")
    if offered and action not in offered:
        starts = [name for name in offered if re.match(re.escape(name) + r"\b", action)]
        if not starts:
            return text
        action = max(starts, key=len)
    return text if action == match.group(2) else text[: match.start(2)] + action + text[match.end(2) :]


def rough_token_count(text: str) -> int:
    """Used only where a provider reports no usage (the scripted model)."""
    return max(1, len(text) // 4)
