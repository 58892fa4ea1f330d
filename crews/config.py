"""Load agents/*.yaml and tasks/*.yaml and check them against what the code expects."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel

from crewdesk.errors import CrewdeskError
from crewdesk.llm.factory import TIERS
from crewdesk.tickets.schemas import Resolution, Triage
from tools.registry import REGISTRY as TOOL_REGISTRY

OUTPUT_MODELS: dict[str, type[BaseModel]] = {"Triage": Triage, "Resolution": Resolution}
SPECIALIST_BY_CATEGORY = {"billing": "billing", "technical": "technical", "account": "account", "other": "general"}
REQUIRED_ROLES = frozenset({"routing", "escalation", "manager", *SPECIALIST_BY_CATEGORY.values()})
COWORKERS = ("billing", "technical", "account", "general", "escalation")  # whom a hierarchical manager may delegate to
# The hand-over to a person is a template and one bounded model call (crews/handoff.py), not a task: it must not loop.
REQUIRED_TASKS = {"triage": {"ticket"}, "resolve": {"ticket", "triage"}}
ROLE_KEYS = {"role", "goal", "backstory", "tier", "tools", "max_iter", "max_delegations"}
TASK_KEYS = {"agent", "output", "description", "expected_output"}
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class ConfigError(CrewdeskError):
    pass


@dataclass(frozen=True)
class RoleSpec:
    key: str
    role: str
    goal: str
    backstory: str
    tier: str
    tools: tuple[str, ...]
    max_iter: int
    max_delegations: int = 0


@dataclass(frozen=True)
class TaskSpec:
    key: str
    agent: str
    output: type[BaseModel]
    description: str
    expected_output: str

    def render(self, **values: str) -> str:
        """Fill only our placeholders; braces in a customer's text are left alone."""
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), self.description)


@dataclass(frozen=True)
class CrewConfig:
    roles: dict[str, RoleSpec]
    tasks: dict[str, TaskSpec]

    @property
    def permissions(self) -> dict[str, frozenset[str]]:
        return {key: frozenset(spec.tools) for key, spec in self.roles.items()}


def _read_yaml_dir(directory: Path) -> dict[str, dict]:
    if not directory.is_dir():
        raise ConfigError(f"{directory}: not a directory")
    merged: dict[str, dict] = {}
    for path in sorted(directory.glob("*.y*ml")):
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(content, dict):
            raise ConfigError(f"{path}: expected a mapping of names to definitions")
        for key, value in content.items():
            if key in merged:
                raise ConfigError(f"{path}: '{key}' is defined twice")
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: '{key}' must be a mapping")
            merged[key] = value
    return merged


def load_config(agents_dir: Path, tasks_dir: Path) -> CrewConfig:
    problems: list[str] = []
    roles: dict[str, RoleSpec] = {}
    for key, raw in _read_yaml_dir(agents_dir).items():
        unknown = set(raw) - ROLE_KEYS
        missing = {"role", "goal", "backstory", "tier"} - set(raw)
        if unknown:
            problems.append(f"agent '{key}': unknown keys {sorted(unknown)}")
        if missing:
            problems.append(f"agent '{key}': missing keys {sorted(missing)}")
            continue
        tools = tuple(raw.get("tools") or ())
        for tool in tools:
            if tool not in TOOL_REGISTRY:
                problems.append(f"agent '{key}': unknown tool '{tool}' (known: {sorted(TOOL_REGISTRY)})")
        if raw["tier"] not in TIERS:
            problems.append(f"agent '{key}': tier must be one of {TIERS}")
        roles[key] = RoleSpec(
            key,
            str(raw["role"]).strip(),
            str(raw["goal"]).strip(),
            str(raw["backstory"]).strip(),
            raw["tier"],
            tools,
            int(raw.get("max_iter", 5)),
            int(raw.get("max_delegations", 0)),
        )
    if "manager" in roles and roles["manager"].tools:
        problems.append("agent 'manager': a hierarchical manager may not have tools (CrewAI gives it delegation only)")
    if "manager" in roles and roles["manager"].max_delegations < 1:
        problems.append("agent 'manager': max_delegations must be at least 1")
    for key in sorted(REQUIRED_ROLES - set(roles)):
        problems.append(f"agents: role '{key}' is required by the crew")

    tasks: dict[str, TaskSpec] = {}
    for key, raw in _read_yaml_dir(tasks_dir).items():
        unknown = set(raw) - TASK_KEYS
        missing = TASK_KEYS - set(raw)
        if unknown:
            problems.append(f"task '{key}': unknown keys {sorted(unknown)}")
        if missing:
            problems.append(f"task '{key}': missing keys {sorted(missing)}")
            continue
        if raw["output"] not in OUTPUT_MODELS:
            problems.append(f"task '{key}': output must be one of {sorted(OUTPUT_MODELS)}")
            continue
        if raw["agent"] != "by_category" and raw["agent"] not in roles:
            problems.append(f"task '{key}': agent '{raw['agent']}' is not defined in agents/")
        used = set(_PLACEHOLDER.findall(raw["description"]))
        expected = REQUIRED_TASKS.get(key)
        if expected is not None and used != expected:
            problems.append(f"task '{key}': placeholders {sorted(used)} != expected {sorted(expected)}")
        tasks[key] = TaskSpec(key, raw["agent"], OUTPUT_MODELS[raw["output"]], raw["description"], raw["expected_output"])
    for key in sorted(set(REQUIRED_TASKS) - set(tasks)):
        problems.append(f"tasks: task '{key}' is required by the crew")
    if problems:
        raise ConfigError("crew configuration is invalid:\n  " + "\n  ".join(problems))
    return CrewConfig(roles=roles, tasks=tasks)
