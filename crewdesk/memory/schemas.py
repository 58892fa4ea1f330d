"""What the memory stores and returns: knowledge-base chunks, customer interaction summaries, search hits."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Kind = Literal["kb", "interactions"]


class KBChunk(BaseModel):
    """One retrievable passage of a knowledge-base document."""

    id: str = Field(description="Stable: hash of source, heading path and content, so re-ingesting an unchanged file changes nothing.")
    source: str = Field(description="The file it came from (absolute path).")
    title: str = Field(default="", description="The document's title.")
    heading: str = Field(default="", description="Heading path inside the document, e.g. 'Order Issue > Manage Upgrade'.")
    text: str = Field(description="The passage itself.")
    product: str = Field(default="", description="Product or topic tag for filtering; empty when none applies.")
    position: int = Field(default=0, description="Order of the chunk within its source.")

    @property
    def content(self) -> str:
        """What is embedded and indexed for keywords: the heading path carries much of a short chunk's meaning."""
        return "\n".join(part for part in (self.title, self.heading, self.text) if part)


class Interaction(BaseModel):
    """A PII-redacted summary of one finished ticket, keyed by a hash of the customer, never their address."""

    id: str = Field(description="Stable per customer and ticket: a re-run replaces its summary.")
    customer_key: str = Field(description="HMAC/SHA-256 of the normalised customer id.")
    ticket_id: int
    summary: str = Field(description="Issue, actions taken and outcome, with personal data replaced by placeholders.")
    category: str = ""
    product: str = ""
    outcome: str = Field(description="The ticket's final status: resolved or escalated.")
    created_at: datetime = Field(description="When it was remembered (UTC); retention counts from here.")


class KBFilters(BaseModel):
    """Exact-match metadata filters for knowledge-base search; None means any."""

    source: str | None = None
    product: str | None = None


class RecallFilters(BaseModel):
    """Exact-match metadata filters for recalling a customer's interactions; None means any."""

    outcome: str | None = None
    product: str | None = None
    category: str | None = None


class KBHit(BaseModel):
    chunk: KBChunk
    score: float = Field(description="Fused relevance in [0, 1]: alpha * vector + (1 - alpha) * keyword, each min-max normalised.")


class RecallHit(BaseModel):
    interaction: Interaction
    score: float


class SyncReport(BaseModel):
    """What ingesting one source changed."""

    source: str
    added: int = 0
    removed: int = 0
    unchanged: int = 0
