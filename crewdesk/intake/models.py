"""Intake's tables, defined with the domains in crewdesk.inbound.models (tickets refer to them, and a domain may not
import a channel); re-exported here for the intake channels."""

from __future__ import annotations

from crewdesk.inbound.models import BacklogImport as BacklogImport
from crewdesk.inbound.models import InboundEvent as InboundEvent
from crewdesk.inbound.models import MailboxCursor as MailboxCursor
