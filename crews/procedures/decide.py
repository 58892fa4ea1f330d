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


# Last words that say too little alone ("set" of a dumbbell set or a luggage set): the word before them must be there too.
GENERIC = frozenset({"set", "kit", "machine", "maker", "bag", "case", "pack", "system", "stand", "holder"})


def _match(item: Item, tokens: set[str], compact: str) -> tuple[int, str]:
    """(strength, word): 3 the full name (or run together), 2 its last word, 1 a word the last one ends with ("watch" in
    "Wristwatch"); 0 not named."""
    words = [_norm(w) for w in _WORD.findall(item.name)]
    if not words:
        return 0, ""
    head = words[-1]
    if all(w in tokens for w in words) or "".join(words) in compact:
        return 3, head
    if head in GENERIC:
        return (2, head) if len(words) > 1 and words[-2] in tokens else (0, "")
    if head in tokens:
        return 2, head
    suffix = next((t for t in tokens if len(t) >= 4 and head.endswith(t)), None)
    return (1, suffix) if suffix else (0, "")


def mentioned_items(items: list[Item], text: str) -> list[Item]:
    """The items the customer named. A weaker match gives way to a stronger one on the same word: "smart watch" names the
    Smart Watch, not the Wristwatch as well."""
    tokens, compact = _tokens(text), "".join(_WORD.findall(text.lower()))
    matches = {item.item_id + item.order_id: _match(item, tokens, compact) for item in items}
    best: dict[str, int] = {}
    for strength, word in matches.values():
        if strength:
            best[word] = max(best.get(word, 0), strength)
    return [item for item in items if (m := matches[item.item_id + item.order_id])[0] and m[0] == best[m[1]]]


def named_orders(text: str) -> set[str]:
    return {"#" + m.group(0).lstrip("#") for m in ORDER_ID.finditer(text)}


# A fast first pass on the customer's verbs: when only one kind is there, the other request is not offered for an item.
VERBS = {
    "cancel_order": re.compile(r"cancel|storn|cancelar|anular|annul|no longer need|don't need|do not need", re.I),
    "return_items": re.compile(r"return|refund|(send|take) (it |them )?back|zurück|erstatt|devol|reembols|retourn|rembours", re.I),
    "exchange_items": re.compile(r"exchang|swap|replac|switch|upgrade|instead|tausch|cambi|échang|remplac", re.I),
    "modify_order": re.compile(r"exchang|swap|replac|switch|upgrade|instead|modif|chang|tausch|änder|cambi|échang|remplac", re.I),
}


def options_for(item: Item, customer: Customer, procedures: list[ProcedureSpec], text: str = "") -> list[str]:
    status = next(o.status for o in customer.orders if o.order_id == item.order_id)
    options = [p.intent for p in procedures if status in p.orders]
    said = [intent for intent in options if intent in VERBS and VERBS[intent].search(text)]
    return said or options


def assign(*, llm: CrewdeskLLM, text: str, customer: Customer, procedures: list[ProcedureSpec]) -> dict[str, list[Item]]:
    """intent -> the items it applies to, for the item-level procedures of this ticket."""
    orders = named_orders(text)
    universal, exceptions = bool(UNIVERSAL.search(text)), bool(EXCEPT.search(text))
    settled: dict[str, list[Item]] = {p.intent: [] for p in procedures}
    asked: list[tuple[Item, list[str]]] = []
    named_items = {id(item) for item in mentioned_items([i for o in customer.orders for i in o.items], text)}
    for order in customer.orders:
        if orders and order.order_id not in orders:
            continue
        whole = order.order_id in orders and not any(id(item) in named_items for item in order.items)  # "cancel order #W…"
        for item in order.items:
            options = options_for(item, customer, procedures, text)
            if not options:
                continue
            named = id(item) in named_items or whole
            if named and len(options) == 1 and not exceptions:
                settled[options[0]].append(item)
            elif named or universal or exceptions:
                asked.append((item, options))
    if not any(settled.values()) and not asked:  # nothing named: the customer described the items; the model reads them all
        asked = [(item, options) for order in customer.orders for item in order.items
                 if (options := options_for(item, customer, procedures, text))]
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
