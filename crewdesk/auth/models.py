"""API keys: a public prefix to find the row, the Argon2id hash of the whole key, and the scopes it grants."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from crewdesk.db import Base, JSONType, utcnow


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)  # who holds it: recorded as the actor of what it does
    prefix: Mapped[str] = mapped_column(String(16), unique=True)  # the key's public part, to find its row
    hash: Mapped[str] = mapped_column(String(256))  # Argon2id of the whole key; the key itself is never stored
    scopes: Mapped[list] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
