"""Delegation tools for a hierarchical manager, with a hard cap: managers are known to loop."""

from __future__ import annotations

import threading
from typing import Any

from crewai.tools.agent_tools.ask_question_tool import AskQuestionTool
from crewai.tools.agent_tools.delegate_work_tool import DelegateWorkTool
from crewai.utilities.i18n import I18N_DEFAULT
from pydantic import PrivateAttr


class DelegationBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.refused = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                self.refused += 1
                return False
            self.used += 1
            return True


LIMIT_MESSAGE = "Delegation limit reached ({limit} per ticket). Do not delegate again: give your Final Answer now, from what your coworkers already reported."


def _refusal(budget: DelegationBudget) -> str | None:
    """Each use of a capped agent tool takes one delegation from the shared budget: None when it got one, else the
    answer the manager reads instead."""
    if not budget.take():
        return LIMIT_MESSAGE.format(limit=budget.limit)
    return None


class CappedDelegateWorkTool(DelegateWorkTool):
    _budget: DelegationBudget = PrivateAttr()

    def _run(self, *args: Any, **kwargs: Any) -> str:
        refusal = _refusal(self._budget)
        return refusal if refusal is not None else super()._run(*args, **kwargs)


class CappedAskQuestionTool(AskQuestionTool):
    _budget: DelegationBudget = PrivateAttr()

    def _run(self, *args: Any, **kwargs: Any) -> str:
        refusal = _refusal(self._budget)
        return refusal if refusal is not None else super()._run(*args, **kwargs)


def capped_agent_tools(agents: list, budget: DelegationBudget) -> list:
    coworkers = ", ".join(agent.role for agent in agents)
    delegate = CappedDelegateWorkTool(agents=agents, description=_tool_text("delegate_work").format(coworkers=coworkers))
    ask = CappedAskQuestionTool(agents=agents, description=_tool_text("ask_question").format(coworkers=coworkers))
    delegate._budget = budget
    ask._budget = budget
    return [delegate, ask]


def _tool_text(name: str) -> str:
    """CrewAI's prompt text for one of its agent tools (its i18n lookup may return a mapping; these keys hold text)."""
    text = I18N_DEFAULT.tools(name)
    if not isinstance(text, str):
        raise TypeError(f"CrewAI's {name!r} tool prompt is not a string")
    return text
