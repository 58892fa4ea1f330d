"""Pydantic shapes: what comes in as a ticket, and what the crew must return."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Category = Literal["billing", "technical", "account", "other"]
Priority = Literal["low", "normal", "high", "urgent"]
Sentiment = Literal["positive", "neutral", "negative", "angry"]

MAX_BODY_CHARS = 50_000


class TicketSource(StrEnum):
    """The channels crewdesk itself names a ticket's source with. A backlog import may name its own system
    (`--source legacy-crm`); metrics count such sources as "other" (crewdesk/metrics: `channel_label`)."""

    api = "api"  # POST /tickets
    email = "email"  # IMAP poll, .eml/mbox/Maildir import
    jira = "jira"  # the Jira webhook; a Jira CSV backlog
    file = "file"  # crewdesk submit/run, a CSV or JSON-lines backlog
    zendesk = "zendesk"  # a Zendesk export backlog
    eval = "eval"  # crewdesk eval tau2-retail
    example = "example"  # crewdesk eval examples
    bench = "bench"  # bench/
    test = "test"  # the test suite's tickets


# Jira issue keys: a project key (a capital letter, then capitals, digits or _) and the number. Nothing else
# (no "/", "?", "..") may reach a Jira URL as a key.
JIRA_KEY = re.compile(r"^[A-Z][A-Z0-9_]+-[0-9]+$")  # [0-9], not \d: \d also matches non-ASCII digits


def jira_key_problem(key: str | None) -> str | None:
    """Why `key` is not a Jira issue key, or None when it is one."""
    if key is not None and JIRA_KEY.fullmatch(key):
        return None
    return f"{(key or '')[:300]!r} is not a Jira issue key (PROJECT-123)"


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

    @model_validator(mode="after")
    def _jira_key(self) -> TicketIn:
        """A Jira ticket's id is its issue key, which the Jira connector puts in URLs: only a real key is taken."""
        problem = jira_key_problem(self.external_id) if self.source == TicketSource.jira else None
        if problem:
            raise ValueError(f"external_id: {problem}")
        return self


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
