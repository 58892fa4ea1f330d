"""Catch replies that claim an action no tool performed ("I have refunded you" with no refund on record)."""

from __future__ import annotations

import re

# claim pattern -> tools any one of which makes the claim true
CLAIMS: dict[str, tuple[re.Pattern[str], frozenset[str]]] = {
    "refund": (
        re.compile(
            r"\b((i|we)('ve| have)? (just )?(issued|processed|initiated|refunded|credited)|(has|have) been (refunded|credited)|refund (has been|was) (issued|processed|initiated))\b",
            re.I,
        ),
        frozenset(
            {
                "cancel_pending_order",
                "return_delivered_order_items",
                "modify_pending_order_payment",
                "modify_pending_order_items",
                "exchange_delivered_order_items",
            }
        ),
    ),
    "cancellation": (
        re.compile(r"\b((i|we)('ve| have)? cancell?ed|(order|it) (has been|was|is now) cancell?ed)\b", re.I),
        frozenset({"cancel_pending_order"}),
    ),
    "address change": (
        re.compile(
            r"\b((i|we)('ve| have)? (updated|changed|modified)|(has|have) been (updated|changed|modified))\b[^.]{0,40}\baddress\b|\baddress (has been|was) (updated|changed|modified)\b",
            re.I,
        ),
        frozenset({"modify_pending_order_address", "modify_user_address"}),
    ),
    "return": (
        re.compile(
            r"\b(return (has been|was) (requested|processed|initiated|created)|(i|we)('ve| have) (requested|initiated|processed|created) (the |a |your )?return)\b",
            re.I,
        ),
        frozenset({"return_delivered_order_items"}),
    ),
    "exchange": (
        re.compile(
            r"\b(exchange (has been|was) (requested|processed|initiated|arranged)|(i|we)('ve| have) (requested|initiated|processed|arranged) (the |an |your )?exchange)\b",
            re.I,
        ),
        frozenset({"exchange_delivered_order_items"}),
    ),
    "item change": (
        re.compile(r"\b((i|we)('ve| have)? (modified|changed|swapped) (the |your )?items?|items? (has|have) been (modified|changed|swapped))\b", re.I),
        frozenset({"modify_pending_order_items"}),
    ),
}


def unbacked_claims(reply: str, performed: set[str]) -> list[str]:
    """The kinds of action the reply says were done, for which no tool call succeeded."""
    return [claim for claim, (pattern, tools) in CLAIMS.items() if pattern.search(reply) and not (tools & performed)]
