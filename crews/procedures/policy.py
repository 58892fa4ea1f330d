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
    return None if action.arguments.get("reason") in CANCEL_REASONS else {"reason": action.arguments.get("reason")}


def _refund_to_original_or_gift_card(action: Action, order: Order, customer: Customer) -> dict[str, Any] | None:
    method = customer.payment_methods.get(action.method_id or "")
    if method is not None and (method.method_id == order.paid_with or method.source == "gift_card"):
        return None
    return {"method": method.label if method else action.method_id}


RULES: dict[str, Check] = {
    "order_is_pending": _order_is_pending,
    "order_is_delivered": _order_is_delivered,
    "whole_order_only": _whole_order_only,
    "cancel_reason_allowed": _cancel_reason_allowed,
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
_CARD = re.compile(r"credit ?card|\bcard\b|visa|mastercard|amex|american express|kreditkarte|tarjeta de crédito|carte (de crédit|bancaire)", re.I)


def cancel_reason(text: str) -> str:
    """One of the two reasons the store accepts, read from the customer's words."""
    return "ordered by mistake" if _MISTAKE.search(text) else "no longer needed"


def refund_method(text: str, order: Order, customer: Customer) -> str:
    """The method the customer asked the refund to go to (gift card, PayPal, card), else the order's original method."""
    wanted = ("gift_card" if _GIFT_CARD.search(text) else "paypal" if _PAYPAL.search(text) else "credit_card" if _CARD.search(text) else None)
    original = customer.payment_methods.get(order.paid_with)
    if wanted is None or (original is not None and original.source == wanted):
        return order.paid_with
    return next((m.method_id for m in customer.payment_methods.values() if m.source == wanted), order.paid_with)
