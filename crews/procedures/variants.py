"""Which variant of the same product an item is exchanged or changed to. The candidates are the product's available
variants (from the tool); option values the customer named narrow them in code, "cheapest" or "most expensive" picks by
price, and only a real choice left over goes to the model, as an enum of the remaining candidates (or none)."""

from __future__ import annotations

import re
from typing import Any

from crewdesk.llm.base import CrewdeskLLM
from crews.procedures.state import Item

NONE = "none"
MAX_CHOICES = 12
_CHEAPEST = re.compile(r"cheapest|least expensive|lowest price|günstigste|billigste|más barat|moins cher", re.I)
_PRICIEST = re.compile(r"most expensive|priciest|highest price|teuerste|más car|plus cher", re.I)
_WORD = re.compile(r"[^\W_]+")

SYSTEM = ("You assist the support team of an online store. The customer wants to exchange or change an item for another variant "
          "of the same product. Choose the numbered variant that matches what the customer asked for, keeping every option they "
          "did not ask to change where possible. Choose none if no variant fits their request.")


def _phrase(value: str) -> str:
    return " ".join(w.lower() for w in _WORD.findall(value))


def _named(value: str, text: str) -> bool:
    phrase = _phrase(value)
    return bool(phrase) and re.search(rf"(?<![^\W_]){re.escape(phrase)}(?![^\W_])", text) is not None


def candidates(item: Item, product: dict[str, Any]) -> list[Item]:
    return [Item(order_id=item.order_id, item_id=v["item_id"], product_id=item.product_id, name=item.name, options={k: str(x) for k, x in v["options"].items()},
                 price=float(v["price"])) for v in product["variants"].values() if v.get("available") and v["item_id"] != item.item_id]


def narrow(item: Item, pool: list[Item], text: str) -> list[Item]:
    """Apply each option value the customer named (one per option, different from what they have); a filter that would
    leave nothing is skipped. The rest are ordered by how few options change."""
    lowered = _phrase(text)
    for key in item.options:
        values = {candidate.options.get(key) for candidate in pool} - {item.options.get(key), None}
        named = [value for value in values if _named(value, lowered)]
        if len(named) == 1:
            kept = [candidate for candidate in pool if candidate.options.get(key) == named[0]]
            pool = kept or pool
        same = re.search(rf"\bsame {re.escape(_phrase(key))}\b", lowered)
        if same:
            kept = [candidate for candidate in pool if candidate.options.get(key) == item.options.get(key)]
            pool = kept or pool
    return sorted(pool, key=lambda c: (sum(c.options.get(k) != v for k, v in item.options.items()), c.price))


def choose(*, llm: CrewdeskLLM, text: str, item: Item, product: dict[str, Any]) -> Item | None:
    pool = narrow(item, candidates(item, product), text)
    if not pool:
        return None
    if _CHEAPEST.search(text) and not _PRICIEST.search(text):
        return min(pool, key=lambda c: c.price)
    if _PRICIEST.search(text) and not _CHEAPEST.search(text):
        return max(pool, key=lambda c: c.price)
    if len(pool) == 1:
        return pool[0]
    pool = pool[:MAX_CHOICES]
    current = ", ".join(f"{k} {v}" for k, v in item.options.items())
    lines = [f"{n}. " + ", ".join(f"{k} {v}" for k, v in c.options.items()) + f" (${c.price:.2f})" for n, c in enumerate(pool, 1)]
    schema = {"type": "object", "properties": {"variant": {"enum": [str(n) for n in range(1, len(pool) + 1)] + [NONE]}}, "required": ["variant"],
              "additionalProperties": False}
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Customer's message:\n{text}\n\nItem: {item.name} ({current}), ${item.price:.2f}\nVariants:\n" + "\n".join(lines)}]
    answer = llm.decide(messages, schema, name="choose_variant")["variant"]
    return None if answer == NONE else pool[int(answer) - 1]
