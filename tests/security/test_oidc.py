"""OIDC bearer tokens beside API keys (issue 20: "OAuth2/OIDC bearer tokens verified with PyJWT against a JWKS").

The identity provider is a real HTTP server on loopback serving a discovery document and a JWKS made from an RSA key
generated here; the tokens are signed with it by PyJWT. (No real provider runs here; this one serves the same two
documents a provider's endpoints serve.)"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from crewdesk.api.app import create_app


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rsa():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Provider:
    """An issuer on loopback: /.well-known/openid-configuration and /jwks.json."""

    def __init__(self) -> None:
        self.key, self.kid = _rsa(), "k1"
        self.requests = 0
        self.down = False
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                provider.requests += 1
                if provider.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": provider.issuer, "jwks_uri": f"{provider.issuer}/jwks.json"}
                elif self.path == "/jwks.json":
                    jwk = json.loads(RSAAlgorithm.to_jwk(provider.key.public_key()))
                    body = {"keys": [{**jwk, "kid": provider.kid, "use": "sig", "alg": "RS256"}]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, *, key=None, kid=None, alg="RS256", **claims) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": "crewdesk", "sub": "alice", "iat": now, "exp": now + 300, "scope": "openid tickets:read", **claims}
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key or self.key, algorithm=alg, headers={"kid": kid or self.kid})


@pytest.fixture
def provider():
    p = Provider()
    yield p
    p.server.shutdown()


@pytest.fixture
def oidc_app(settings, session_factory, provider):
    settings = settings.model_copy(update={"oidc_issuer": provider.issuer, "oidc_audience": "crewdesk"})
    return create_app(settings, session_factory=session_factory, send=lambda _ticket_ids: None)


def _get(app, path, token):
    return TestClient(app).get(path, headers={"Authorization": f"Bearer {token}"})


def test_a_token_from_the_issuer_with_the_scope_is_accepted_and_names_its_subject(oidc_app, provider, session_factory):
    from crewdesk.auth.oidc import TokenVerifier

    good = provider.token()
    response = _get(oidc_app, "/approvals", good)
    assert response.status_code == 403 and response.json()["detail"] == "the token of 'oidc:alice' lacks the scope approvals:decide"
    assert _get(oidc_app, "/tickets/999999", good).status_code == 404  # tickets:read: let in, and the ticket is not there
    assert _get(oidc_app, "/approvals", provider.token(scope="approvals:decide", sub="bob")).status_code == 200
    assert _get(oidc_app, "/approvals", provider.token(scp=["approvals:decide"], scope=None)).status_code == 403  # another claim: not read
    verifier = oidc_app.state.services.tokens
    assert isinstance(verifier, TokenVerifier)
    principal = verifier.verify(provider.token(scope="tickets:read tickets:submit cats:feed"))
    assert principal is not None and principal.name == "oidc:alice" and principal.key_id is None
    assert principal.scopes == {"tickets:read", "tickets:submit"}  # scopes crewdesk does not know are dropped


@pytest.mark.parametrize(
    "case",
    ["expired", "wrong_issuer", "wrong_audience", "no_audience", "other_key", "unknown_kid", "alg_none", "hs256_with_public_key", "tampered", "not_a_jwt"],
)
def test_a_token_that_proves_nobody_is_a_401(oidc_app, provider, case):
    now = int(time.time())
    public_pem = provider.key.public_key().public_bytes(encoding=serialization.Encoding.PEM, format=serialization.PublicFormat.SubjectPublicKeyInfo)
    good = provider.token()
    header, payload, signature = good.split(".")
    confused = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": provider.kid}).encode())
    forged_payload = b64(json.dumps({**jwt.decode(good, options={"verify_signature": False}), "sub": "root"}).encode())
    token = {
        "expired": provider.token(exp=now - 3600, iat=now - 7200),
        "wrong_issuer": provider.token(iss="https://evil.example"),
        "wrong_audience": provider.token(aud="another-service"),
        "no_audience": provider.token(aud=None),
        "other_key": provider.token(key=_rsa()),
        "unknown_kid": provider.token(kid="k9", key=_rsa()),
        "alg_none": jwt.encode({**jwt.decode(good, options={"verify_signature": False})}, None, algorithm="none", headers={"kid": provider.kid}),
        # the classic confusion: the provider's public key used as an HMAC secret
        "hs256_with_public_key": f"{confused}.{payload}.{b64(hmac.new(public_pem, f'{confused}.{payload}'.encode(), 'sha256').digest())}",
        "tampered": f"{header}.{forged_payload}.{signature}",
        "not_a_jwt": "a.b.c",
    }[case]
    response = _get(oidc_app, "/tickets/1", token)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json" and response.headers["WWW-Authenticate"].startswith("Bearer")


def test_api_keys_keep_working_beside_tokens_and_tokens_are_refused_where_no_issuer_is_configured(settings, session_factory, oidc_app, provider):
    from tests.helpers import api_key

    key = api_key(session_factory, "reader", ("tickets:read",))
    assert _get(oidc_app, "/tickets/999999", key).status_code == 404
    plain = create_app(settings, session_factory=session_factory, send=lambda _ticket_ids: None)
    assert plain.state.services.tokens is None
    assert _get(plain, "/tickets/999999", provider.token()).status_code == 401  # no issuer configured: a JWT is just an unknown key


def test_a_provider_that_cannot_be_reached_is_a_503_not_a_401(oidc_app, provider):
    provider.down = True
    response = _get(oidc_app, "/tickets/1", provider.token())
    assert response.status_code == 503 and "identity provider" in response.json()["detail"]


def test_a_key_cannot_be_named_like_a_token_caller(session_factory):
    from tests.helpers import api_key

    with pytest.raises(ValueError, match="no ':'"):
        api_key(session_factory, "oidc:alice", ("admin",))
