"""Login throttling in the console (issue 22, crewdesk/console/throttle.py): after CREWDESK_CONSOLE_LOGIN_FAILURES_PER_MINUTE
failed logins for a name or from an address, the next login is 429 with Retry-After, the password unchecked (the right one
too), until the minute has passed; each failure and refusal is logged. A right password clears the name's count."""

from __future__ import annotations

import pytest
from starlette.routing import Mount
from structlog.testing import capture_logs

from crewdesk.api import create_app
from crewdesk.console.throttle import LoginThrottle
from tests.security import test_console
from tests.security.test_console import PASSWORD, client, csrf

console_settings, people = test_console.console_settings, test_console.people  # its fixtures


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(console_settings, session_factory, people, clock):
    made = create_app(console_settings.model_copy(update={"console_login_failures_per_minute": 3}), session_factory=session_factory, send=lambda _ids: None)
    (console,) = [r.app for r in made.routes if isinstance(r, Mount) and r.path == "/console"]
    assert console.state.login_throttle.limit == 3  # the setting reached the console
    console.state.login_throttle = LoginThrottle(3, clock=clock)
    return made


def attempt(browser, name: str, password: str):
    return browser.post("/console/login", data={"name": name, "password": password, "csrf_token": csrf(browser.get("/console/login"))})


def test_failed_logins_are_throttled_per_name_and_logged(app, clock):
    browser = client(app)
    with capture_logs() as events:
        for _ in range(3):
            assert attempt(browser, "lena", "wrong password").status_code == 401
        refused = attempt(browser, "lena", PASSWORD)  # the right password, after three failures: not even checked
        assert refused.status_code == 429 and refused.headers["retry-after"] == "60" and "Too many failed logins" in refused.text
        assert attempt(client(app), "LENA ", PASSWORD).status_code == 429  # the same name, however written, from elsewhere too
        clock.now += 30
        assert attempt(browser, "lena", PASSWORD).headers["retry-after"] == "30"
        clock.now += 30.5
        answer = attempt(browser, "lena", PASSWORD)  # the minute has passed
        assert answer.status_code == 303 and answer.headers["location"] == "/console/queues"
    assert [e["event"] for e in events].count("console_login_failed") == 3 and {"name": "lena", "address": "testclient"}.items() <= events[0].items()
    assert [e["event"] for e in events].count("console_login_throttled") == 3


def test_one_address_guessing_many_names_is_throttled_and_a_right_password_clears_only_the_name(app, clock):
    throttle = LoginThrottle(2, clock=clock)
    for name in ("arno", "lena"):
        throttle.failed(name, "10.0.0.9")
    assert throttle.retry_after("max", "10.0.0.9") == 60  # the address's count, whatever name it tries
    assert throttle.retry_after("max", "10.0.0.7") == 0
    throttle.failed("max", "10.0.0.7")
    throttle.failed("max", "10.0.0.8")
    assert throttle.retry_after("max", "10.0.0.6") == 60  # the name's count, from any address
    throttle.succeeded("max")
    assert throttle.retry_after("max", "10.0.0.6") == 0 and throttle.retry_after("max", "10.0.0.9") == 60
    assert LoginThrottle(0, clock=clock).retry_after("max", "10.0.0.9") == 0  # 0: no limit


def test_names_tried_once_are_forgotten_after_their_minute(clock, monkeypatch):
    monkeypatch.setattr("crewdesk.console.throttle.KEPT", 10)
    throttle = LoginThrottle(5, clock=clock)
    for i in range(10):
        throttle.failed(f"guess{i}", "10.0.0.9")
    clock.now += 61
    throttle.failed("lena", "10.0.0.8")
    assert sorted(throttle._failures) == ["address:10.0.0.8", "name:lena"]
