"""The hand-over's template (crews/handoff.py): which team a reason goes to, and the customer's words on one line."""

from __future__ import annotations

import pytest

from crewdesk.errors import BudgetExhausted
from crewdesk.llm.base import CallBudget
from crews.handoff import quoted, rules_in, team_for


@pytest.mark.parametrize(
    ("reason", "category", "team"),
    [
        ('legal_threat: "my lawyer will file"; low_confidence: 0.20 < 0.35', "billing", "legal"),
        ('low_confidence: 0.20 < 0.35; security: "hacked" (risk classifier 0.9)', "technical", "security"),
        ("injection: fake system message", None, "security"),
        ("billing model gave no valid resolution (...)", "billing", "billing_ops"),
        ("the gate refused cancel_pending_order (identity_unproven)", "account", "tier2"),
    ],
)
def test_the_first_rule_with_a_team_decides_else_the_category(reason, category, team):
    assert team_for(reason, category) == team


def test_rule_names_are_read_from_each_part_of_a_reason():
    assert rules_in('self_harm: "..."; threat: "..."') == ["self_harm", "threat"]
    assert rules_in("the gate refused x (y)") == []


def test_the_customers_words_are_one_line_cut_at_a_word():
    text = "Hello,\n\n" + "word " * 200
    line = quoted(text, limit=50)
    assert "\n" not in line and line.endswith(" …") and len(line) <= 52 and line.startswith("Hello, word")


def test_a_budget_allows_its_calls_and_its_time_then_refuses():
    now = [0.0]
    budget = CallBudget(max_calls=2, seconds=10.0, clock=lambda: now[0])
    assert budget.take("first") == 10.0
    now[0] = 4.0
    assert budget.take("second") == 6.0
    with pytest.raises(BudgetExhausted, match="2 model calls"):
        budget.take("third")
    late = CallBudget(max_calls=5, seconds=1.0, clock=lambda: now[0])
    now[0] += 1.5
    with pytest.raises(BudgetExhausted, match="1 s for model calls are up"):
        late.take("late")
