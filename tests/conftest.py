"""Test set-up. The environment is fixed before any crewdesk import; PostgreSQL and Redis are real.

The only things mocked are what cannot run here: cloud model APIs (a local HTTP stand-in where a test
needs one). A guard makes any other outbound HTTP call from a test fail loudly.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="crewdesk-test-"))
os.environ.update(
    CREWAI_DISABLE_TELEMETRY="true",
    OTEL_SDK_DISABLED="true",
    CREWAI_TRACING_ENABLED="false",
    CREWAI_TESTING="true",
    CREWAI_STORAGE_DIR=str(_HOME / "crewai"),
    CREWDESK_HOME=str(_HOME),
    # the exemplars' vectors are built once per test session and shared by every test's home and worker (each test
    # has a home of its own; rebuilding them there cost about two minutes per worker start)
    CREWDESK_CACHE_DIR=str(_HOME / "cache"),
    CREWDESK_LLM_PROVIDER="scripted",
    CREWDESK_PROCEDURES="false",  # the crew path; tests/integration/test_procedures.py turns procedures on with its own router
    # one-shot procedures: writes made at once; tests/integration/test_conversations.py turns the store's policy on
    CREWDESK_CONFIRM_WRITES="off",
    # the model's yes/no check of each item written unasked (crews/procedures/check.py) is a second reading; the scripted
    # model would say yes to every item, one more call per write in tests that are about the reader;
    # tests/integration/test_procedures.py turns it on where it is the subject
    CREWDESK_WRITE_CHECK="off",
    # test tickets (make_ticket's source "test") stand for the evaluation's: a customer identified by the ticket's text
    # (an e-mail address, or name and zip) may have writes made, as with the default's "eval"; e-mail and API tickets
    # keep the production rule, and tests/security checks it
    CREWDESK_IDENTITY_CLAIMED_WRITES='["eval", "example", "test"]',
    CREWDESK_LOG_JSON="true",
    CREWDESK_LOG_LEVEL="WARNING",
    CREWDESK_LLM_BREAKER_PREFIX="crewdesk-test:breaker",  # circuit-breaker state the tests leave in Redis stays apart
)
for _leak in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
    os.environ.pop(_leak, None)

import httpx  # noqa: E402
import psycopg  # noqa: E402
import pytest  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import text  # noqa: E402

from crewdesk.logging import configure_logging  # noqa: E402
from tests import helpers  # noqa: E402

configure_logging(level="WARNING", json=True)

PG_ADMIN_URL = os.environ.get("CREWDESK_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CREWDESK_TEST_REDIS", "redis://127.0.0.1:6379/15")
TABLES = (
    "audit_events",
    "audit_chains",
    "audit_seals",
    "approvals",
    "api_keys",
    "users",
    "tool_effects",
    "pii_tokens",
    "inbound_events",
    "attachments",
    "messages",
    "crew_runs",
    "tickets",
    "mailbox_cursors",
    "backlog_imports",
)

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(autouse=True)
def _no_real_network_models(monkeypatch):
    """Any HTTP call off this machine (a cloud model, a hub download) fails the test loudly."""
    real_send = httpx.Client.send
    real_async_send = httpx.AsyncClient.send

    def guard(request: httpx.Request) -> None:
        if request.url.host not in _LOOPBACK:
            raise AssertionError(f"test tried to reach {request.url.host}: real network model calls are not allowed in tests")

    def send(self, request, *args, **kwargs):
        guard(request)
        return real_send(self, request, *args, **kwargs)

    async def async_send(self, request, *args, **kwargs):
        guard(request)
        return await real_async_send(self, request, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", send)
    monkeypatch.setattr(httpx.AsyncClient, "send", async_send)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A fresh PostgreSQL database for this run, migrated with Alembic, dropped at the end."""
    name = f"crewdesk_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    url = f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    from crewdesk.migrate import upgrade

    upgrade(url)
    yield url
    from sqlalchemy import create_engine

    create_engine(url).dispose()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def engine(pg_url):
    from crewdesk.db import make_engine

    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine):
    """Tables emptied before each test. The pipeline commits from several sessions and threads,
    so a wrapping rolled-back transaction cannot isolate it; TRUNCATE is fast on these small tables."""
    from crewdesk.db import make_session_factory

    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        conn.execute(text("UPDATE audit_seal_head SET last_hash = :genesis, count = 0"), {"genesis": "0" * 64})  # a new, empty seal log
    return make_session_factory(engine)


@pytest.fixture
def settings(pg_url):
    from crewdesk.settings import load_settings

    return load_settings(database_url=pg_url, llm_provider="scripted", broker_url=REDIS_URL)


@pytest.fixture(scope="session")
def store_data():
    from crewdesk.store.service import DEFAULT_DB_JSON, read_store

    return read_store(DEFAULT_DB_JSON)


@pytest.fixture
def store(session_factory, store_data):
    """The demo system of record, freshly loaded; returns the session factory."""
    from crewdesk.db import transaction
    from crewdesk.store.service import load_store

    with transaction(session_factory) as db:
        load_store(db=db, data=store_data)
    return session_factory


@pytest.fixture
def redis_url():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture
def make_ticket(session_factory):
    from crewdesk.db import transaction
    from crewdesk.tickets import service
    from crewdesk.tickets.schemas import TicketIn

    def make(body: str = "I was charged twice for my invoice this month, please refund one charge.", **fields) -> int:
        data = {
            "external_id": fields.pop("external_id", uuid.uuid4().hex[:10]),
            "source": "test",
            "customer": "ana@example.com",
            "subject": "Question",
            "body": body,
            **fields,
        }
        with transaction(session_factory) as db:
            ticket, _ = service.submit(db=db, ticket_in=TicketIn(**data))
            return ticket.id

    return make


@pytest.fixture
def worker_env(pg_url, redis_url, tmp_path):
    env = dict(os.environ)
    env.update(
        CREWDESK_DATABASE_URL=pg_url,
        CREWDESK_BROKER_URL=redis_url,
        CREWDESK_LLM_PROVIDER="scripted",
        CREWDESK_PROCEDURES="false",  # the crew path; tests/integration/test_procedures.py turns procedures on with its own router
        CREWDESK_SCRIPTED_LATENCY_MS="0",
        CREWDESK_HOME=str(tmp_path / "home"),
    )
    return env


@pytest.fixture
def start_worker(worker_env, tmp_path):
    workers: list = []

    def start(**overrides: str) -> helpers.Worker:
        env = {**worker_env, **overrides}
        worker = helpers.Worker(env, tmp_path / f"worker{len(workers)}.log").start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def pytest_collection_modifyitems(config, items):
    """The folder gives the kind: tests/unit runs in-process with no services; tests/integration talks to real servers;
    tests/security holds one test per hole of the security review (issue 20), with real servers where the hole needs
    them. `pytest -m unit`, `-m integration` or `-m security` runs one kind (or name the folder)."""
    for item in items:
        kind = item.path.parent.name
        if kind in ("unit", "integration", "security"):
            item.add_marker(getattr(pytest.mark, kind))


def pytest_collection_finish(session):
    """scripts/test compares this count with the JUnit report's: a run that stops early without a failure (a signal
    the process took for an exit, a library calling sys.exit) must not read as a pass."""
    target = os.environ.get("CREWDESK_TEST_COLLECTED")
    if target:
        Path(target).write_text(str(len(session.items)))


def pytest_configure(config):
    """SIGTERM ends the run as a failure that says so. CrewAI's telemetry turns SIGTERM into SystemExit(0), which would
    end pytest at once with exit status 0, the remaining tests unrun and the summary unprinted."""
    import signal
    import traceback

    def terminated(signum, frame):
        sys.stderr.write("\nthe test process received SIGTERM; the run stops here, as a failure. Where it was:\n")
        sys.stderr.write("".join(traceback.format_stack(frame)))
        pytest.exit("SIGTERM received during the run", returncode=143)

    signal.signal(signal.SIGTERM, terminated)
    # A shell without job control starts a background job (`scripts/test &`, `nohup ... &`) with SIGINT ignored, and
    # every process the tests start would inherit that: crewdesk keeps a signal it was started with ignored (as `nohup`
    # asks), so the Ctrl-C tests would test nothing. They stand for a command run in the foreground: give it Ctrl-C back.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
