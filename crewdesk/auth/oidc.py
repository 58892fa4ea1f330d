"""OIDC bearer tokens: a JWT issued by the configured identity provider, verified with PyJWT against the provider's JWKS
(signature, issuer, audience, expiry, not-before; asymmetric algorithms only, so a token signed with `none` or with the
public key as an HMAC secret is refused). Its scopes are crewdesk's scopes found in one claim (`scope`, a space-separated
string, by default; `scp` or `roles` as lists work too); any other scope in the token is ignored. The caller is
`oidc:<subject>`, the name the audit trail and the approval rules see."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from crewdesk.auth.service import SCOPES, Principal
from crewdesk.errors import IdentityProviderUnavailable

# Asymmetric only: the verification key comes from the provider's public JWKS, so an HMAC algorithm would let anyone who
# reads that JWKS sign tokens.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    audience: str
    jwks_url: str = ""  # empty: read from the issuer's /.well-known/openid-configuration
    scope_claim: str = "scope"
    subject_claim: str = "sub"
    leeway_seconds: float = 30.0


class TokenVerifier:
    """Verifies bearer tokens of one issuer; the JWKS is fetched on first use and cached (PyJWKClient refetches on an
    unknown key id, so a provider's key rotation is followed)."""

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._client: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    @staticmethod
    def looks_like_token(credential: str) -> bool:
        return credential.count(".") == 2 and not credential.startswith("cdk_")

    def _jwks(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._client is None:
                url = self.config.jwks_url or self._discover()
                self._client = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=10)
            return self._client

    def _discover(self) -> str:
        where = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = httpx.get(where, timeout=10)
            response.raise_for_status()
            url = response.json().get("jwks_uri")
        except (httpx.HTTPError, ValueError) as exc:
            raise IdentityProviderUnavailable(f"the identity provider's configuration could not be read ({where}): {type(exc).__name__}") from exc
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise IdentityProviderUnavailable(f"the identity provider's configuration ({where}) names no jwks_uri")
        return url

    def verify(self, token: str) -> Principal | None:
        """The principal the token proves, or None when it proves nobody (bad signature, issuer, audience, expired...)."""
        try:
            key = self._jwks().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise IdentityProviderUnavailable(f"the identity provider's keys could not be fetched: {exc}") from exc
        except (jwt.PyJWKClientError, jwt.InvalidTokenError):
            return None  # no key id we know, or not a JWT at all
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_seconds,
                options={"require": ["exp", "iss", "aud", self.config.subject_claim]},
            )
        except jwt.InvalidTokenError:
            return None
        subject = claims.get(self.config.subject_claim)
        if not isinstance(subject, str) or not subject.strip():
            return None
        return Principal(key_id=None, name=f"oidc:{subject.strip()}", scopes=frozenset(granted(claims.get(self.config.scope_claim))))


def granted(claim: Any) -> list[str]:
    """crewdesk's scopes among a token's: a space-separated string or a list of strings."""
    values = claim.split() if isinstance(claim, str) else [v for v in claim if isinstance(v, str)] if isinstance(claim, list) else []
    return sorted(set(values) & set(SCOPES))
