"""The support console's users: create one with a role, verify a name and password (Argon2id, argon2-cffi, as the API
keys), read one back for each request so that a disabled user or a changed role takes effect at once."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from crewdesk.auth.models import User, UserRole
from crewdesk.db import utcnow
from crewdesk.errors import Conflict, NotFound

MIN_PASSWORD_LENGTH = 12
_HASHER = PasswordHasher()  # Argon2id with the library's defaults (RFC 9106's second recommended option)
# Verified against when the name is unknown, so an unknown name costs the same time as a wrong password.
_DUMMY_HASH = _HASHER.hash("crewdesk: no such user")


def create(*, db: Session, name: str, password: str, role: UserRole | str) -> User:
    """A new user; ValueError for an empty name, a name with ':' (kept for OIDC subjects, as API keys) or a password
    shorter than MIN_PASSWORD_LENGTH; Conflict when the name is taken."""
    role = UserRole(role)
    if not name.strip() or ":" in name or name != name.strip():
        raise ValueError("a user's name must be non-empty, without ':' and without surrounding spaces")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password must have at least {MIN_PASSWORD_LENGTH} characters")
    if db.execute(select(User.id).where(User.name == name)).first() is not None:
        raise Conflict(f"a user named {name!r} exists")
    user = User(name=name, password_hash=_HASHER.hash(password), role=role)
    db.add(user)
    db.flush()
    return user


def authenticate(*, db: Session, name: str, password: str) -> User | None:
    """The user this name and password prove, or None: unknown, disabled and wrong password look the same."""
    user = db.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is not None and not user.password_hash:
        user = None  # an OIDC user has no password: refused as an unknown name, in the same time
    try:
        _HASHER.verify(user.password_hash if user is not None else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled_at is not None:
        return None
    return user


def active(*, db: Session, user_id: int) -> User | None:
    """The user a session names, while they are not disabled."""
    user = db.get(User, user_id)
    return user if user is not None and user.disabled_at is None else None


def listing(*, db: Session) -> list[User]:
    return list(db.execute(select(User).order_by(User.id)).scalars())


def disable(*, db: Session, name: str) -> User:
    user = db.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no user named {name!r}")
    if user.disabled_at is None:
        user.disabled_at = utcnow()
    return user
