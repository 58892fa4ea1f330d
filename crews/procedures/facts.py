"""The steps every procedure shares: identify the customer the way the store's policy asks (e-mail, or name and zip),
then read their profile and orders. Every lookup is a tool call through the gate; nothing is guessed."""

from __future__ import annotations

import re
import time
from typing import Any

from crewdesk.connectors.base import StoreError
from crewdesk.store.operations import operations
from crews.procedures.state import Customer, Item, Order, PaymentMethod
from tools.gate import Gate, ToolDenied

EMAIL = re.compile(r"<EMAIL_\d+>|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
USER_ID = re.compile(r"\b[a-z]+_[a-z]+_\d{4}\b")
ZIP = re.compile(r"(?<![\d#])\d{5}(?!\d)")
NAME_PAIR = re.compile(r"(?<![^\W\d_])(?=([^\W\d_][^\W\d_'-]+)\s+([^\W\d_][^\W\d_'-]+)(?![^\W\d_]))")  # overlapping pairs
ORDER_ID = re.compile(r"#?\bW\d{7}\b")
MAX_NAME_TRIES = 6


class Lookup:
    """A procedure's tool calls for one role, through the gate (permission, approval, idempotency; arguments concealed,
    results tokenised), each written to the audit trail as a tool_call row, as the crew's tool calls are."""

    def __init__(self, gate: Gate, role: str) -> None:
        self.gate = gate
        self.role = role

    def __call__(self, tool: str, **arguments: Any) -> Any:
        concealed = self.gate.vault.conceal(arguments)
        started = time.perf_counter()
        try:
            result = self.gate.run(role=self.role, operation=operations()[tool], arguments=concealed)
        except (StoreError, ToolDenied) as exc:
            self._audit(tool, concealed, started, error=f"{type(exc).__name__}: {exc}")
            raise
        self._audit(tool, concealed, started, result=result)
        return result

    def _audit(self, tool: str, arguments: dict[str, Any], started: float, **outcome: Any) -> None:
        self.gate.audit(kind="tool_call", name=tool, actor=self.role, arguments=arguments, duration_ms=(time.perf_counter() - started) * 1000, **outcome)

    def attempt(self, tool: str, **arguments: Any) -> Any | None:
        try:
            return self(tool, **arguments)
        except (StoreError, ToolDenied):
            return None


def _name_pairs(text: str, zips: list[str]) -> list[tuple[str, str]]:
    """Two capitalised words in a row, nearest to a zip code first (people write "I am Ana Lima, 10001")."""
    anchors = [m.start() for z in zips for m in re.finditer(re.escape(z), text)] or [0]
    found: dict[tuple[str, str], int] = {}
    for match in NAME_PAIR.finditer(text):
        first, last = match.group(1), match.group(2)
        if first[0].isupper() and last[0].isupper():
            distance = min(abs(match.start() - anchor) for anchor in anchors)
            found[(first, last)] = min(distance, found.get((first, last), distance))
    return sorted(found, key=found.__getitem__)


def identify(lookup: Lookup, *, text: str, raw_text: str, channel_customer: str) -> tuple[str, str] | None:
    """(user id, how) or None. The channel's sender first, then an e-mail in the ticket, then name and zip; a user id the
    customer gives is checked against their zip and name before it counts (the policy authenticates even then)."""
    if "@" in channel_customer:
        user_id = lookup.attempt("find_user_id_by_email", email=channel_customer)
        if user_id:
            return str(user_id), "the sender's e-mail"
    for email in dict.fromkeys(m.group(0) for m in EMAIL.finditer(text)):
        user_id = lookup.attempt("find_user_id_by_email", email=email)
        if user_id:
            return str(user_id), "the e-mail in the ticket"
    zips = list(dict.fromkeys(ZIP.findall(raw_text)))
    if not zips:
        return None
    for user_id in dict.fromkeys(USER_ID.findall(raw_text)):
        # Nothing of a customer is read before they are identified (tools/binding.py): the id's own name parts, with a
        # zip from the ticket, must find that same id by the store's rule.
        first, _, rest = user_id.partition("_")
        last = rest.rpartition("_")[0] or rest
        for zip_code in zips:
            found = lookup.attempt("find_user_id_by_name_zip", first_name=first, last_name=last, zip=zip_code)
            if found == user_id:
                return user_id, "user id, name and zip"
    tries = 0
    for first, last in _name_pairs(raw_text, zips):
        for zip_code in zips:
            if tries >= MAX_NAME_TRIES:
                return None
            tries += 1
            user_id = lookup.attempt("find_user_id_by_name_zip", first_name=first, last_name=last, zip=zip_code)
            if user_id:
                return str(user_id), "name and zip"
    return None


def _payment_label(method: dict[str, Any]) -> str:
    source = method.get("source", "")
    if source == "credit_card":
        return f"{str(method.get('brand', 'credit')).title()} card ending in {method.get('last_four', '????')}"
    return {"paypal": "PayPal", "gift_card": "gift card"}.get(source, source.replace("_", " "))


def load_customer(lookup: Lookup, *, user_id: str, how: str) -> Customer:
    profile = lookup("get_user_details", user_id=user_id)
    methods = {
        mid: PaymentMethod(
            method_id=mid,
            source=m.get("source", ""),
            label=_payment_label(m),
            balance=m.get("balance"),
            brand=str(m.get("brand", "")),
            last_four=str(m.get("last_four", "")),
        )
        for mid, m in profile["payment_methods"].items()
    }
    orders = []
    for order_id in profile.get("orders", []):
        doc = lookup("get_order_details", order_id=order_id)
        items = [
            Item(
                order_id=order_id,
                item_id=i["item_id"],
                product_id=i["product_id"],
                name=i["name"],
                options={k: str(v) for k, v in i.get("options", {}).items()},
                price=float(i["price"]),
            )
            for i in doc["items"]
        ]
        payments = [p for p in doc.get("payment_history", []) if p.get("transaction_type") == "payment"]
        tracking = [t for f in doc.get("fulfillments", []) for t in f.get("tracking_id", [])]
        orders.append(
            Order(
                order_id=order_id,
                status=doc["status"],
                items=items,
                paid_with=payments[0]["payment_method_id"] if payments else "",
                tracking=tracking,
                address=_address(doc.get("address")),
            )
        )
    return Customer(user_id=user_id, how=how, payment_methods=methods, orders=orders, address=_address(profile.get("address")))


def _address(value: Any) -> dict[str, str]:
    return {k: str(v) for k, v in value.items()} if isinstance(value, dict) else {}
