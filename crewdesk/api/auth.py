"""Every route but /healthz and the signed Jira webhook needs an API key (`Authorization: Bearer <key>` or `X-API-Key`)
or, where an OIDC issuer is configured, one of its bearer tokens, with the route's scope, through FastAPI's Security
dependencies: 401 without a credential that proves someone, 403 without the scope. Keys are verified against their
Argon2id hash (crewdesk/auth); a verified key is remembered for CACHE_SECONDS (crewdesk/api/keycache.py), so a revoked
key stops working within that time. Tokens are verified on every request against the issuer's cached JWKS
(crewdesk/auth/oidc.py), so one stops working when it expires."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from crewdesk.auth import service as keys
from crewdesk.auth.oidc import TokenVerifier
from crewdesk.auth.service import Principal
from crewdesk.errors import Forbidden, Unauthenticated

_bearer = HTTPBearer(auto_error=False, description="An API key from `crewdesk apikey create`.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same key, in its own header.")


def caller(
    security_scopes: SecurityScopes,
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Principal:
    """The principal the request's key proves, holding every scope the route asks for."""
    key = bearer.credentials if bearer is not None else header
    if not key:
        raise Unauthenticated("an API key is required: Authorization: Bearer <key>, or X-API-Key (crewdesk apikey create)")
    services = request.app.state.services
    if services.tokens is not None and bearer is not None and TokenVerifier.looks_like_token(key):
        principal = services.tokens.verify(key)
        if principal is None:
            raise Unauthenticated("the bearer token is invalid or expired, or not issued for crewdesk")
        return _holding(principal, security_scopes)
    digest = hashlib.sha256(key.encode()).hexdigest()
    principal = services.keys.get(digest)
    if principal is None:
        with services.session_factory() as db:
            principal = keys.verify(db=db, key=key)
        if principal is None:
            raise Unauthenticated("the API key is unknown, malformed or revoked")
        services.keys.put(digest, principal)
    return _holding(principal, security_scopes)


def _holding(principal: Principal, security_scopes: SecurityScopes) -> Principal:
    missing = [scope for scope in security_scopes.scopes if not principal.may(scope)]
    if missing:
        what = "token of" if principal.key_id is None else "key"
        raise Forbidden(f"the {what} {principal.name!r} lacks the scope {', '.join(missing)}")
    return principal


# What a route's caller must hold, as the parameter's type: `caller: TicketReader`.
TicketSubmitter = Annotated[Principal, Security(caller, scopes=["tickets:submit"])]
TicketReader = Annotated[Principal, Security(caller, scopes=["tickets:read"])]
AnyCaller = Annotated[Principal, Security(caller)]  # the route checks the scopes itself (crewdesk/api/tickets.py _readable)
ApprovalDecider = Annotated[Principal, Security(caller, scopes=["approvals:decide"])]
MetricsReader = Annotated[Principal, Security(caller, scopes=["metrics:read"])]
