"""A person's login to the support console through an OIDC provider (issue 22): the authorization-code flow with PKCE
(S256), state and nonce, against the provider its discovery document describes (<issuer>/.well-known/openid-configuration,
whose `issuer` must be the configured one).

The ID token from the token endpoint is verified with PyJWT against the provider's JWKS: its signature (asymmetric
algorithms only, as the API's bearer tokens: crewdesk/auth/oidc.py), `iss`, `aud` (our client id; `azp` too when
present), `exp`, `iat` and the `nonce` this login sent. The person's crewdesk role comes from one claim (a group or
role list, `console_oidc_role_claim`) through `console_oidc_roles`; the highest mapped role wins, and a person with
none is refused. The console user is found by (issuer, subject), created on the first login as `oidc:<subject>` (the
name the API gives that subject's bearer tokens, so the approval rules see one person), with no password; its role
follows the claim at every login; a disabled user is refused. Every login of an identified person, and every refusal
of one, is an audit row on the system chain (kind `login`) and a log line."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import jwt
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crewdesk.audit import service as audit
from crewdesk.auth.models import User, UserRole
from crewdesk.auth.oidc import ALGORITHMS
from crewdesk.errors import CrewdeskError, IdentityProviderUnavailable
from crewdesk.logging import get_logger

log = get_logger(__name__)
PENDING_SECONDS = 600  # a login started longer ago than this is refused at the callback
DISCOVERY_SECONDS = 3600  # the discovery document is read again after this long
RANK = {UserRole.agent: 1, UserRole.lead: 2, UserRole.admin: 3}


class LoginRefused(CrewdeskError):
    """An OIDC login that proves nobody or a person who may not log in. `status` is the HTTP answer; `reason` a short
    word for the log and the audit row; the message is what the login page shows."""

    def __init__(self, message: str, *, reason: str, status: int = 401) -> None:
        super().__init__(message)
        self.reason, self.status = reason, status


@dataclass(frozen=True)
class LoginConfig:
    issuer: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    name: str = ""  # shown on the login page's button
    scopes: str = "openid profile email"
    role_claim: str = "groups"
    roles: Mapping[str, UserRole] | None = None
    redirect_url: str = ""  # empty: derived from the request by the console
    leeway_seconds: float = 30.0
    timeout_seconds: float = 10.0

    @classmethod
    def from_settings(cls, settings: Any) -> LoginConfig | None:
        """The settings' console_oidc_*; None when no issuer is set (no OIDC login)."""
        if not settings.console_oidc_issuer:
            return None
        return cls(
            issuer=settings.console_oidc_issuer,  # exactly as the provider writes it (Auth0's ends in a slash)
            client_id=settings.console_oidc_client_id,
            client_secret=settings.console_oidc_client_secret.get_secret_value(),
            name=settings.console_oidc_name or (urlsplit(settings.console_oidc_issuer).hostname or "your identity provider"),
            scopes=settings.console_oidc_scopes,
            role_claim=settings.console_oidc_role_claim,
            roles={value: UserRole(role) for value, role in settings.console_oidc_roles.items()},
            redirect_url=settings.console_oidc_redirect_url,
        )


@dataclass(frozen=True)
class Pending:
    """A started login, kept in the person's signed session until the provider sends them back."""

    state: str
    nonce: str
    verifier: str  # PKCE code_verifier; the provider saw only its S256 challenge
    redirect_uri: str
    started: float

    def as_session(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_session(cls, value: Any) -> Pending | None:
        try:
            return cls(**value) if isinstance(value, dict) else None
        except TypeError:
            return None


@dataclass(frozen=True)
class Identity:
    """What a verified ID token says about the person."""

    issuer: str
    subject: str
    role: UserRole | None  # None: no value of the role claim is mapped
    claimed: tuple[str, ...]  # the role claim's values, for the log
    display: str  # preferred_username, email or name, for the log


def challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def claim_values(claims: Mapping[str, Any], path: str) -> tuple[str, ...]:
    """The values of a claim, found by a dotted path (realm_access.roles); a string (space-separated) or a list."""
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def role_of(values: tuple[str, ...], roles: Mapping[str, UserRole]) -> UserRole | None:
    """The highest crewdesk role any of the values maps to; None when none does."""
    mapped = [roles[v] for v in values if v in roles]
    return max(mapped, key=RANK.__getitem__) if mapped else None


class OidcLogin:
    """One provider: its discovery document (read on first use, again after DISCOVERY_SECONDS) and its JWKS (PyJWKClient,
    which fetches again on an unknown key id, so a key rotation is followed)."""

    def __init__(self, config: LoginConfig) -> None:
        self.config = config
        self._metadata: dict[str, Any] | None = None
        self._read_at = 0.0
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is None or time.monotonic() - self._read_at > DISCOVERY_SECONDS:
                found = self._discover()
                if self._jwks is None or self._metadata is None or found["jwks_uri"] != self._metadata["jwks_uri"]:
                    self._jwks = jwt.PyJWKClient(found["jwks_uri"], cache_keys=True, lifespan=300, timeout=int(self.config.timeout_seconds))
                self._metadata, self._read_at = found, time.monotonic()
            return self._metadata

    def _discover(self) -> dict[str, Any]:
        where = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = httpx.get(where, timeout=self.config.timeout_seconds)
            response.raise_for_status()
            found = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise IdentityProviderUnavailable(f"the identity provider's configuration could not be read ({where}): {type(exc).__name__}") from exc
        if not isinstance(found, dict) or found.get("issuer") != self.config.issuer:  # OpenID Connect Discovery 4.3: identical
            named = found.get("issuer") if isinstance(found, dict) else None
            raise IdentityProviderUnavailable(
                f"the identity provider's configuration ({where}) names the issuer {named!r}: set CREWDESK_CONSOLE_OIDC_ISSUER to exactly that"
            )
        for needed in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(found.get(needed), str) or not found[needed].startswith(("https://", "http://")):
                raise IdentityProviderUnavailable(f"the identity provider's configuration ({where}) names no {needed}")
        return found

    def start(self, redirect_uri: str) -> tuple[Pending, str]:
        """A new login: what to keep in the session, and the provider's authorization URL to send the person to."""
        pending = Pending(
            state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32), verifier=secrets.token_urlsafe(64), redirect_uri=redirect_uri, started=time.time()
        )
        scopes = self.config.scopes.split()
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(["openid", *(s for s in scopes if s != "openid")]),
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": challenge(pending.verifier),
            "code_challenge_method": "S256",
        }
        endpoint = self.metadata()["authorization_endpoint"]
        return pending, endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    def finish(self, pending: Pending | None, *, state: str, code: str) -> Identity:
        """The person the provider sent back with `code` proves, for the login `pending` started; LoginRefused otherwise."""
        if pending is None:
            raise LoginRefused("No login was started in this browser, or it was already used: start again.", reason="no_pending_login", status=400)
        if not state or not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise LoginRefused("The login's state does not match the one this browser started: start again.", reason="state_mismatch", status=400)
        if time.time() - pending.started > PENDING_SECONDS:
            raise LoginRefused("The login took too long: start again.", reason="login_expired", status=400)
        if not code:
            raise LoginRefused("The identity provider sent no code: start again.", reason="no_code", status=400)
        claims = self.verify(self._exchange(pending, code), nonce=pending.nonce)
        values = claim_values(claims, self.config.role_claim)
        display = next((str(claims[k]) for k in ("preferred_username", "email", "name") if isinstance(claims.get(k), str)), "")
        return Identity(
            issuer=self.config.issuer, subject=claims["sub"], role=role_of(values, self.config.roles or {}), claimed=values[:20], display=display[:128]
        )

    def _exchange(self, pending: Pending, code: str) -> str:
        """The ID token for `code`, from the token endpoint, with the PKCE verifier and our client's credentials."""
        metadata = self.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": pending.redirect_uri, "code_verifier": pending.verifier}
        auth: httpx.BasicAuth | None = None
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if self.config.client_secret and ("client_secret_basic" in methods or "client_secret_post" not in methods):
            # RFC 6749 2.3.1: id and secret form-encoded before the Basic encoding
            auth = httpx.BasicAuth(quote(self.config.client_id, safe=""), quote(self.config.client_secret, safe=""))
        else:
            form["client_id"] = self.config.client_id
            if self.config.client_secret:
                form["client_secret"] = self.config.client_secret
        try:
            response = httpx.post(metadata["token_endpoint"], data=form, auth=auth, timeout=self.config.timeout_seconds, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise IdentityProviderUnavailable(f"the identity provider's token endpoint could not be reached: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise IdentityProviderUnavailable(f"the identity provider's token endpoint answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("id_token"), str):
            error = body.get("error", "") if isinstance(body, dict) else ""
            raise LoginRefused("The identity provider did not accept the login: start again.", reason=f"token_refused:{str(error)[:64]}", status=400)
        return body["id_token"]

    def verify(self, token: str, *, nonce: str) -> dict[str, Any]:
        """The ID token's claims when its signature (by a key of the provider's JWKS), issuer, audience, expiry and nonce
        hold; LoginRefused otherwise."""
        self.metadata()
        assert self._jwks is not None
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise IdentityProviderUnavailable(f"the identity provider's keys could not be fetched: {exc}") from exc
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
            raise LoginRefused("The identity provider's answer could not be verified.", reason=f"id_token_key:{type(exc).__name__}") from exc
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.config.client_id,
                issuer=self.config.issuer,
                leeway=self.config.leeway_seconds,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]},
            )
        except jwt.InvalidTokenError as exc:
            raise LoginRefused("The identity provider's answer could not be verified.", reason=f"id_token:{type(exc).__name__}") from exc
        if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"].encode(), nonce.encode()):
            raise LoginRefused("The identity provider's answer belongs to another login.", reason="nonce_mismatch")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if ("azp" in claims or len(audiences) > 1) and claims.get("azp") != self.config.client_id:
            raise LoginRefused("The identity provider's answer was issued to another client.", reason="azp_mismatch")
        if not isinstance(claims["sub"], str) or not claims["sub"].strip() or len(claims["sub"]) > 123:
            raise LoginRefused("The identity provider's answer names no usable subject.", reason="bad_subject")
        return claims


def sign_in(*, db: Session, identity: Identity) -> User:
    """The console user `identity` is: found by (issuer, subject), or created as `oidc:<subject>` on a first login with a
    mapped role; its role set from the claim. LoginRefused (403) for a disabled user, a person without a mapped role, or
    a name another user holds. Audited on the system chain either way; the caller commits."""
    user = db.execute(select(User).where(User.oidc_issuer == identity.issuer, User.oidc_subject == identity.subject)).scalar_one_or_none()
    name = user.name if user is not None else f"oidc:{identity.subject}"
    facts = {"issuer": identity.issuer, "subject": identity.subject, "who": identity.display, "claimed": list(identity.claimed)}
    refusal = ""
    if user is not None and user.disabled_at is not None:
        refusal = "disabled"
    elif identity.role is None:
        refusal = "no_mapped_role"
    elif user is None and db.execute(select(User.id).where(User.name == name)).first() is not None:
        refusal = "name_taken"
    if refusal:
        audit.record(db=db, kind="login", name="oidc_refused", actor=name, arguments=facts, error=refusal)
        log.warning("console_oidc_login_refused", user=name, reason=refusal, **facts)
        message = {
            "disabled": "This user is disabled in crewdesk.",
            "no_mapped_role": "Your account has no crewdesk role: ask an administrator to add you to a support group.",
            "name_taken": "Another crewdesk user holds this name.",
        }[refusal]
        raise LoginRefused(message, reason=refusal, status=403)
    assert identity.role is not None
    created = user is None
    before = None if user is None else user.role
    if user is None:
        try:
            with db.begin_nested():  # a savepoint: the same person's first login in another request may insert first
                user = User(name=name, password_hash="", role=identity.role, oidc_issuer=identity.issuer, oidc_subject=identity.subject)
                db.add(user)
        except IntegrityError:
            user = db.execute(select(User).where(User.oidc_issuer == identity.issuer, User.oidc_subject == identity.subject)).scalar_one_or_none()
            if user is None:  # the name, not this person: another user took it in between
                raise LoginRefused("Another crewdesk user holds this name.", reason="name_taken", status=403) from None
            created, before = False, user.role
    user.role = identity.role
    db.flush()
    audit.record(
        db=db,
        kind="login",
        name="oidc",
        actor=name,
        arguments=facts,
        result={"user_id": user.id, "role": identity.role.value, "created": created, "role_before": before.value if before else None},
    )
    log.info("console_oidc_login", user=name, user_id=user.id, role=identity.role.value, created=created, role_before=before.value if before else None, **facts)
    return user
