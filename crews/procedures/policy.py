"""The store's policy (crewdesk/store/tau2/policy.md), checked in code before each write. A refusal names its rule; the
audit row and the reply carry that name and the facts behind it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from crewdesk.connectors.builtin_store import CANCEL_REASONS
from crews.procedures.state import Action, Customer, Order

Check = Callable[[Action, Order, Customer], dict[str, Any] | None]  # None: allowed; else the facts of the refusal


def _order_is_pending(action: Action, order: Order, customer: Customer) -> dict[str, Any] | None:
    return None if order.status == "pending" else {"status": order.status}


def _order_is_delivered(action: Action, order: Order, customer: Customer) -> dict[str, Any] | None:
    return None if order.status == "delivered" else {"status": order.status}


def _whole_order_only(action: Action, order: Order, customer: Customer) -> dict[str, Any] | None:
    chosen = {item.item_id for item in action.items}
    others = [item.name for item in order.items if item.item_id not in chosen]
    return {"others": ", ".join(others)} if others else None


def _cancel_reason_allowed(action: Action, order: Order, customer: Customer) -> dict[str, Any] | None:
    return None if action.arguments.get("reason") in CANCEL_REASONS else {"reason": action.arguments.get("reason") or "none given"}


def _refund_to_original_or_gift_card(action: Action, order: Order, customer: Customer) -> dict[str, Any] | None:
    method = customer.payment_methods.get(action.method_id or "")
    if method is not None and (method.method_id == order.paid_with or method.source == "gift_card"):
        return None
    return {"method": method_label(action.method_id, customer)}


def _cancel_refunds_to_original(action: Action, order: Order, customer: Customer) -> dict[str, Any] | None:
    """A cancelled order's money goes back to how it was paid; the customer asked for it elsewhere."""
    if not action.method_id or action.method_id == order.paid_with:
        return None
    return {"method": method_label(action.method_id, customer)}


def _variant_of_same_product(action: Action, order: Order, customer: Customer) -> dict[str, Any] | None:
    if len(action.new_items) == len(action.items) and all(
        n.product_id == i.product_id and n.item_id != i.item_id for i, n in zip(action.items, action.new_items, strict=True)
    ):
        return None
    return {"items": ", ".join(i.name for i in action.items)}


def _method_on_account(action: Action, order: Order, customer: Customer) -> dict[str, Any] | None:
    """A price difference is paid or refunded with one of the customer's own payment methods."""
    return {"method": method_label(action.method_id, customer)} if action.method_id and action.method_id not in customer.payment_methods else None


def _gift_card_covers_difference(action: Action, order: Order, customer: Customer) -> dict[str, Any] | None:
    method = customer.payment_methods.get(action.method_id or "")
    if method is None or method.source != "gift_card" or action.amount <= (method.balance or 0.0):
        return None
    return {"balance": f"${method.balance or 0.0:.2f}", "difference": f"${action.amount:.2f}"}


def _method_differs(action: Action, order: Order, customer: Customer) -> dict[str, Any] | None:
    """An order's payment moves to another method, never to the one it is paid with."""
    return {"method": method_label(action.method_id, customer)} if action.method_id == order.paid_with else None


def _gift_card_covers_total(action: Action, order: Order, customer: Customer) -> dict[str, Any] | None:
    """A gift card pays a whole order only if its balance covers the order's total."""
    method = customer.payment_methods.get(action.method_id or "")
    if method is None or method.source != "gift_card" or action.amount <= (method.balance or 0.0):
        return None
    return {"balance": f"${method.balance or 0.0:.2f}", "total": f"${action.amount:.2f}"}


RULES: dict[str, Check] = {
    "method_differs": _method_differs,
    "gift_card_covers_total": _gift_card_covers_total,
    "variant_of_same_product": _variant_of_same_product,
    "gift_card_covers_difference": _gift_card_covers_difference,
    "method_on_account": _method_on_account,
    "order_is_pending": _order_is_pending,
    "order_is_delivered": _order_is_delivered,
    "whole_order_only": _whole_order_only,
    "cancel_reason_allowed": _cancel_reason_allowed,
    "cancel_refunds_to_original": _cancel_refunds_to_original,
    "refund_to_original_or_gift_card": _refund_to_original_or_gift_card,
}


def first_refusal(rules: tuple[str, ...], action: Action, order: Order, customer: Customer) -> tuple[str, dict[str, Any]] | None:
    for rule in rules:
        facts = RULES[rule](action, order, customer)
        if facts is not None:
            return rule, facts
    return None


_MISTAKE = re.compile(r"mistake|by accident|accidental|wrong(ly)? order|versehen|irrtümlich|por error|equivocaci|par erreur|par mégarde", re.I)
_GIFT_CARD = re.compile(r"gift ?card|\bGC\b|geschenkkarte|gutschein|tarjeta regalo|carte cadeau", re.I)
_PAYPAL = re.compile(r"paypal", re.I)
_OTHER_ORDER = re.compile(r"(the )?other order'?s? (payment|method|card)|payment method of the other order", re.I)
_CARD = re.compile(r"credit ?card|\bcard\b|visa|mastercard|amex|american express|kreditkarte|tarjeta de crédito|carte (de crédit|bancaire)", re.I)


_NO_LONGER = re.compile(r"no longer need|don't need|do not need|not needed|nicht mehr|ya no|plus besoin", re.I)
_ORIGINAL = re.compile(r"original (payment|method|card)|same (payment )?method|ursprünglich|original|d'origine", re.I)


def names_reason(text: str) -> bool:
    return bool(_MISTAKE.search(text) or _NO_LONGER.search(text))


def names_method(text: str) -> bool:
    return bool(_GIFT_CARD.search(text) or _PAYPAL.search(text) or _CARD.search(text) or _ORIGINAL.search(text))


# Some reason the customer gave for not wanting the order any more ("because it goes with the tablet", "financial issue").
_SOME_REASON = re.compile(
    r"\b(because|since|as I|due to|reason|changed my mind|don't want|do not want|won't need|"
    r"financial|moving|too long|unreasonable|no use|not useful|weil|porque|parce que|car je)\b",
    re.I,
)


def cancel_reason(text: str) -> str:
    """One of the two reasons the store accepts, read from the customer's words; "" when they gave none (the store's
    policy asks for it, so the customer is asked rather than a reason invented)."""
    if _MISTAKE.search(text):
        return "ordered by mistake"
    return "no longer needed" if _NO_LONGER.search(text) or _SOME_REASON.search(text) else ""


NOT_ON_ACCOUNT = "not-on-account:"
_KINDS = {"credit_card": "a credit card", "paypal": "PayPal", "gift_card": "a gift card"}


def method_label(method_id: str | None, customer: Customer) -> str:
    if method_id and method_id.startswith(NOT_ON_ACCOUNT):
        return _KINDS.get(method_id[len(NOT_ON_ACCOUNT) :], "that payment method") + " (there is none on your account)"
    method = customer.payment_methods.get(method_id or "")
    return method.label if method else str(method_id)


def named_method(text: str, order: Order, customer: Customer) -> str:
    """The payment method the customer named (gift card, PayPal, card), else the order's original one. For a refund the
    policy then allows only the original method or a gift card; for a price difference any of the customer's methods."""
    wanted = "gift_card" if _GIFT_CARD.search(text) else "paypal" if _PAYPAL.search(text) else "credit_card" if _CARD.search(text) else None
    original = customer.payment_methods.get(order.paid_with)
    if wanted is None and _OTHER_ORDER.search(text):  # "refund each order to the other order's payment method"
        others = [o.paid_with for o in customer.orders if o.order_id != order.order_id and o.paid_with and o.paid_with != order.paid_with]
        if len(set(others)) == 1:
            return others[0]
    if wanted is None or (original is not None and original.source == wanted and not _other_brand_named(text, original, customer)):
        return order.paid_with
    matching = [m for m in customer.payment_methods.values() if m.source == wanted]
    branded = [m for m in matching if m.label.split()[0].lower() in text.lower()]
    if matching:
        return (branded or matching)[0].method_id
    return NOT_ON_ACCOUNT + wanted  # they asked for a kind of payment they do not have: the policy refuses, nothing is swapped in


def _other_brand_named(text: str, original, customer: Customer) -> bool:
    """The customer named another of their cards by brand ("the visa card") than the one the order was paid with."""
    brands = {m.label.split()[0].lower() for m in customer.payment_methods.values() if m.source == "credit_card" and m.method_id != original.method_id}
    return original.source == "credit_card" and any(re.search(rf"\b{brand}\b", text, re.I) for brand in brands - {original.label.split()[0].lower()})
