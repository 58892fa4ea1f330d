"""Build a one-task crew per phase of a ticket, from the YAML specs, with fresh LLMs and governed tools."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from crewai import Agent, Crew, Process, Task
from crewai.agents.agent_builder.base_agent import BaseAgent
from crewai.crews.crew_output import CrewOutput
from pydantic import BaseModel, PrivateAttr, ValidationError
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.audit import service as audit
from crewdesk.db import transaction
from crewdesk.effects import service as effects
from crewdesk.errors import ModelOutputError
from crewdesk.llm import react
from crewdesk.llm.base import CallBudget, CrewdeskLLM
from crewdesk.llm.factory import LLMFactory
from crewdesk.llm.output import json_guardrail, parse_model_output
from crewdesk.tickets.models import Ticket
from crewdesk.tickets.promises import unbacked_claims
from crewdesk.tickets.schemas import Resolution
from crews import audit_listener
from crews.config import COWORKERS, CrewConfig
from crews.delegation import DelegationBudget, capped_agent_tools
from tools.gate import Gate
from tools.registry import REGISTRY


@dataclass
class PhaseLedger:
    """The LLMs a ticket's run created, so tokens and model time add up per run and never across tickets."""

    llms: list[CrewdeskLLM] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)

    @property
    def tokens_in(self) -> int:
        return sum(llm.get_token_usage_summary().prompt_tokens for llm in self.llms)

    @property
    def tokens_out(self) -> int:
        return sum(llm.get_token_usage_summary().completion_tokens for llm in self.llms)

    @property
    def tokens_cached(self) -> int:
        return sum(llm.get_token_usage_summary().cached_prompt_tokens for llm in self.llms)

    @property
    def calls(self) -> int:
        return sum(llm.get_token_usage_summary().successful_requests for llm in self.llms)

    @property
    def llm_seconds(self) -> float:
        return sum(llm.llm_seconds for llm in self.llms)

    def per_model(self) -> dict[str, tuple[int, int]]:
        """Tokens by the model that answered each call: a fallback model's calls (CREWDESK_LLM_FALLBACK) are priced as its
        own. Each fallback that answered is also named in `models`, as "fallback for <model>", for the run row written
        with these totals."""
        totals: dict[str, tuple[int, int]] = {}
        for llm in self.llms:
            for model, (tokens_in, tokens_out) in llm.usage_by_model().items():
                before = totals.get(model, (0, 0))
                totals[model] = (before[0] + tokens_in, before[1] + tokens_out)
                if model != llm.model:
                    named = self.models.get(f"fallback for {llm.model}", "")
                    self.models[f"fallback for {llm.model}"] = ", ".join(sorted({*filter(None, named.split(", ")), model}))
        return totals


def ticket_block(ticket: Ticket, text: str) -> str:
    """The ticket as the crew and the procedures read it: its header, then the conversation (text)."""
    return f"Ticket #{ticket.id}\nSubject: {ticket.subject or '(none)'}\nCustomer: {ticket.customer or '(unknown)'}\n\n{text}"


@dataclass
class Work:
    """One run of one ticket, handed from phase to phase: the ticket row (read here, changed only in transactions), what
    the run has read of its conversation, and the run's governance and accounting. Nothing is attached to the ORM row."""

    ticket: Ticket
    run_id: int
    text: str  # the whole thread when the ticket has follow-ups, else the first message
    read_up_to: int  # id of the last inbound message this run has read (a later one reopens the ticket)
    gate: Gate
    ledger: PhaseLedger = field(default_factory=lambda: PhaseLedger())
    recalled: str = ""  # the same customer's earlier tickets, from memory, for the crew's context
    budget: CallBudget | None = None  # the run's model calls and wall time, shared by every LLM it builds
    # A conversation's bookkeeping, done by finish_run in the transaction that ends the run, so a run that dies midway
    # leaves the question open and its answer unread: (question id, last answer message id) this run answers, and the
    # state of the question it asks when it ends waiting on the customer.
    answering: tuple[int, int] | None = None
    asking: dict[str, Any] | None = None

    def block(self) -> str:
        return ticket_block(self.ticket, self.text)


class _NoTaskOutputs:
    """Stands in for CrewAI's TaskOutputStorageHandler, which keeps every kickoff's task outputs in one SQLite file under
    CREWAI_STORAGE_DIR for `crewai replay`. crewdesk never replays a crew (its runs and audit trail are in the database),
    that file would be a copy of customers' tickets outside erasure, and every kickoff wrote it (table set-up, delete,
    read and insert: about 6 ms per crew, and one file shared by every worker child)."""

    def reset(self) -> None:
        pass

    def update(self, task_index: int, log: dict[str, Any]) -> None:
        pass

    def add(self, *args: Any, **kwargs: Any) -> None:
        pass

    def load(self) -> None:
        return None


class PhaseCrew(Crew):
    """A CrewAI Crew that does not write its task outputs to CrewAI's replay file (see _NoTaskOutputs)."""

    _task_output_handler: Any = PrivateAttr(default_factory=_NoTaskOutputs)


def _memoize_tool_descriptions() -> None:
    """CrewAI renders each tool's prompt text (name, JSON schema of its arguments, description) from scratch for every
    agent it builds: about 1 ms per tool, 16 tools for a specialist. The text is a pure function of those three, so it
    is memoised per process. A CrewAI without that function is left alone."""
    from crewai.tools import base_tool, structured_tool

    original = getattr(structured_tool, "format_description_for_llm", None)
    if original is None or getattr(original, "cache_info", None) is not None:
        return
    cached = functools.lru_cache(maxsize=1024)(original)

    @functools.wraps(original)
    def format_description_for_llm(name: str, args_schema: Any, description: str) -> str:
        try:
            return cached(name, args_schema, description)
        except TypeError:  # an unhashable schema: render it as CrewAI does
            return original(name, args_schema, description)

    format_description_for_llm.cache_info = cached.cache_info  # type: ignore[attr-defined]
    for module in (structured_tool, base_tool):
        if getattr(module, "format_description_for_llm", None) is original:
            setattr(module, "format_description_for_llm", format_description_for_llm)  # noqa: B010 - an attribute not every CrewAI has


_memoize_tool_descriptions()

_STEP_SCHEMAS: dict[tuple, dict[str, Any]] = {}


def constrain(agent: Agent, answer: type[BaseModel] | None) -> None:
    """Each of the agent's ReAct steps is decoded against its own tools and its task's output (where the provider
    supports it, see CrewdeskLLM.constrain_react)."""
    assert isinstance(agent.llm, CrewdeskLLM), "crewdesk agents always get a crewdesk LLM"
    constrain_llm(agent.llm, agent.tools or [], answer)


def constrain_llm(llm: CrewdeskLLM, tools: Sequence[Any], answer: type[BaseModel] | None) -> None:
    """The schema depends only on the tools' names and argument models and on the output model, so it is built once per
    process for each combination (about 4 ms per agent otherwise) and shared read-only."""
    key = (tuple((tool.name, getattr(tool, "args_schema", None)) for tool in tools), answer)
    schema = _STEP_SCHEMAS.get(key)
    if schema is None:
        schema = _STEP_SCHEMAS[key] = react.step_schema(tools, answer)
    llm.react_schema = schema


@functools.cache
def _schema_text(output: type[BaseModel]) -> str:
    return json.dumps(output.model_json_schema(), indent=2)


def direct_prompt(description: str, expected_output: str, output: type[BaseModel]) -> str:
    """A task as CrewAI words it for an agent without tools, with its output model's schema."""
    schema = _schema_text(output)
    return (
        f"\nCurrent Task: {description}\n\nThis is the expected criteria for your final answer: {expected_output}\n"
        "you MUST return the actual complete content as the final answer, not a summary.\n"
        f"Format your final answer according to the following OpenAPI schema: {schema}\n\n"
        "Do not include the OpenAPI schema in the final output. Ensure the final output does not include any code block markers like ```json or ```python."
        "\n\nProvide your complete response:"
    )


class CrewBuilder:
    def __init__(
        self, *, config: CrewConfig, llm_factory: LLMFactory, session_factory: sessionmaker[Session], tool_dependencies: dict[str, dict[str, Any]] | None = None
    ) -> None:
        self.config = config
        self.llm_factory = llm_factory
        self.session_factory = session_factory
        # what a tool needs beyond the gate, by tool name: e.g. {"kb_search": {"knowledge": <MemoryBackend>, "k": 4}}
        self.tool_dependencies = tool_dependencies or {}

    def agent(
        self,
        *,
        role_key: str,
        ticket: Ticket,
        run_id: int,
        gate: Gate,
        ledger: PhaseLedger,
        manager_tools: list | None = None,
        budget: CallBudget | None = None,
    ) -> Agent:
        spec = self.config.roles[role_key]
        llm = self.llm_factory.build(tier=spec.tier, ticket_id=ticket.id, run_id=run_id).within(budget)
        ledger.llms.append(llm)
        ledger.models[role_key] = llm.model
        tools = (
            manager_tools
            if manager_tools is not None
            else [REGISTRY[name](gate=gate, role=role_key, customer=ticket.customer, **self.tool_dependencies.get(name, {})) for name in spec.tools]
        )
        return Agent(
            role=spec.role,
            goal=spec.goal,
            backstory=spec.backstory,
            llm=llm,
            tools=tools,
            max_iter=spec.max_iter,
            max_retry_limit=0,  # transient failures are retried once, by Celery, for the whole ticket
            allow_delegation=manager_tools is not None,
            verbose=False,
            cache=False,
        )

    def performed_tools(self, ticket_id: int) -> set[str]:
        with self.session_factory() as db:
            return {effect.tool for effect in effects.for_ticket(db=db, ticket_id=ticket_id)}

    def guardrail(self, model: type[BaseModel], *, ticket_id: int):
        """Valid JSON for `model`; for a resolution also no claim of an action that no tool performed."""
        check_json = json_guardrail(model)
        if model is not Resolution:
            return check_json

        def guardrail(output):  # unannotated on purpose, see json_guardrail
            ok, value = check_json(output)
            if not ok:
                return ok, value
            claims = unbacked_claims(Resolution.model_validate_json(value).customer_reply, self.performed_tools(ticket_id))
            if claims:
                return False, (
                    f"The reply claims a {', '.join(claims)} that no tool performed. Either perform it with the right tool, "
                    "or rewrite the reply so it does not say it was done."
                )
            return True, value

        guardrail.__name__ = "resolution_guardrail"
        return guardrail

    def run_phase(self, *, task_key: str, role_key: str, work: Work, values: dict[str, str]) -> BaseModel:
        """Kick off one task with one agent and return its validated pydantic output. A role with no tools (the router)
        answers in one model call, without a crew (see answer_directly)."""
        if not self.config.roles[role_key].tools:
            return self.answer_directly(task_key=task_key, role_key=role_key, work=work, values=values)
        agent = self.agent(role_key=role_key, ticket=work.ticket, run_id=work.run_id, gate=work.gate, ledger=work.ledger, budget=work.budget)
        constrain(agent, self.config.tasks[task_key].output)
        task = self._task(task_key, work=work, values=values, agent=agent)
        return self._kickoff(PhaseCrew(agents=[agent], tasks=[task], process=Process.sequential, verbose=False, memory=False), task_key)

    def answer_directly(self, *, task_key: str, role_key: str, work: Work, values: dict[str, str]) -> BaseModel:
        """A phase whose role has no tools: one model call with the prompt CrewAI would build from the same YAML (role,
        backstory, goal, task, expected output, output schema), decoded against the output model where the provider
        can, its answer checked by the task's guardrail and retried once with the guardrail's reason, as a crew task
        would be. Audited as a crew's calls are: the model call under the role's name, the guardrail's verdict.
        A CrewAI crew around one call without tools costs about as much orchestration as the specialist's whole crew
        (bench/pipeline.py: about 90 ms a ticket) and adds nothing a single call does not do."""
        spec, task = self.config.roles[role_key], self.config.tasks[task_key]
        llm = self.llm_factory.build(tier=spec.tier, ticket_id=work.ticket.id, run_id=work.run_id).within(work.budget)
        work.ledger.llms.append(llm)
        work.ledger.models[role_key] = llm.model
        constrain_llm(llm, (), task.output)
        caller = SimpleNamespace(role=spec.role, id=f"{role_key}:{work.run_id}")  # what CrewAI's events read of an agent
        task_ref = SimpleNamespace(id=f"{task_key}:{work.run_id}", name=task_key, description=task_key, agent=caller)
        messages = [
            {"role": "system", "content": f"You are {spec.role}. {spec.backstory}\nYour personal goal is: {spec.goal}"},
            {"role": "user", "content": direct_prompt(work.gate.vault.conceal(task.render(ticket=work.block(), **values)), task.expected_output, task.output)},
        ]
        guardrail = self.guardrail(task.output, ticket_id=work.ticket.id)
        verdict: Any = None
        for attempt in range(2):  # the answer, and one retry (guardrail_max_retries=1 on the crew's tasks)
            raw = llm.call(messages, from_agent=caller, from_task=task_ref)
            ok, verdict = guardrail(SimpleNamespace(raw=raw))
            audit_listener.flush()  # the call's own row first, so the trail reads in order
            with transaction(self.session_factory) as db:  # the verdict, as the audit listener records a crew task's
                audit.record(
                    db=db,
                    ticket_id=work.ticket.id,
                    run_id=work.run_id,
                    kind="llm",
                    name="llm_guardrail_completed",
                    actor=spec.role,
                    arguments={"task_name": task_key, "guardrail_name": guardrail.__name__, "retry_count": attempt, "success": ok},
                    result=verdict if ok else None,
                    error=None if ok else verdict,
                )
            if ok:
                return task.output.model_validate_json(verdict)
            messages = [*messages, {"role": "assistant", "content": raw}, {"role": "user", "content": f"{verdict}\n\nProvide your complete response:"}]
        raise ModelOutputError(f"the model's {task_key} answer does not fit {task.output.__name__}: {verdict}")

    def _task(self, task_key: str, *, work: Work, values: dict[str, str], agent: Agent | None = None) -> Task:
        """The task from YAML, its text concealed, its output validated (JSON, and no unbacked claims)."""
        spec = self.config.tasks[task_key]
        return Task(
            name=task_key,
            description=work.gate.vault.conceal(spec.render(ticket=work.block(), **values)),
            expected_output=spec.expected_output,
            agent=agent,
            output_pydantic=spec.output,
            guardrail=self.guardrail(spec.output, ticket_id=work.ticket.id),
            guardrail_max_retries=1,
        )

    def _kickoff(self, crew: Crew, task_key: str) -> BaseModel:
        model = self.config.tasks[task_key].output
        try:
            result = crew.kickoff()
        except ValidationError as exc:  # CrewAI's conversion of the final answer to the task's output model
            raise ModelOutputError(f"the model's {task_key} answer does not fit {model.__name__}: {exc}") from exc
        if not isinstance(result, CrewOutput):  # a streaming crew returns a stream; ours never stream
            raise TypeError(f"crew kickoff returned {type(result).__name__}, not a CrewOutput")
        return result.pydantic if isinstance(result.pydantic, model) else parse_model_output(result.raw, model)

    def run_hierarchical(self, *, work: Work, values: dict[str, str]) -> tuple[BaseModel, DelegationBudget]:
        """A manager delegates parts of the resolution to the specialists; each acts only through its own tools.
        Iterations (YAML max_iter) and delegations (max_delegations) are capped."""
        ticket, run_id, gate, ledger = work.ticket, work.run_id, work.gate, work.ledger
        specialists = [self.agent(role_key=key, ticket=ticket, run_id=run_id, gate=gate, ledger=ledger, budget=work.budget) for key in COWORKERS]
        for specialist in specialists:
            constrain(specialist, None)  # a coworker reports back in words; the manager writes the resolution
        coworkers: list[BaseAgent] = list(specialists)
        budget = DelegationBudget(self.config.roles["manager"].max_delegations)
        manager = self.agent(
            role_key="manager", ticket=ticket, run_id=run_id, gate=gate, ledger=ledger, manager_tools=capped_agent_tools(coworkers, budget), budget=work.budget
        )
        constrain(manager, self.config.tasks["resolve"].output)
        task = self._task("resolve", work=work, values=values)
        crew = PhaseCrew(agents=coworkers, tasks=[task], process=Process.hierarchical, manager_agent=manager, verbose=False, memory=False)
        return self._kickoff(crew, "resolve"), budget
