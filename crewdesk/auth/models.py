"""API keys (a public prefix to find the row, the Argon2id hash of the whole key, the scopes it grants) and the
console's users (a name, the Argon2id hash of the password, a role)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crewdesk.db import Base, EnumText, JSONType, utcnow


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)  # who holds it: recorded as the actor of what it does
    prefix: Mapped[str] = mapped_column(String(16), unique=True)  # the key's public part, to find its row
    hash: Mapped[str] = mapped_column(String(256))  # Argon2id of the whole key; the key itself is never stored
    scopes: Mapped[list] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class UserRole(StrEnum):
    """What a person may do in the support console: an agent reads queues and tickets, a lead also decides approvals,
    an admin everything a lead may (and, later, manages users)."""

    agent = "agent"
    lead = "lead"
    admin = "admin"


class User(Base):
    """A person who logs in to the support console with a password (stored only as its Argon2id hash), or through the
    console's OIDC provider (then named `oidc:<subject>`, as the API names that subject's bearer tokens, with no
    password: an empty hash, which no password matches)."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_users_oidc_subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)  # the actor recorded for what they do (an approval's decided_by)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[UserRole] = mapped_column(EnumText(UserRole, 16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    oidc_issuer: Mapped[str | None] = mapped_column(String(512), nullable=True)  # migration 0016: set for OIDC users only
    oidc_subject: Mapped[str | None] = mapped_column(String(255), nullable=True)
