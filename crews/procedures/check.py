"""Verify before a write is made (issue 19): every item of a planned item write is put to the model as one yes/no
question against the customer's own words ("does the customer ask us to take back this item: ...?"), and the answer is
read as the probability of yes. A write with an item below the bar is not made on the reader's word alone: it is stated
to the customer for a yes (the flow's proposal), never dropped or changed here. The model checks a reading; it does not
read the request itself, so a check that cannot be made (no probabilities, a refusal) holds the write too.

Measured before it was built (`bench/verify_probe.py`, dev half, the items of the orders the expected writes touch):
the 1.5B ranks a meant item above a not-meant one of the same order 82% of the time, but its probabilities of the two
overlap widely (most between 0.4 and 0.8). The bars (an item below 0.3 holds its write; a named open order at 0.5 asks)
were chosen on audit runs of the dev and seventh halves and tau2 retail train (`bench/write_check.py`, README "The model checks the
reading"). It is a second reader that disagrees with the rules where they are most often wrong, not an oracle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from crews.procedures.state import Action, Item, Order

SYSTEM = "You check a support agent's work before it is done. Read the customer's message and answer the question with yes or no only."
MAX_CHECKED = 8  # item questions per ticket: a run's model budget is 30 calls
MAX_ORDERS = 3  # questions about orders the customer named and nothing was done about
OPEN = frozenset({"pending", "processed", "delivered"})  # orders a request could still change


class YesNo(Protocol):
    def yes_probability(self, messages: list[dict[str, str]], *, name: str, actor: str | None = None) -> float: ...


@dataclass(frozen=True)
class Verdict:
    item: Item
    p_yes: float


def question(action: Action, item: Item, status: str) -> str:
    order = action.order_id
    if action.tool == "cancel_pending_order":
        return f"Does the customer ask us to cancel the whole order {order} (with {item.name})?"
    verb = {
        "return_delivered_order_items": "take back (return) this item",
        "exchange_delivered_order_items": "exchange this item for another version of it",
        "modify_pending_order_items": "change this item to another version of it",
    }[action.tool]
    return f"Does the customer ask us to {verb}: {item.label()} from order {order} ({status})?"


def messages(text: str, asked: str) -> list[dict[str, str]]:
    """The customer's message first and the question last: the questions of one ticket share the prompt's prefix."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Customer's message:\n{text}\n\n{asked}"}]


def asked_about(action: Action) -> list[Item]:
    """The items a write's check asks about: each item, or one for a cancellation (it is the whole order's)."""
    return list(action.items)[:1] if action.tool == "cancel_pending_order" else list(action.items)


def verdicts(llm: YesNo, *, text: str, action: Action, status: str, limit: int) -> list[Verdict]:
    """One question per item asked about, at most `limit` of them."""
    return [Verdict(item, llm.yes_probability(messages(text, question(action, item, status)), name="check_write")) for item in asked_about(action)[:limit]]


def order_question(order: Order) -> str:
    items = ", ".join(i.name for i in order.items)
    return (
        f"Does the customer ask us to change something about order {order.order_id} ({order.status}; items: {items}): cancel it, "
        "change or return or exchange an item of it, or change where it ships?"
    )


def order_verdict(llm: YesNo, *, text: str, order: Order) -> float:
    return llm.yes_probability(messages(text, order_question(order)), name="check_order")


def record(action: Action, found: list[Verdict], *, min_yes: float, unchecked: int) -> dict[str, Any]:
    return {
        "tool": action.tool,
        "order_id": action.order_id,
        "items": [{"item": v.item.label(), "p_yes": round(v.p_yes, 3)} for v in found],
        "min_yes": min_yes,
        "unchecked": unchecked,
    }
