"""create_app: the routers, the typed-error table, and what the routes share, built once."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from crewdesk import __version__
from crewdesk.api import approvals, errors, health, limits, problems, tickets, webhooks
from crewdesk.api.auth import TicketReader
from crewdesk.api.common import AUTH
from crewdesk.api.deps import Services
from crewdesk.api.keycache import KeyCache
from crewdesk.auth.oidc import OidcConfig, TokenVerifier
from crewdesk.console import create_console
from crewdesk.db import make_engine, make_session_factory
from crewdesk.intake.enqueue import Enqueuer, Send
from crewdesk.intake.jira_webhook import RefusalLimiter
from crewdesk.settings import Settings
from crews.approvals import gate_factory


def token_verifier(settings: Settings) -> TokenVerifier | None:
    """OIDC bearer tokens beside API keys, when an issuer is configured."""
    if not settings.oidc_issuer:
        return None
    return TokenVerifier(
        OidcConfig(issuer=settings.oidc_issuer, audience=settings.oidc_audience, jwks_url=settings.oidc_jwks_url, scope_claim=settings.oidc_scope_claim)
    )


def _celery_delivery(settings: Settings) -> Callable[[int], object]:
    """Celery's deliver_replies by task name, the Celery app configured at the first send (not when the app is built)."""

    def deliver(ticket_id: int) -> None:
        from workers.app import configure, delivery_sender

        delivery_sender(configure(settings))(ticket_id)

    return deliver


def console_configured(settings: Settings) -> bool:
    """The support console is served with a secret to sign its sessions, or in console_dev; else not at all."""
    return bool(settings.console_secret_key.get_secret_value()) or settings.console_dev


def create_app(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session] | None = None,
    send: Send | None = None,
    deliver: Callable[[int], object] | None = None,
) -> FastAPI:
    """`send(ticket_ids)` puts tickets on the broker's queue; it defaults to Celery's (workers.app.ticket_sender), and
    tests and embedders may pass their own. Tickets reach it only through the Enqueuer (crewdesk/intake/enqueue.py).
    `deliver(ticket_id)` sends a ticket's undelivered messages (a person's reply in the console) through its channel;
    it defaults to Celery's deliver_replies task (workers.app.delivery_sender), configured when first used."""
    factory = session_factory or make_session_factory(make_engine(settings.database_url))
    if send is None:
        from workers.app import configure, ticket_sender

        send = ticket_sender(configure(settings))

    # No open /docs or /redoc; the OpenAPI document is served to any valid key (below).
    app = FastAPI(
        title="crewdesk", version=__version__, description="Agentic customer-support worker service.", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.services = Services(
        settings=settings,
        session_factory=factory,
        enqueuer=Enqueuer(session_factory=factory, send=send),
        gates=gate_factory(settings, factory),  # reads agents/ and tasks/ once: deciding an approval builds no crew
        refusals=RefusalLimiter(settings.jira_refusals_per_minute),
        metrics_registry=health.metrics_registry(factory, settings),
        keys=KeyCache(),
        tokens=token_verifier(settings),
    )
    errors.install(app)
    problems.install(app)  # 422s as problem details
    limits.install(app, max_body_bytes=settings.api_max_body_bytes, rate_limit=settings.api_rate_limit, redis_url=settings.broker_url)
    app.include_router(health.router)
    app.include_router(webhooks.router)  # authenticated by its HMAC signature (crewdesk/intake/jira_webhook.py)
    for router in (tickets.router, approvals.router):  # every route needs a key with its scope (crewdesk/api/auth.py)
        app.include_router(router, responses=AUTH)

    if console_configured(settings):  # session cookies, not API keys: its pages redirect to its login (crewdesk/console)
        services = app.state.services
        app.mount(
            "/console",
            create_console(
                settings,
                session_factory=factory,
                gates=services.gates,
                resume=lambda ticket_id: services.enqueuer([ticket_id]),
                deliver=deliver or _celery_delivery(settings),
            ),
        )

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_caller: TicketReader) -> dict:
        return app.openapi()

    return app
