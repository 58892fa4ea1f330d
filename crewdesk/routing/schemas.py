"""Our routing vocabulary: the intent, category, priority and sentiment enums, the fixed intent -> category map, and
the Route a router returns. Every router (embedding, model, hybrid) answers in these terms only."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, field_validator


class Intent(StrEnum):
    cancel_order = "cancel_order"
    modify_order = "modify_order"
    return_items = "return_items"
    exchange_items = "exchange_items"
    change_default_address = "change_default_address"
    order_status = "order_status"
    product_info = "product_info"
    billing_question = "billing_question"
    account_help = "account_help"
    technical_issue = "technical_issue"
    complaint = "complaint"
    human_handoff = "human_handoff"
    other = "other"


# One line each: the model's prompt lists them, and they are the contract for the hand-written seed examples.
INTENT_DEFINITIONS: dict[Intent, str] = {
    Intent.cancel_order: "cancel a pending order or items of it",
    Intent.modify_order: "change items, shipping address or payment of a pending order",
    Intent.return_items: "return delivered items for a refund",
    Intent.exchange_items: "exchange delivered items for another variant",
    Intent.change_default_address: "change the account's default address",
    Intent.order_status: "status, tracking, delivery time or options, order details",
    Intent.product_info: "product options, availability, prices",
    Intent.billing_question: "charges, refunds and their status, invoices, payment methods, fees",
    Intent.account_help: "sign-in, password, create/edit/delete/switch account, registration, newsletter",
    Intent.technical_issue: "errors, bugs, crashes, integrations, troubleshooting",
    Intent.complaint: "complaints, reviews, feedback",
    Intent.human_handoff: "asks for a person or how to contact customer service",
    Intent.other: "anything else",
}


class Category(StrEnum):
    billing = "billing"
    technical = "technical"
    account = "account"
    other = "other"


CATEGORY_OF: dict[Intent, Category] = {
    Intent.cancel_order: Category.billing,
    Intent.modify_order: Category.billing,
    Intent.return_items: Category.billing,
    Intent.exchange_items: Category.billing,
    Intent.order_status: Category.billing,
    Intent.billing_question: Category.billing,
    Intent.change_default_address: Category.account,
    Intent.account_help: Category.account,
    Intent.technical_issue: Category.technical,
    Intent.product_info: Category.other,
    Intent.complaint: Category.other,
    Intent.human_handoff: Category.other,
    Intent.other: Category.other,
}


class Priority(StrEnum):
    urgent = "urgent"
    high = "high"
    normal = "normal"
    low = "low"


class Sentiment(StrEnum):
    positive = "positive"
    neutral = "neutral"
    negative = "negative"
    angry = "angry"


Method = Literal["embedding", "model", "embedding+model"]


class Route(BaseModel):
    """Where a ticket goes. intents: primary first, no repeats."""

    intents: list[Intent] = Field(min_length=1, description="Primary intent first, then any others the ticket also asks for.")
    category: Category
    priority: Priority
    sentiment: Sentiment
    confidence: float = Field(ge=0.0, le=1.0, description="The router's confidence in the primary intent.")
    method: Method

    @field_validator("intents")
    @classmethod
    def _no_repeats(cls, intents: list[Intent]) -> list[Intent]:
        return list(dict.fromkeys(intents))

    @property
    def intent(self) -> Intent:
        return self.intents[0]
