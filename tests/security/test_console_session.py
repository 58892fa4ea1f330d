"""A console login lasts CREWDESK_CONSOLE_SESSION_HOURS from the moment it was made (issue 22). The session cookie's own
expiry is renewed by every response (Starlette's SessionMiddleware), and the queues' counts are polled every 10 s, so
an open tab would otherwise stay logged in for ever; the login time in the signed session ends it instead."""

from __future__ import annotations

import time

from tests.security import test_console
from tests.security.test_console import logged_in

app, console_settings, people, resumed = test_console.app, test_console.console_settings, test_console.people, test_console.resumed  # its fixtures


def test_a_login_ends_after_its_hours_however_often_the_page_polls(app, console_settings, monkeypatch):
    lena = logged_in(app, "lena")
    started = time.time()
    hours = console_settings.console_session_hours
    assert hours == 8.0
    for elapsed in (0.0, 3600.0, hours * 3600 - 60):  # polls all along: each response renews the cookie
        monkeypatch.setattr("crewdesk.console.security.time.time", lambda elapsed=elapsed: started + elapsed)
        assert lena.get("/console/queues/counts").status_code == 200, elapsed
    monkeypatch.setattr("crewdesk.console.security.time.time", lambda: started + hours * 3600 + 60)
    counts = lena.get("/console/queues/counts")
    assert counts.status_code == 204 and counts.headers["hx-redirect"] == "/console/login"
    page = lena.get("/console/queues")
    assert page.status_code == 303 and page.headers["location"] == "/console/login"
    monkeypatch.undo()
    assert lena.get("/console/queues").status_code == 303  # the session was cleared, not only refused that once
    assert logged_in(app, "lena").get("/console/queues").status_code == 200  # a new login starts a new span
