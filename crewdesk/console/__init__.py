"""The support console (issue 22): server-rendered pages for people (queues, a ticket, the approvals inbox), logged
in with a local user's password, served by `crewdesk api` under /console (crewdesk/api/app.py mounts it)."""

from crewdesk.console.app import ConsoleMisconfigured, create_console, session_secret

__all__ = ["ConsoleMisconfigured", "create_console", "session_secret"]
