"""structlog set-up: JSON lines with ticket_id, run_id and the Celery task id bound through contextvars."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

# An e-mail address in a log value: a delivery error names its recipients, an IMAP error its sender. Logs keep the
# domain (which server refused) and the address's first letter, never the address.
_ADDRESS = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})")


def mask_addresses(text: str) -> str:
    return _ADDRESS.sub(r"\1***@\2", text)


def _mask(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """No customer's address in a log line (exceptions included: this runs after format_exc_info)."""
    return {k: mask_addresses(v) if isinstance(v, str) else v for k, v in event_dict.items()}


def configure_logging(*, level: str = "INFO", json: bool = True) -> None:
    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _mask,
    ]
    # plain tracebacks: rich's pretty tracebacks walk every local, and CrewAI's object graphs make that take minutes
    processors.append(
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # CrewAI warns on every call that a custom LLM has no native token counter; we count from usage.
    logging.getLogger("crewai.llms.base_llm").setLevel(logging.ERROR)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


bind = structlog.contextvars.bind_contextvars
unbind = structlog.contextvars.unbind_contextvars
clear = structlog.contextvars.clear_contextvars
