"""Label values that come from data: bounded, so no ticket source can make a new time series."""

from __future__ import annotations

from crewdesk.tickets.schemas import TicketSource

_CHANNELS = frozenset(source.value for source in TicketSource)


def channel_label(source: str) -> str:
    """A ticket's source as the `channel` label: one of TicketSource's values, else "other" (a backlog's own
    `--source`, or anything a future channel writes before it is named there)."""
    return source if source in _CHANNELS else "other"
