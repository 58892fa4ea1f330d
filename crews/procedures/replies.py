"""The reply, composed from the outcomes with the facts the tools returned, in the customer's language (replies.yaml)."""

from __future__ import annotations

from typing import Any

from crews.procedures.address import label as address_label
from crews.procedures.state import Action, Customer, Order, Outcome, PaymentMethod


def _text(replies: dict[str, Any], key: str, language: str, **facts: Any) -> str:
    entry = replies
    for part in key.split("."):
        entry = entry[part]
    template = entry.get(language) or entry["en"]
    return template.format(**facts)


def _method_name(say: Any, method: PaymentMethod) -> str:
    """A payment method in the reply's language ("carte cadeau", "Visa-Karte mit Endung 1234"); PayPal is PayPal."""
    if method.source == "gift_card":
        return say("method_names.gift_card")
    if method.source == "credit_card" and method.last_four:
        return say("method_names.card", brand=(method.brand or "credit").title(), last_four=method.last_four)
    return method.label


def _method_names(say: Any, customer: Customer | None) -> dict[str, str]:
    """Each of the account's methods: its English label (the tools' and the policy's) -> its name in the reply's language."""
    return {m.label: _method_name(say, m) for m in customer.payment_methods.values()} if customer else {}


def _in_language(names: dict[str, str], facts: dict[str, Any]) -> dict[str, Any]:
    """The facts that name payment methods, in the reply's language."""
    if not names:
        return facts
    out = dict(facts)
    for field in ("method", "old_method", "methods"):
        value = out.get(field)
        if isinstance(value, str) and value:
            for label in sorted(names, key=len, reverse=True):
                value = value.replace(label, names[label])
            out[field] = value
    return out


def _items(outcome: Outcome) -> str:
    return ", ".join(item.label() for item in outcome.action.items) if outcome.action else ""


def _timing(say: Any, method: PaymentMethod | None) -> str:
    """When money back reaches a method: a gift card at once, anything else in 5 to 7 business days."""
    return say("timing.immediately" if method and method.source == "gift_card" else "timing.later")


def _paid_before(customer: Customer | None, action: Action) -> tuple[Order | None, PaymentMethod | None]:
    """A payment change's order and the method it was paid with until now (the one refunded)."""
    order = next((o for o in customer.orders if o.order_id == action.order_id), None) if customer else None
    return order, customer.payment_methods.get(order.paid_with) if customer and order else None


def _difference(say: Any, action: Any, method: str) -> str:
    amount = abs(action.amount)
    if amount < 0.005:
        return say("difference.none")
    return say("difference.pay" if action.amount > 0 else "difference.refund", amount=f"${amount:.2f}", method=method)


def _proposal(say: Any, outcome: Outcome, customer: Customer | None) -> str:
    """One write stated whole before it is made: items, new variants, amount, method, address, reason."""
    action = outcome.action
    assert action is not None
    method = customer.payment_methods.get(action.method_id or "") if customer else None
    facts: dict[str, Any] = {
        "order": action.order_id,
        "items": _items(outcome),
        "amount": f"${action.amount:.2f}",
        "method": method.label if method else "",
        "new_items": ", ".join(item.label() for item in action.new_items),
        "address": address_label(action.address) if action.address else "",
    }
    if action.tool == "cancel_pending_order":
        reason = str(action.arguments.get("reason", ""))
        facts["reason"] = say(f"propose.reasons.{reason}") if reason in ("no longer needed", "ordered by mistake") else reason
        facts["timing"] = _timing(say, method)
    elif action.tool == "modify_pending_order_payment":
        order, old = _paid_before(customer, action)
        facts["old_method"] = old.label if old else ""
        facts["timing"] = _timing(say, old)
        facts["items"] = ", ".join(i.name for i in order.items) if order else ""
    elif action.tool == "modify_pending_order_address":
        facts["items"] = ", ".join(i.name for i in action.items)
    elif action.new_items:
        facts["difference"] = _difference(say, action, facts["method"])
    return "- " + say(f"propose.{action.tool}", **facts)


def compose(*, replies: dict[str, Any], language: str, outcomes: list[Outcome], customer: Customer | None, identified: bool) -> str:
    text = lambda key, **facts: _text(replies, key, language, **facts)  # noqa: E731
    names = _method_names(text, customer)
    say = lambda key, **facts: text(key, **_in_language(names, facts))  # noqa: E731
    lines = [say("greeting")]
    if not identified:
        lines.append(say("not_identified"))
    for outcome in _once(outcomes):
        action = outcome.action
        method = customer.payment_methods.get(action.method_id or "") if customer and action else None
        facts = {
            "order": action.order_id if action else outcome.detail.get("order", ""),
            "items": _items(outcome),
            "amount": f"${action.amount:.2f}" if action else "",
            "method": method.label if method else "",
            **outcome.detail,
        }
        if outcome.kind == "done" and action and action.tool == "modify_pending_order_address":
            lines.append(say("address_changed", **facts, address=address_label(action.address)))
        elif outcome.kind == "done" and action and action.tool == "modify_pending_order_payment":
            _order, old = _paid_before(customer, action)
            lines.append(say("payment_changed", **facts, old_method=old.label if old else "", timing=_timing(say, old)))
        elif outcome.kind == "not_found" and outcome.detail.get("what") == "method":
            items = ", ".join(item.label() for item in outcome.items)
            lines.append(say("method_unclear", order=outcome.detail.get("order", ""), items=items, methods=outcome.detail.get("methods", "")))
        elif outcome.kind == "not_found" and outcome.detail.get("what") == "payment":
            lines.append(say("payment_not_found", methods=outcome.detail.get("methods", "")))
        elif outcome.kind == "done" and action and action.tool == "modify_user_address":
            lines.append(say("default_address_changed", address=address_label(action.address)))
        elif outcome.kind == "not_found" and outcome.detail.get("what") == "address":
            lines.append(say("address_not_found"))
        elif outcome.kind == "done" and action and action.tool == "cancel_pending_order":
            lines.append(say("cancelled", **facts, timing=_timing(say, method)))
        elif outcome.kind == "done" and action and action.tool == "return_delivered_order_items":
            lines.append(say("return_requested", **facts))
        elif outcome.kind == "done" and action and action.new_items:
            difference = _difference(say, action, facts["method"])
            new_items = ", ".join(item.label() for item in action.new_items)
            lines.append(
                say("exchanged" if action.tool == "exchange_delivered_order_items" else "modified", **facts, new_items=new_items, difference=difference)
            )
        elif outcome.kind == "pending_approval":
            lines.append(say("awaiting_approval", **facts))
        elif outcome.kind == "declined" and outcome.rule == "price_condition" and action:
            new_items = ", ".join(item.label() for item in action.new_items)
            key = "price_declined_price" if outcome.detail.get("of_price") else "price_declined"
            lines.append(say(key if outcome.detail.get("above", True) else f"{key}_below", **facts, new_items=new_items))
        elif outcome.kind in ("refused", "declined") and action:
            lines.append(
                say("refused", **facts, action=say(f"actions.{action.tool}"), rule=say(f"rules.{outcome.rule}", **facts))
                + (" " + say("declined") if outcome.kind == "declined" else "")
            )
        elif outcome.kind == "failed" and action:
            lines.append(say("failed", **facts, action=say(f"actions.{action.tool}")))
        elif outcome.kind == "answered":
            tracking = say("tracking", tracking=", ".join(outcome.detail["tracking_ids"])) if outcome.detail.get("tracking_ids") else ""
            lines.append(say("order_status", **facts, tracking=tracking))
        elif outcome.kind == "unclear":
            said = " ".join(str(outcome.detail.get("said", "")).split())
            said = said if len(said) <= 120 else said[:117].rsplit(" ", 1)[0] + " …"
            if outcome.detail.get("why") == "conflict":  # two writes read for one order: which one
                lines.append(say("conflict", order_id=said))
            elif outcome.detail.get("why") == "condition":  # a request under a condition nothing here can check
                lines.append(say("condition", said=said))
            elif outcome.detail.get("why") == "uncovered":  # a request nothing was done about: said so, not passed over
                what = outcome.detail.get("what")
                if what == "order":  # an order the customer named that nothing was done about (flow._unacted_orders)
                    lines.append(say("uncovered.order", order_id=outcome.detail["order"], items=outcome.detail["items"]))
                else:
                    lines.append(say(f"uncovered.{what}") if what else say("uncovered.said", said=said))
            else:
                lines.append(say("unclear", said=said))
        elif outcome.kind == "confirm" and outcome.detail.get("changes"):
            new_item = outcome.items[0]
            lines.append(
                say(
                    "variant_confirm",
                    old=outcome.detail["from"],
                    new=f"{new_item.label()} ({new_item.order_id})",
                    action=say(f"actions.{outcome.detail['tool']}"),
                )
            )
        elif outcome.kind == "confirm" and outcome.detail.get("tool") == "modify_pending_order_address":
            order_id = outcome.items[0].order_id if outcome.items else ""
            choices = f"{order_id} ({', '.join(item.name for item in outcome.items)})"
            lines.append(say("confirm", action=say(f"actions.{outcome.detail['tool']}"), choices=choices))
        elif outcome.kind == "confirm":
            choices = ", ".join(f"{item.label()} ({item.order_id})" for item in outcome.items)
            lines.append(say("confirm", action=say(f"actions.{outcome.detail['tool']}"), choices=choices))
        elif outcome.kind == "ambiguous":
            choices = " / ".join(f"{item.label()} ({item.order_id})" for item in outcome.items)
            lines.append(say("ambiguous", choices=choices))
        elif outcome.kind == "not_found":
            what = outcome.detail.get("what", "request")
            lines.append(say("not_found", **{**facts, "what": say(f"what.{what}", **facts) if what in replies["what"] else what}))
        elif outcome.kind == "withdrawn":  # a proposal the customer said no to
            items = ", ".join(f"{item.label()} ({item.order_id})" for item in outcome.items) or str(outcome.detail.get("order") or "")
            lines.append(say("withdrawn", action=say(f"actions.{outcome.detail['tool']}"), items=items))
        elif outcome.kind == "handed_over":
            lines.append(say("handoff"))
    proposals = [_proposal(say, o, customer) for o in outcomes if o.kind == "propose" and o.action is not None]
    if proposals:  # the writes waiting for the customer's yes, each stated whole, after what was done or asked
        lines.append("\n".join([say("propose.intro"), *proposals]))
        lines.append(say("propose.outro"))
    lines.append(say("closing"))
    return "\n\n".join(dict.fromkeys(lines))  # a sentence said once, however many outcomes led to it


def _said(outcome: Outcome) -> str:
    return " ".join(str(outcome.detail.get("said", "")).split()).rstrip(" .…").lower() if outcome.kind == "unclear" else ""


def _once(outcomes: list[Outcome]) -> list[Outcome]:
    """A request quoted back once: the subject and the body often say the same thing (the subject cut short), and one
    clause may be unclear for several procedures; the quote that another one contains is left out."""
    quoted = [q for q in (_said(o) for o in outcomes) if q]
    return [o for o in outcomes if not (q := _said(o)) or not any(other != q and other.startswith(q) for other in quoted)]


def holding_reply(replies: dict[str, Any], language: str) -> str:
    """A person takes over: greeting, the hand-over sentence and closing, in the customer's language."""
    return "\n\n".join(_text(replies, key, language) for key in ("greeting", "handoff", "closing"))
