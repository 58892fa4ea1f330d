"""Which of the customer's items each request applies to. Plain cases are settled in code (the customer named the product
and only one request fits it); the rest is one model decision whose answer is an enum per item: the requests that fit
that item's order, or "keep". The model chooses among what the tools returned; it never types an id."""

from __future__ import annotations

import re
from typing import Any

from crewdesk.llm.base import CrewdeskLLM
from crews.procedures.facts import ORDER_ID
from crews.procedures.spec import ProcedureSpec
from crews.procedures.state import Customer, Item

KEEP = "keep"
MAX_ASKED = 14
_WORD = re.compile(r"[^\W_]+")
UNIVERSAL = re.compile(r"\b(all|every|everything|entire|whole|alle[sn]?|gesamte?|todos?|todas?|tout|toutes?|tous)\b", re.I)
EXCEPT = re.compile(r"\b(except|other than|apart from|but not|besides|außer|ausser|excepto|salvo|menos|sauf|hormis)\b", re.I)

SYSTEM = ("You assist the support team of an online store. The customer's message and the numbered items of their orders follow. "
          "For each item, choose what the customer asks to do with it. Choose keep when the customer does not ask to change that "
          "item, says to keep it, or excludes it. Requests:\n")


def _norm(word: str) -> str:
    word = word.lower()
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _tokens(text: str) -> set[str]:
    return {_norm(w) for w in _WORD.findall(text)}


def mentioned(item: Item, text: str) -> bool:
    """The customer named the product: its full name, its last word (keyboard, lamp, boots), or it run together (tshirt)."""
    words = [_norm(w) for w in _WORD.findall(item.name)]
    if not words:
        return False
    tokens = _tokens(text)
    compact = "".join(_WORD.findall(text.lower()))
    return words[-1] in tokens or "".join(words) in compact or any(len(t) >= 4 and words[-1].endswith(t) for t in tokens)


def named_orders(text: str) -> set[str]:
    return {"#" + m.group(0).lstrip("#") for m in ORDER_ID.finditer(text)}


def options_for(item: Item, customer: Customer, procedures: list[ProcedureSpec]) -> list[str]:
    status = next(o.status for o in customer.orders if o.order_id == item.order_id)
    return [p.intent for p in procedures if status in p.orders]


def assign(*, llm: CrewdeskLLM, text: str, customer: Customer, procedures: list[ProcedureSpec]) -> dict[str, list[Item]]:
    """intent -> the items it applies to, for the item-level procedures of this ticket."""
    orders = named_orders(text)
    universal, exceptions = bool(UNIVERSAL.search(text)), bool(EXCEPT.search(text))
    settled: dict[str, list[Item]] = {p.intent: [] for p in procedures}
    asked: list[tuple[Item, list[str]]] = []
    for order in customer.orders:
        if orders and order.order_id not in orders:
            continue
        for item in order.items:
            options = options_for(item, customer, procedures)
            if not options:
                continue
            named = mentioned(item, text) or order.order_id in orders
            if named and len(options) == 1 and not exceptions:
                settled[options[0]].append(item)
            elif named or universal or exceptions:
                asked.append((item, options))
    if not any(settled.values()) and not asked:  # nothing named: the customer described the items; the model reads them all
        asked = [(item, options_for(item, customer, procedures)) for order in customer.orders for item in order.items
                 if options_for(item, customer, procedures)]
    if asked:
        for intent, items in _ask(llm, text, customer, procedures, asked[:MAX_ASKED]).items():
            settled[intent].extend(items)
    return settled


def _ask(llm: CrewdeskLLM, text: str, customer: Customer, procedures: list[ProcedureSpec], asked: list[tuple[Item, list[str]]]) -> dict[str, list[Item]]:
    statuses = {o.order_id: o.status for o in customer.orders}
    lines = [f"{n}. {item.label()}, order {item.order_id} ({statuses[item.order_id]}), ${item.price:.2f}" for n, (item, _) in enumerate(asked, 1)]
    schema: dict[str, Any] = {"type": "object", "properties": {str(n): {"enum": [*options, KEEP]} for n, (_, options) in enumerate(asked, 1)},
                              "required": [str(n) for n in range(1, len(asked) + 1)], "additionalProperties": False}
    requests = "\n".join(f"- {p.intent}: {p.description}" for p in procedures)
    messages = [{"role": "system", "content": SYSTEM + requests + f"\n- {KEEP}: no change."},
                {"role": "user", "content": f"Customer's message:\n{text}\n\nItems:\n" + "\n".join(lines)}]
    answer = llm.decide(messages, schema, name="assign_items")
    chosen: dict[str, list[Item]] = {}
    for n, (item, _) in enumerate(asked, 1):
        if answer[str(n)] != KEEP:
            chosen.setdefault(answer[str(n)], []).append(item)
    return chosen
