"""A stand-in OpenID Connect provider for the console's OIDC login tests. No real identity provider (Keycloak, Entra ID,
Okta, Dex) runs here, so this one serves over real HTTP on a free loopback port what such a provider serves to a
confidential client using the authorization-code flow with PKCE:

- /.well-known/openid-configuration: the discovery document (issuer, endpoints, jwks_uri, S256, client_secret_basic);
- /jwks: the public half of an RSA key made per run;
- /authorize: checks the request (response_type=code, our client id, a redirect URI, an S256 code challenge, state and
  nonce) and, for the person the test has "logged in" at the provider (`person`), redirects back with a one-time code
  and the state (or with error=access_denied when `deny`);
- /token: checks the client's Basic credentials, the code (once), the redirect URI and the PKCE verifier against the
  challenge, and answers with an ID token signed by the JWKS key (RS256, kid k1) carrying the nonce.

A test spoils the next ID token with `claims` (claims to change; None removes one) or `sign_with` (another key)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class StandInProvider:
    def __init__(self, *, client_id: str = "crewdesk-console", client_secret: str = "stand-in client secret", slash: bool = False) -> None:
        """`slash`: the issuer ends in a slash, as Auth0's does (the endpoints are under the same base)."""
        self.client_id, self.client_secret = client_id, client_secret
        self.key, self.kid = rsa_key(), "k1"
        self.person: dict[str, Any] = {"sub": "u-1001", "preferred_username": "nadia", "email": "nadia@example.com", "groups": ["support"]}
        self.claims: dict[str, Any] = {}  # changes to the next ID tokens
        self.sign_with: rsa.RSAPrivateKey | None = None  # a key that is not in the JWKS
        self.deny = False
        self.codes: dict[str, dict[str, Any]] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/.well-known/openid-configuration":
                    self._json(200, provider.discovery())
                elif url.path == "/jwks":
                    jwk = json.loads(RSAAlgorithm.to_jwk(provider.key.public_key()))
                    self._json(200, {"keys": [{**jwk, "kid": provider.kid, "use": "sig", "alg": "RS256"}]})
                elif url.path == "/authorize":
                    status, headers = provider.authorize(query)
                    self._answer(status, b"", headers)
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if urlsplit(self.path).path != "/token":
                    self._json(404, {"error": "not_found"})
                    return
                status, body = provider.token(form, self.headers.get("Authorization", ""))
                self._json(status, body)

            def _json(self, status: int, body: object) -> None:
                self._answer(status, json.dumps(body).encode(), {"Content-Type": "application/json"})

            def _answer(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.issuer = self.base + ("/" if slash else "")
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.base}/authorize",
            "token_endpoint": f"{self.base}/token",
            "jwks_uri": f"{self.base}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "scopes_supported": ["openid", "profile", "email", "groups"],
        }

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        self.authorize_requests.append(query)
        redirect = query.get("redirect_uri", "")
        good = (
            query.get("response_type") == "code"
            and query.get("client_id") == self.client_id
            and redirect.startswith(("https://", "http://"))
            and query.get("code_challenge_method") == "S256"
            and len(query.get("code_challenge", "")) == 43
            and query.get("state")
            and query.get("nonce")
            and "openid" in query.get("scope", "").split()
        )
        if not good:
            return 400, {}
        if self.deny:
            return 302, {"Location": f"{redirect}?{urlencode({'error': 'access_denied', 'state': query['state']})}"}
        code = secrets.token_urlsafe(24)
        self.codes[code] = {"challenge": query["code_challenge"], "nonce": query["nonce"], "redirect_uri": redirect, "person": dict(self.person)}
        return 302, {"Location": f"{redirect}?{urlencode({'code': code, 'state': query['state']})}"}

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        self.token_requests.append(form)
        scheme, _, encoded = authorization.partition(" ")
        user, _, password = base64.b64decode(encoded or "").decode().partition(":") if scheme == "Basic" else ("", "", "")
        if (unquote_plus(user), unquote_plus(password)) != (self.client_id, self.client_secret):  # RFC 6749 2.3.1: form-encoded, then Basic
            return 401, {"error": "invalid_client"}
        grant = self.codes.pop(form.get("code", ""), None)  # a code is good once
        if form.get("grant_type") != "authorization_code" or grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        if base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode() != grant["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "azp": self.client_id, "iat": now, "exp": now + 300, "nonce": grant["nonce"], **grant["person"]}
        claims.update(self.claims)
        claims = {k: v for k, v in claims.items() if v is not None}
        id_token = jwt.encode(claims, self.sign_with or self.key, algorithm="RS256", headers={"kid": self.kid})
        return 200, {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
