"""Pydantic shapes: what comes in as a ticket, and what the crew must return."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Category = Literal["billing", "technical", "account", "other"]
Priority = Literal["low", "normal", "high", "urgent"]
Sentiment = Literal["positive", "neutral", "negative", "angry"]

MAX_BODY_CHARS = 50_000


class TicketIn(BaseModel):
    """One inbound ticket, as any intake channel hands it over."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="ignore")

    source: str = Field(default="api", min_length=1, max_length=32, description="Channel: email, jira, backlog, api, cli.")
    external_id: str = Field(min_length=1, max_length=255, description="The channel's id; unique per source.")
    customer: str = Field(default="", max_length=320, description="Customer email or id.")
    subject: str = Field(default="", max_length=998)
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS, description="The customer's message text.")
    priority: Priority | None = None

    @field_validator("external_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value  # true is not ticket "True"

    @field_validator("source", "external_id", "customer", "subject", "body")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("contains NUL bytes (binary data, not text)")
        return value


class Triage(BaseModel):
    """The routing agent's decision about a ticket."""

    category: Category = Field(description="billing | technical | account | other")
    priority: Priority = Field(description="low | normal | high | urgent")
    language: str = Field(default="en", description="ISO 639-1 code of the customer's language, e.g. en, de, fr.")
    sentiment: Sentiment = Field(default="neutral", description="positive | neutral | negative | angry")
    summary: str = Field(description="One sentence: what the customer needs.")
    confidence: float = Field(ge=0.0, le=1.0, description="0..1, how sure the routing is.")

    @field_validator("category", "priority", "sentiment", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("language", mode="before")
    @classmethod
    def _lang(cls, value: object) -> object:
        return value.strip().lower()[:8] if isinstance(value, str) and value.strip() else "en"


class Resolution(BaseModel):
    """A specialist's drafted answer."""

    customer_reply: str = Field(min_length=1, description="The reply to send to the customer.")
    internal_note: str = Field(default="", description="Notes for the support team; not sent.")
    needs_human: bool = Field(default=False, description="True when a person must take over.")
    escalation_reason: str = Field(default="", description="Why a person must take over, if needs_human.")


class TicketOutcome(BaseModel):
    """What processing a ticket produced; returned by the pipeline and the Celery task."""

    ticket_id: int
    run_id: int | None
    status: str
    category: str | None = None
    priority: str | None = None
    escalation_reason: str | None = None
    seconds: float = 0.0
    reused: bool = Field(default=False, description="True when the ticket was already done and nothing ran.")
    requeue: bool = Field(default=False, description="True when the customer wrote again during the run: the ticket was reopened and needs another run.")
