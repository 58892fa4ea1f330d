"""The typed state a procedure flow carries from step to step: what the tools returned, what was decided, what was done."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, Field


class Item(BaseModel):
    order_id: str
    item_id: str
    product_id: str
    name: str
    options: dict[str, str] = Field(default_factory=dict)
    price: float

    def label(self) -> str:
        options = ", ".join(f"{k} {v}" for k, v in self.options.items())
        return f"{self.name} ({options})" if options else self.name


class Order(BaseModel):
    order_id: str
    status: str
    items: list[Item]
    paid_with: str = Field(description="payment method id of the order's first payment (the original method)")
    tracking: list[str] = Field(default_factory=list)
    address: dict[str, str] = Field(default_factory=dict, description="where it ships (address1, address2, city, state, country, zip)")


class PaymentMethod(BaseModel):
    method_id: str
    source: str  # credit_card | paypal | gift_card
    label: str  # how the reply names it: "Visa card ending in 1234", "gift card"
    balance: float | None = None  # a gift card's
    brand: str = ""  # a card's ("visa"), for the reply's own words for it
    last_four: str = ""


class Customer(BaseModel):
    user_id: str
    how: str = Field(description="how the customer was identified: channel e-mail, e-mail in the ticket, name and zip")
    payment_methods: dict[str, PaymentMethod]
    orders: list[Order]
    address: dict[str, str] = Field(default_factory=dict, description="the account's default address")


class Action(BaseModel):
    """One write a procedure decided on, with the facts the reply will state."""

    intent: str
    tool: str
    role: str
    order_id: str = ""
    items: list[Item] = Field(default_factory=list)
    new_items: list[Item] = Field(default_factory=list, description="exchange or change: the variants the items become, in order")
    arguments: dict[str, Any]
    amount: float = 0.0  # money back (cancel, return) or the price difference (exchange, change: + the customer pays, - refunded)
    method_id: str | None = None
    address: dict[str, str] = Field(default_factory=dict, description="an address change: the new address")

    def fingerprint(self) -> str:
        """The write exactly as it would be made (tool and arguments): what a customer's yes to a proposed write approves.
        A later run that plans anything else, even on the same items, proposes again."""
        return hashlib.sha256(json.dumps([self.tool, self.arguments], sort_keys=True, default=str).encode()).hexdigest()[:20]


class Outcome(BaseModel):
    """What became of one action, or one answer to a question."""

    intent: str
    kind: str = Field(
        description="planned | done | refused | declined | failed | pending_approval | answered | not_found | ambiguous | unclear | confirm "
        "| handed_over | withdrawn | propose (propose: a planned write stated whole to the customer, made on their yes; withdrawn: a proposal the customer said no to when asked; declined: refused, and the customer said to leave it then; ambiguous: several items fit, the customer is asked "
        "which; unclear: a request no item was found for, or one nothing was done about, quoted back to the customer; confirm: items "
        "the model chose, put to the customer before anything is written)"
    )
    action: Action | None = None
    items: list[Item] = Field(default_factory=list, description="refused or not found: the items the request was about")
    rule: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class ProcedureState(BaseModel):
    """The whole of one ticket's procedure run."""

    text: str = ""
    channel_customer: str = ""
    language: str = "en"
    intents: list[str] = Field(default_factory=list)
    customer: Customer | None = None
    actions: list[Action] = Field(default_factory=list)
    outcomes: list[Outcome] = Field(default_factory=list)
    reply: str = ""
    status: str = ""
    reason: str = ""
    questions: list[Outcome] = Field(default_factory=list, description="waiting on the customer: the points put to them")
