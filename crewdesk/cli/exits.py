"""How a command ends: every exception a command lets through gets its exit code here, by its type, and one line on
stderr instead of a traceback. What no row below names is a bug and keeps its traceback.

    exception (and its subclasses)                               exit code    stderr
    typer.Exit (a command's own ending)                          its code     -
    crewdesk.errors.CrewdeskError: NotFound, Conflict, the rest  ERROR_CODES  error: <message>
    sqlalchemy.exc.OperationalError                              2            error: cannot use the database: <first line>
    kombu.exceptions.OperationalError, redis.exceptions.         2            error: cannot reach the broker: <message>
        ConnectionError and TimeoutError
    click's usage errors (an unknown option, a bad value)        their code   click's usage message
    typer.Abort (Ctrl-C)                                         130          aborted
    anything else                                                -            a traceback

SystemExit is not caught: it ends the process with its own code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from sqlalchemy.exc import OperationalError as DatabaseUnusable

from crewdesk.cli.common import err
from crewdesk.errors import Conflict, CrewdeskError, NotFound

if TYPE_CHECKING:
    import click
    from typer._click.exceptions import ClickException as TyperClickException

# By the nearest class in the error's MRO. NotFound and Conflict keep the 2 every expected error has had (crewdesk/errors.py
# proposes 3 and 4): scripts and tests (tests/integration/test_cli.py: an unknown ticket, an unknown approval) rely on it. Give either
# its own code here, and nowhere else.
ERROR_CODES: dict[type[CrewdeskError], int] = {NotFound: 2, Conflict: 2, CrewdeskError: 2}


def error_code(exc: CrewdeskError) -> int:
    return next(ERROR_CODES[cls] for cls in type(exc).__mro__ if cls in ERROR_CODES)


def _broker_errors() -> tuple[type[Exception], ...]:
    """The broker's connection failures, imported when an error needs telling apart: kombu comes with Celery, which
    start-up does not load."""
    from kombu.exceptions import OperationalError as KombuUnreachable
    from redis.exceptions import ConnectionError as RedisUnreachable
    from redis.exceptions import TimeoutError as RedisTimeout

    return (KombuUnreachable, RedisUnreachable, RedisTimeout)


def _usage_errors() -> tuple[type[click.ClickException] | type[TyperClickException], ...]:
    """Click's usage errors: typer >= 0.2x vendors its own click, whose errors are not click's."""
    import click

    try:
        from typer._click.exceptions import ClickException as TyperClickException
    except ImportError:  # pragma: no cover - older typer uses click itself
        return (click.ClickException,)
    return (click.ClickException, TyperClickException)


def exit_code(exc: Exception) -> int | None:
    """Tell the user on stderr what ended the command and return the exit code; None for an exception no row of the
    table above names (the caller re-raises it)."""
    if isinstance(exc, typer.Exit):
        return exc.exit_code
    if isinstance(exc, CrewdeskError):
        err.print(f"error: {exc}", highlight=False)
        return error_code(exc)
    if isinstance(exc, DatabaseUnusable):
        err.print(f"error: cannot use the database: {str(exc.orig).strip().splitlines()[0]}", highlight=False)
        return 2
    if isinstance(exc, typer.Abort):
        err.print("aborted")
        return 130
    if isinstance(exc, _usage_errors()):
        exc.show()
        return exc.exit_code
    if isinstance(exc, _broker_errors()):
        err.print(f"error: cannot reach the broker: {exc}", highlight=False)
        return 2
    return None
