"""How a run's failure is told apart: the database or a model server went away (a retry may pass), or the model
misbehaved (garbage output, a loop CrewAI stopped: the ticket goes to a person instead); anything else fails the run."""

from __future__ import annotations

import psycopg
from crewai.utilities.converter import ConverterError
from sqlalchemy import exc as sa_exc

from crewdesk.errors import ModelOutputError, TransientError


def is_connection_error(exc: BaseException) -> bool:
    """The database went away (restart, failover, a dropped connection): the next try, on a fresh connection, may pass.
    A constraint violation or a bad query is not this: it fails the same way every time."""
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) and not isinstance(exc, psycopg.errors.QueryCanceled)


def classify_error(exc: BaseException) -> type[Exception] | None:
    """Find a TransientError or a model misbehaving (garbage output, a loop CrewAI stopped) anywhere in the
    chain CrewAI may have wrapped."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TransientError) or is_connection_error(current):
            return TransientError
        if isinstance(current, (ModelOutputError, ConverterError)) or "guardrail validation" in str(current) or "not making progress" in str(current):
            return ModelOutputError
        current = current.__cause__ or current.__context__
    return None
