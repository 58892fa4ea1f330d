"""The model's own reading of a ticket (issue 19, deliverable 2): one decision, decoded against a JSON schema whose
enums are this customer's records, that says what the customer asks of each open order and which items. The schema is
the grounding: one entry per open order of the customer (its number as the key), a kind of request that order's status
allows ("nothing" first; pending: cancel, change items, address, payment; delivered: return, exchange) and items of
that order only (their letters), so nothing outside the customer's records can be said. The rules' reading stays the
fast path; the flow compares its planned writes with this reading (`ProcedureFlow._cross_read`): a write the reading
does not hold is asked about, never guessed.

The prompt is short on purpose (the local 1.5B reads about 45 tokens a second): one line per open order with its items
lettered and their option values only, then the message, then the instruction."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

from crews.procedures.state import Action, Customer, Item, Order

SYSTEM = """You read a customer's e-mail to an online shop and say, for each of their open orders, what they ask the shop to do with it. Most e-mails are about one order; every other order is "nothing". Answer in JSON.

Example.
Their open orders:
Order #W1000001 (delivered): A) Lamp (black, LED); B) Mug (white, 12 oz)
Order #W1000002 (pending): C) Backpack (green, large)
Order #W1000003 (delivered): D) Kettle (steel, 1.5 L); E) Mug (blue, 12 oz)
Customer's e-mail:
Hi, the white mug arrived chipped, I'd like to send it back. The lamp is great though!
Answer: {"#W1000001": {"do": "return", "items": ["B"]}, "#W1000002": {"do": "nothing", "items": []}, "#W1000003": {"do": "nothing", "items": []}, "account_address": "keep"}"""
PENDING_KINDS = ("cancel", "change", "address", "payment")
DELIVERED_KINDS = ("return", "exchange")
ITEM_KINDS = frozenset({"change", "return", "exchange"})
TOOLS = {
    "cancel": "cancel_pending_order",
    "change": "modify_pending_order_items",
    "address": "modify_pending_order_address",
    "payment": "modify_pending_order_payment",
    "return": "return_delivered_order_items",
    "exchange": "exchange_delivered_order_items",
    "account_address": "modify_user_address",
}
KINDS_OF_TOOL = {tool: kind for kind, tool in TOOLS.items()}
OPEN = {"pending": PENDING_KINDS, "delivered": DELIVERED_KINDS}


@dataclass(frozen=True)
class Request:
    """One request as the model read it: a kind, an order (empty for the account's address) and, for item kinds, the
    item ids (a multiset as a sorted tuple: an order can hold the same item twice)."""

    kind: str
    order_id: str
    item_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]
    schema: dict[str, Any]
    letters: dict[str, Item]  # letter -> item


def _letters() -> list[str]:
    """Two alphabets (A..Z, AA..ZZ): a customer with more open items than that has the rest unlettered (never read)."""
    upper = list(string.ascii_uppercase)
    return upper + [a + a for a in upper]


def _line(order: Order, lettered: list[tuple[str, Item]]) -> str:
    items = "; ".join(f"{letter}) {item.name} ({', '.join(item.options.values())})" for letter, item in lettered)
    return f"Order {order.order_id} ({order.status}): {items}"


def prompt(text: str, customer: Customer) -> Prompt:
    """One entry per open order, in the order the customer's orders are listed, each "nothing" unless the customer asks
    for something: a list the model fills tends to name every order, a fixed entry with "nothing" first does not."""
    letters = iter(_letters())
    lines: list[str] = []
    properties: dict[str, Any] = {}
    by_letter: dict[str, Item] = {}
    for order in customer.orders:
        kinds = OPEN.get(order.status)
        if not kinds:
            continue
        lettered = [(letter, item) for item, letter in zip(order.items, letters, strict=False)]
        by_letter.update(lettered)
        lines.append(_line(order, lettered))
        names = [letter for letter, _ in lettered]
        properties[order.order_id] = {
            "type": "object",
            "properties": {"do": {"enum": ["nothing", *kinds]}, "items": {"type": "array", "items": {"enum": names}, "maxItems": len(names)}},
            "required": ["do", "items"],
            "additionalProperties": False,
        }
    properties["account_address"] = {"enum": ["keep", "change"]}
    schema = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    orders = "\n".join(lines) if lines else "(no open orders)"
    instruction = (
        "For each order, say what the customer asks the shop to do with it: nothing (also when they only mention it, "
        "keep it, or ask a question about it); cancel (the whole order); change (items to another version before it "
        "ships); address (where it ships); payment (how it is paid); return (items back for a refund); exchange (items "
        "for another version). Give the letters of the items only for change, return and exchange. account_address: "
        "change only if they ask to change the address on their account."
    )
    content = f"Their open orders:\n{orders}\n\nCustomer's e-mail:\n{text}\n\n{instruction}"
    return Prompt(messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}], schema=schema, letters=by_letter)


def parse(answer: dict[str, Any], built: Prompt) -> list[Request]:
    """The answer as requests (the schema has already held it to the customer's records)."""
    found: list[Request] = []
    for order, entry in answer.items():
        if order == "account_address":
            if entry == "change":
                found.append(Request(kind="account_address", order_id=""))
            continue
        kind = str(entry.get("do", "nothing"))
        if kind == "nothing":
            continue
        ids = [built.letters[x].item_id for x in entry.get("items", []) if x in built.letters] if kind in ITEM_KINDS else []
        found.append(Request(kind=kind, order_id=order, item_ids=tuple(sorted(ids))))
    return found


def of_action(action: Action) -> Request:
    """A planned write as a request, from the action's own order and items."""
    kind = KINDS_OF_TOOL.get(action.tool, action.tool)
    items = tuple(sorted(i.item_id for i in action.items)) if kind in ITEM_KINDS else ()
    return Request(kind=kind, order_id=action.order_id if kind != "account_address" else "", item_ids=items)


def of_tool_call(name: str, arguments: dict[str, Any]) -> Request:
    """A write (tool name and arguments: planned, made, or expected by a ticket set) as a request."""
    kind = KINDS_OF_TOOL.get(name, name)
    items = tuple(sorted(arguments.get("item_ids", []))) if kind in ITEM_KINDS else ()
    return Request(kind=kind, order_id=str(arguments.get("order_id", "")) if kind != "account_address" else "", item_ids=items)


def same(a: list[Request], b: list[Request]) -> bool:
    return sorted(a, key=repr) == sorted(b, key=repr)
