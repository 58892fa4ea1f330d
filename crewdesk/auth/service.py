"""Create, verify and revoke API keys. A key is `cdk_<prefix>_<secret>`: the prefix finds its row, the Argon2id hash of
the whole key proves it (argon2-cffi, the maintained binding of the reference implementation). The key is shown once,
when it is created, and never stored."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from crewdesk.auth.models import ApiKey
from crewdesk.db import utcnow
from crewdesk.errors import Conflict, NotFound

# What a key may do. admin grants every scope.
SCOPES = ("tickets:submit", "tickets:read", "approvals:decide", "metrics:read", "admin")
_HASHER = PasswordHasher()  # Argon2id, the library's defaults (RFC 9106's second recommended option)


@dataclass(frozen=True)
class Principal:
    """The caller a key or an OIDC token proves: its name (the actor in the audit trail) and its scopes. `key_id` is the
    API key's row; None for a token (crewdesk/auth/oidc.py), whose name is `oidc:<subject>`."""

    key_id: int | None
    name: str
    scopes: frozenset[str]

    def may(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def create(*, db: Session, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """A new key for `name` with these scopes; returns the row and the key, which is not kept anywhere."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    if not name.strip() or ":" in name:
        raise ValueError("a key's name must be non-empty and hold no ':' (names like oidc:<subject> are OIDC callers)")
    if db.execute(select(ApiKey.id).where(ApiKey.name == name)).first() is not None:
        raise Conflict(f"an API key named {name!r} exists; revoke it first or choose another name")
    prefix = secrets.token_hex(6)
    key = f"cdk_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(name=name, prefix=prefix, hash=_HASHER.hash(key), scopes=sorted(set(scopes)))
    db.add(row)
    db.flush()
    return row, key


def verify(*, db: Session, key: str) -> Principal | None:
    """The principal the key proves, or None: unknown, malformed, wrong secret or revoked all look the same."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "cdk":
        return None
    row = db.execute(select(ApiKey).where(ApiKey.prefix == parts[1])).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    try:
        _HASHER.verify(row.hash, key)
    except (VerificationError, InvalidHashError):
        return None
    return Principal(key_id=row.id, name=row.name, scopes=frozenset(row.scopes))


def listing(*, db: Session) -> list[ApiKey]:
    return list(db.execute(select(ApiKey).order_by(ApiKey.id)).scalars())


def revoke(*, db: Session, name: str) -> ApiKey:
    row = db.execute(select(ApiKey).where(ApiKey.name == name)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no API key named {name!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
