"""Which reply channel serves which ticket source, from settings. A source with no channel configured gets none:
its replies are read through the API or CLI."""

from __future__ import annotations

from crewdesk.connectors.base import ReplyChannel
from crewdesk.settings import ReplySettings


def reply_channels(settings: ReplySettings) -> dict[str, ReplyChannel]:
    channels: dict[str, ReplyChannel] = {}
    if settings.smtp_host:
        from crewdesk.connectors.smtp import SmtpReplyChannel

        channels["email"] = SmtpReplyChannel.from_settings(settings)
    if settings.jira_base_url:
        from crewdesk.connectors.jira import JiraReplyChannel

        channels["jira"] = JiraReplyChannel.from_settings(settings)
    return channels


def reply_sources(settings: ReplySettings) -> frozenset[str]:
    """The ticket sources `reply_channels` serves, without building the channels (what the console says of a reply)."""
    return frozenset(source for source, configured in (("email", settings.smtp_host), ("jira", settings.jira_base_url)) if configured)
