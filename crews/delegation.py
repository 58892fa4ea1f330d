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


class _Capped:
    """Mixed in before a CrewAI agent tool: each use takes one delegation from the shared budget."""

    def _run(self, *args: Any, **kwargs: Any) -> str:
        if not self._budget.take():
            return LIMIT_MESSAGE.format(limit=self._budget.limit)
        return super()._run(*args, **kwargs)


class CappedDelegateWorkTool(_Capped, DelegateWorkTool):
    _budget: DelegationBudget = PrivateAttr()


class CappedAskQuestionTool(_Capped, AskQuestionTool):
    _budget: DelegationBudget = PrivateAttr()


def capped_agent_tools(agents: list, budget: DelegationBudget) -> list:
    coworkers = ", ".join(agent.role for agent in agents)
    delegate = CappedDelegateWorkTool(agents=agents, description=I18N_DEFAULT.tools("delegate_work").format(coworkers=coworkers))
    ask = CappedAskQuestionTool(agents=agents, description=I18N_DEFAULT.tools("ask_question").format(coworkers=coworkers))
    delegate._budget = budget
    ask._budget = budget
    return [delegate, ask]
