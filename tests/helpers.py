"""Helpers for tests that drive a real `crewdesk worker` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from crewdesk.llm.factory import LLMFactory
from crewdesk.tickets.models import Ticket


class RecordingFactory(LLMFactory):
    """Keeps the LLMs it built, so a test can compare the audit trail and the prompts with what really ran."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.built = []

    def build(self, **kwargs):
        llm = super().build(**kwargs)
        self.built.append(llm)
        return llm

    def prompts_text(self) -> str:
        return json.dumps([llm.prompts for llm in self.built])


ROOT = Path(__file__).resolve().parent.parent


class JsonStandIn(BaseHTTPRequestHandler):
    """Base of the stand-in handlers: answer with a JSON body (None: an empty one), quietly."""

    def answer(self, status: int, payload: object = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def http_stand_in(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local HTTP server for an API that cannot be reached from here (Stripe, Jira Cloud, OpenAI); yields its base URL."""
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


CREWDESK = str(Path(sys.executable).parent / "crewdesk")


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [CREWDESK, "worker", "--concurrency", "1", "--loglevel", "INFO"],
            env=self.env,
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if b"ready." in self.log.read_bytes():
                return self
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.2)
        raise AssertionError("worker did not start:\n" + self.log.read_text()[-3000:])

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def enqueue(settings, ticket_id: int) -> None:
    from workers.app import configure
    from workers.tasks import process_ticket

    configure(settings)
    process_ticket.apply_async(args=[ticket_id])


def wait_for(session_factory, predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_factory() as db:
            value = predicate(db)
            if value:
                return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def terminal(ticket_id):
    """The ticket's run has ended: resolved, escalated, failed, or waiting on the customer (crewdesk/tickets/models.TERMINAL)."""
    from crewdesk.tickets.models import TERMINAL

    return lambda db: db.get(Ticket, ticket_id).status in TERMINAL and db.get(Ticket, ticket_id)


def api_key(session_factory, name: str = "tester", scopes: tuple[str, ...] = ("admin",)) -> str:
    """A real API key in the test database (crewdesk/auth), as `crewdesk apikey create` makes one."""
    from crewdesk.auth import service as keys
    from crewdesk.db import transaction

    with transaction(session_factory) as db:
        _row, key = keys.create(db=db, name=name, scopes=list(scopes))
    return key


def api_client(app, session_factory, name: str = "tester", scopes: tuple[str, ...] = ("admin",)):
    """A TestClient that sends a key of these scopes with every request."""
    from fastapi.testclient import TestClient

    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {api_key(session_factory, name, scopes)}"
    return client
