"""OIDC login to the support console (issue 22: "OIDC login where configured").

The identity provider is tests/oidc_provider.py, a STAND-IN: no real identity provider runs here, so a real HTTP server
on a free loopback port serves the discovery document, a JWKS with an RSA key made per run, /authorize (redirecting back
with a one-time code and the state) and /token (checking the client's secret, the code and the PKCE verifier, and
answering with an RS256 ID token carrying the nonce). The console finds it by its discovery URL and talks to it over
HTTP; the person's browser is FastAPI's TestClient for the console (https, production cookies) and a plain HTTP request
to the provider's /authorize. Real PostgreSQL."""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError
from sqlalchemy import select

from crewdesk.api import create_app
from crewdesk.audit.models import AuditEvent
from crewdesk.auth import users
from crewdesk.auth.models import User, UserRole
from crewdesk.auth.oidc_login import Identity, LoginConfig, claim_values, role_of, sign_in
from crewdesk.db import transaction
from crewdesk.settings import Settings
from tests.oidc_provider import StandInProvider, rsa_key
from tests.security.test_console import PASSWORD, SECRET, client, csrf

ROLES = {"support": "agent", "support-leads": "lead", "crewdesk-admins": "admin"}


@pytest.fixture
def provider():
    running = StandInProvider()
    yield running
    running.close()


def oidc_settings(settings, provider: StandInProvider, **changes):
    return settings.model_copy(
        update={
            "console_secret_key": SECRET,
            "console_oidc_issuer": provider.issuer,
            "console_oidc_client_id": provider.client_id,
            "console_oidc_client_secret": SecretStr(provider.client_secret),
            "console_oidc_name": "Stand-in IdP",
            "console_oidc_roles": ROLES,
            **changes,
        }
    )


@pytest.fixture
def app(settings, provider, session_factory):
    with transaction(session_factory) as db:
        users.create(db=db, name="lena", password=PASSWORD, role="lead")
    return create_app(oidc_settings(settings, provider), session_factory=session_factory, send=lambda _ids: None)


def at_provider(browser: TestClient, provider: StandInProvider) -> str:
    """Start the login in the console and pass the provider's /authorize (a real HTTP request): the callback URL the
    provider sends the browser back to."""
    start = browser.get("/console/login/oidc")
    assert start.status_code == 303, start.text
    assert start.headers["location"].startswith(f"{provider.base}/authorize?")
    back = httpx.get(start.headers["location"], follow_redirects=False)
    assert back.status_code == 302, back.status_code
    callback = back.headers["location"]
    assert callback.startswith("https://testserver/console/login/oidc/callback?"), callback
    return callback


def oidc_login(app, provider: StandInProvider) -> tuple[TestClient, httpx.Response]:
    browser = client(app)
    return browser, browser.get(at_provider(browser, provider))


def user_row(session_factory, name: str) -> User | None:
    with session_factory() as db:
        return db.execute(select(User).where(User.name == name)).scalar_one_or_none()


def login_audits(session_factory) -> list[AuditEvent]:
    with session_factory() as db:
        return list(db.execute(select(AuditEvent).where(AuditEvent.kind == "login").order_by(AuditEvent.id)).scalars())


def assert_refused(browser: TestClient, answer: httpx.Response, status: int, words: str) -> None:
    assert answer.status_code == status, (answer.status_code, answer.text[:500])
    assert words in answer.text
    assert browser.get("/console/queues").status_code == 303  # no session came of it


def test_a_login_through_the_provider_maps_the_role_and_shows_the_queues(app, provider, session_factory):
    page = client(app).get("/console/login")
    assert "Sign in with Stand-in IdP" in page.text and 'type="password"' in page.text  # passwords still work beside it

    browser, answer = oidc_login(app, provider)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/queues", answer.text[:500]
    queues = browser.get("/console/queues")
    assert queues.status_code == 200 and "oidc:u-1001 (agent)" in queues.text and "Needs a person" in queues.text
    assert "/console/approvals" not in queues.text  # an agent: no approvals inbox
    assert browser.get("/console/approvals").status_code == 403

    # what the console sent: PKCE with S256, state and nonce at /authorize; the verifier and the secret at /token
    sent = provider.authorize_requests[-1]
    assert sent["code_challenge_method"] == "S256" and sent["state"] and sent["nonce"] and "openid" in sent["scope"].split()
    assert sent["redirect_uri"] == "https://testserver/console/login/oidc/callback"
    assert len(provider.token_requests[-1]["code_verifier"]) >= 43 and "client_secret" not in provider.token_requests[-1]

    row = user_row(session_factory, "oidc:u-1001")
    assert row is not None and row.role == UserRole.agent and row.oidc_issuer == provider.issuer and row.oidc_subject == "u-1001"
    assert row.password_hash == ""  # no password: one cannot log in as them with one
    form = client(app).get("/console/login")
    assert client(app).post("/console/login", data={"name": "oidc:u-1001", "password": "", "csrf_token": csrf(form)}).status_code in (401, 403, 422)
    audited = login_audits(session_factory)
    assert [(a.name, a.actor, a.ticket_id, a.result["role"], a.result["created"]) for a in audited] == [("oidc", "oidc:u-1001", None, "agent", True)]
    assert audited[0].arguments["who"] == "nadia" and audited[0].arguments["subject"] == "u-1001"

    # the provider's groups decide the role at every login: now a lead, the same user
    provider.person["groups"] = ["support", "support-leads"]
    lead, answer = oidc_login(app, provider)
    assert answer.status_code == 303
    assert "oidc:u-1001 (lead)" in lead.get("/console/queues").text and lead.get("/console/approvals").status_code == 200
    audited = login_audits(session_factory)
    assert (audited[-1].result["role"], audited[-1].result["role_before"], audited[-1].result["created"]) == ("lead", "agent", False)
    with session_factory() as db:
        assert db.execute(select(User).where(User.oidc_subject == "u-1001")).scalars().all()[0].id == row.id

    # a local user's password still logs in
    local = client(app)
    form = local.get("/console/login")
    assert local.post("/console/login", data={"name": "lena", "password": PASSWORD, "csrf_token": csrf(form)}).status_code == 303


def test_a_callback_with_another_state_is_refused_and_a_started_login_answers_once(app, provider, session_factory):
    browser = client(app)
    callback = at_provider(browser, provider)
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    forged = f"{parts.path}?{urlencode({**query, 'state': 'not-the-state'})}"
    assert_refused(browser, browser.get(forged), 400, "state does not match")
    # the login was used up by the refused answer: the right state now finds nothing started
    assert_refused(browser, browser.get(callback), 400, "No login was started")
    # another browser (an attacker's code and state) finds nothing started in it either
    other = client(app)
    assert_refused(other, other.get(at_provider(client(app), provider)), 400, "No login was started")
    assert user_row(session_factory, "oidc:u-1001") is None and login_audits(session_factory) == []


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        ({"nonce": "a nonce from another login"}, "belongs to another login"),
        ({"aud": "another-client"}, "could not be verified"),
        ({"exp": int(time.time()) - 600, "iat": int(time.time()) - 900}, "could not be verified"),
        ({"iss": "https://idp.example.com"}, "could not be verified"),
        ({"nonce": None}, "could not be verified"),
    ],
    ids=["wrong-nonce", "wrong-audience", "expired", "wrong-issuer", "no-nonce"],
)
def test_an_id_token_that_does_not_hold_is_refused(app, provider, session_factory, spoil, words):
    provider.claims = spoil
    browser, answer = oidc_login(app, provider)
    assert_refused(browser, answer, 401, words)
    assert user_row(session_factory, "oidc:u-1001") is None and login_audits(session_factory) == []


def test_an_id_token_signed_by_another_key_is_refused(app, provider, session_factory):
    provider.sign_with = rsa_key()  # same kid, not the JWKS key
    browser, answer = oidc_login(app, provider)
    assert_refused(browser, answer, 401, "could not be verified")
    assert user_row(session_factory, "oidc:u-1001") is None


def test_a_person_without_a_mapped_role_is_refused(app, provider, session_factory):
    provider.person["groups"] = ["marketing", "sales"]
    browser, answer = oidc_login(app, provider)
    assert_refused(browser, answer, 403, "no crewdesk role")
    assert user_row(session_factory, "oidc:u-1001") is None  # nobody is created without a role
    refusal = login_audits(session_factory)
    assert [(a.name, a.actor, a.error) for a in refusal] == [("oidc_refused", "oidc:u-1001", "no_mapped_role")]
    assert refusal[0].arguments["claimed"] == ["marketing", "sales"]


def test_a_disabled_user_is_refused(app, provider, session_factory):
    browser, answer = oidc_login(app, provider)
    assert answer.status_code == 303 and browser.get("/console/queues").status_code == 200
    with transaction(session_factory) as db:
        users.disable(db=db, name="oidc:u-1001")
    assert browser.get("/console/queues").status_code == 303  # out at once, as a local user
    again, answer = oidc_login(app, provider)
    assert_refused(again, answer, 403, "disabled")
    assert [(a.name, a.error) for a in login_audits(session_factory)] == [("oidc", None), ("oidc_refused", "disabled")]


def test_the_provider_refusing_or_unreachable_logs_nobody_in(app, provider, settings, session_factory):
    provider.deny = True
    browser, answer = oidc_login(app, provider)
    assert_refused(browser, answer, 403, "did not log you in (access_denied)")
    provider.deny = False
    provider.client_secret = "the provider rotated it"  # our secret is refused at /token
    browser, answer = oidc_login(app, provider)
    assert_refused(browser, answer, 400, "did not accept the login")
    gone = StandInProvider()
    gone.close()  # a port nothing listens on any more
    down = create_app(oidc_settings(settings, gone), session_factory=session_factory, send=lambda _ids: None)
    browser = client(down)
    assert_refused(browser, browser.get("/console/login/oidc"), 503, "cannot be reached")


def test_the_issuer_is_matched_exactly_as_the_provider_writes_it(settings, session_factory):
    slashed = StandInProvider(slash=True)  # Auth0 writes its issuer with a trailing slash, and its tokens' iss so
    try:
        browser, answer = oidc_login(create_app(oidc_settings(settings, slashed), session_factory=session_factory, send=lambda _ids: None), slashed)
        assert answer.status_code == 303 and browser.get("/console/queues").status_code == 200
        row = user_row(session_factory, "oidc:u-1001")
        assert row is not None and row.oidc_issuer == slashed.base + "/"
        # configured without it: the discovery document names another issuer, and nothing is trusted
        unslashed = create_app(oidc_settings(settings, slashed, console_oidc_issuer=slashed.base), session_factory=session_factory, send=lambda _ids: None)
        browser = client(unslashed)
        assert_refused(browser, browser.get("/console/login/oidc"), 503, "cannot be reached")
    finally:
        slashed.close()
    config = LoginConfig.from_settings(oidc_settings(settings, slashed))
    assert config is not None and config.client_secret == slashed.client_secret and slashed.client_secret not in repr(config)


def test_passwords_can_be_turned_off_and_oidc_is_off_unless_configured(settings, provider, session_factory):
    with transaction(session_factory) as db:
        users.create(db=db, name="lena", password=PASSWORD, role="lead")
    only_oidc = create_app(oidc_settings(settings, provider, console_password_login=False), session_factory=session_factory, send=lambda _ids: None)
    browser = client(only_oidc)
    page = browser.get("/console/login")
    assert "Sign in with Stand-in IdP" in page.text and 'type="password"' not in page.text
    browser, answer = oidc_login(only_oidc, provider)
    assert answer.status_code == 303 and browser.get("/console/queues").status_code == 200
    # a right password, with the session's CSRF token (the page has no password form to take it from): refused
    token = csrf(browser.get("/console/queues"))
    refused = browser.post("/console/login", data={"name": "lena", "password": PASSWORD, "csrf_token": token})
    assert refused.status_code == 403 and "Passwords are turned off" in refused.text
    assert "oidc:u-1001 (agent)" in browser.get("/console/queues").text  # still the OIDC login, not lena's

    plain = create_app(settings.model_copy(update={"console_secret_key": SECRET}), session_factory=session_factory, send=lambda _ids: None)
    browser = client(plain)
    page = browser.get("/console/login")
    assert "Sign in with" not in page.text and 'type="password"' in page.text
    assert browser.get("/console/login/oidc").status_code == 404


def test_the_settings_refuse_an_unsafe_or_incomplete_oidc_login(monkeypatch):
    for name in ("CONSOLE_OIDC_ISSUER", "CONSOLE_OIDC_CLIENT_ID", "CONSOLE_OIDC_ROLES", "CONSOLE_PASSWORD_LOGIN"):
        monkeypatch.delenv(f"CREWDESK_{name}", raising=False)
    good = {"console_oidc_issuer": "https://idp.example.com/realms/support", "console_oidc_client_id": "crewdesk", "console_oidc_roles": ROLES}
    assert Settings(**good).console_oidc_roles == ROLES
    assert Settings(**{**good, "console_oidc_issuer": "http://127.0.0.1:8080"}).console_oidc_issuer  # http on loopback only
    for wrong, words in (
        ({"console_oidc_issuer": "http://idp.example.com"}, "https"),
        ({"console_oidc_client_id": ""}, "client_id"),
        ({"console_oidc_roles": {}}, "console_oidc_roles"),
        ({"console_oidc_roles": {"support": "superuser"}}, "unknown roles"),
    ):
        with pytest.raises(ValidationError, match=words):
            Settings(**{**good, **wrong})
    with pytest.raises(ValidationError, match="nobody could log in"):
        Settings(console_password_login=False)


def test_two_first_logins_of_one_person_at_once_make_one_user(provider, session_factory):
    """The second request's insert waits on the first's (the unique index), then finds the user the first made."""
    identity = Identity(issuer=provider.issuer, subject="u-2002", role=UserRole.agent, claimed=("support",), display="tom")
    first = session_factory()
    made_id = sign_in(db=first, identity=identity).id  # inserted, not yet committed
    seen: dict[str, object] = {}

    def second() -> None:
        with session_factory() as db:
            try:
                seen["id"] = sign_in(db=db, identity=identity).id
                db.commit()
            except Exception as exc:  # noqa: BLE001 - reported below
                seen["error"] = exc

    waiting = threading.Thread(target=second)
    waiting.start()
    time.sleep(1.0)
    assert waiting.is_alive()  # held by the first login's insert
    first.commit()
    first.close()
    waiting.join(timeout=20)
    assert not waiting.is_alive() and seen == {"id": made_id}
    with session_factory() as db:
        assert db.execute(select(User).where(User.oidc_subject == "u-2002")).scalars().all()[0].id == made_id
        assert len(db.execute(select(User).where(User.oidc_subject == "u-2002")).scalars().all()) == 1
    assert [a.result["created"] for a in login_audits(session_factory)] == [True, False]


def test_user_list_says_how_each_user_logs_in(tmp_path):
    """On the SQLite quickstart (migration 0016 there too): an OIDC user is listed with their issuer, and can be disabled."""
    from sqlalchemy import create_engine, text

    from tests.integration.test_cli import cli

    env = {"CREWDESK_HOME": str(tmp_path), "CREWDESK_DATABASE_URL": ""}
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    assert cli("user", "add", "lena", "--role", "lead", "--password-file", str(secret), env=env).returncode == 0
    [database] = list(tmp_path.rglob("*.db"))
    with create_engine(f"sqlite:///{database}").begin() as conn:
        conn.execute(
            text("INSERT INTO users (name, password_hash, role, created_at, oidc_issuer, oidc_subject) VALUES (:n, '', 'agent', CURRENT_TIMESTAMP, :i, :s)"),
            {"n": "oidc:u-3003", "i": "https://idp.example.com/realms/support", "s": "u-3003"},
        )
    listed = cli("user", "list", env={**env, "COLUMNS": "200"})
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if line.count("│") > 4 and "name" not in line}
    assert "password" in rows["lena"] and "OIDC https://idp.example.com/realms/support" in rows["oidc:u-3003"], listed.stdout
    assert cli("user", "disable", "oidc:u-3003", env=env).returncode == 0


def test_the_role_claim_is_read_by_its_path_and_the_highest_mapped_role_wins():
    claims = {"groups": "support crewdesk-admins", "realm_access": {"roles": ["offline_access", "support-leads"]}}
    roles = {k: UserRole(v) for k, v in ROLES.items()}
    assert claim_values(claims, "groups") == ("support", "crewdesk-admins")
    assert role_of(claim_values(claims, "groups"), roles) == UserRole.admin
    assert role_of(claim_values(claims, "realm_access.roles"), roles) == UserRole.lead
    assert claim_values(claims, "realm_access.missing") == () and role_of((), roles) is None
