"""The YAML in agents/ and tasks/ and the code agree; every crew builds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from crewai import Agent

from crewdesk.llm.factory import LLMFactory
from crewdesk.tickets.models import Ticket
from crews.builder import CrewBuilder, PhaseLedger
from crews.config import (
    REQUIRED_ROLES,
    SPECIALIST_BY_CATEGORY,
    ConfigError,
    load_config,
)
from tools.gate import Gate
from tools.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(settings):
    return load_config(settings.agents_dir, settings.tasks_dir)


def test_every_role_builds_an_agent_with_its_allowed_tools(config, settings, session_factory):
    builder = CrewBuilder(config=config, llm_factory=LLMFactory(settings), session_factory=session_factory)
    ticket = Ticket(id=1, source="t", external_id="1", customer="a@example.com", subject="s", body="b")
    gate = Gate(session_factory=session_factory, ticket_id=1, run_id=1, permissions=config.permissions)
    ledger = PhaseLedger()
    for key, spec in config.roles.items():
        agent = builder.agent(role_key=key, ticket=ticket, run_id=1, gate=gate, ledger=ledger)
        assert isinstance(agent, Agent)
        assert [tool.name for tool in agent.tools] == list(spec.tools)
        assert agent.llm.tier == spec.tier and agent.max_retry_limit == 0
    assert set(ledger.models) == set(config.roles)
    assert len({id(llm) for llm in ledger.llms}) == len(config.roles)  # one LLM per agent, never shared


def test_yaml_keys_match_the_code(config):
    assert set(config.roles) >= REQUIRED_ROLES
    assert set(SPECIALIST_BY_CATEGORY.values()) <= set(config.roles)
    assert set(config.tasks) == {"triage", "resolve"}  # a hand-over is crews/handoff.py, not a task
    assert config.roles["routing"].tier == "cheap"
    for spec in config.roles.values():
        assert set(spec.tools) <= set(REGISTRY)


def test_placeholders_are_filled_and_customer_braces_survive(config):
    text = config.tasks["triage"].render(ticket="Body with {braces} and {ticket}")
    assert "Body with {braces} and {ticket}" in text and "<ticket>" in text


def copy_config(tmp_path: Path) -> tuple[Path, Path]:
    agents, tasks = tmp_path / "agents", tmp_path / "tasks"
    shutil.copytree(ROOT / "agents", agents)
    shutil.copytree(ROOT / "tasks", tasks)
    return agents, tasks


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a, t: a["billing"].update(tools=["issue_refund_now"]), "unknown tool 'issue_refund_now'"),
        (lambda a, t: a.pop("escalation"), "role 'escalation' is required"),
        (lambda a, t: a["routing"].update(tier="gold"), "tier must be one of"),
        (lambda a, t: a["routing"].update(temperature=0.3), "unknown keys ['temperature']"),
        (lambda a, t: t["resolve"].update(description="Solve {ticket}"), "placeholders ['ticket'] != expected ['ticket', 'triage']"),
        (lambda a, t: t["triage"].update(output="Verdict"), "output must be one of"),
        (lambda a, t: t["resolve"].update(agent="supervisor"), "agent 'supervisor' is not defined"),
        (lambda a, t: a["manager"].update(tools=["calculate"]), "a hierarchical manager may not have tools"),
    ],
)
def test_stale_or_wrong_yaml_is_refused_with_a_clear_message(tmp_path, edit, message):
    agents_dir, tasks_dir = copy_config(tmp_path)
    agents = yaml.safe_load((agents_dir / "agents.yaml").read_text())
    tasks = yaml.safe_load((tasks_dir / "tasks.yaml").read_text())
    edit(agents, tasks)
    (agents_dir / "agents.yaml").write_text(yaml.safe_dump(agents))
    (tasks_dir / "tasks.yaml").write_text(yaml.safe_dump(tasks))
    with pytest.raises(ConfigError) as info:
        load_config(agents_dir, tasks_dir)
    assert message in str(info.value)
