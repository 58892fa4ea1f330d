"""HTTP face: submit a ticket, read its status and trail, decide approvals, receive Jira webhooks. Processing
happens on the queue.

One router per domain (tickets.py, approvals.py, webhooks.py, and health.py for /healthz and /metrics), assembled by
create_app (app.py) with what they share on app.state (deps.py); typed errors become status codes in errors.py."""

from crewdesk.api.app import create_app

__all__ = ["create_app"]
