"""Connector interfaces. A company plugs in its own CRM, order system or payment provider by implementing these.
The system of record's interface (RetailStore, StoreError, READ, WRITE) is defined with the store domain, in
crewdesk.store.interface, and re-exported here."""

from __future__ import annotations

import ssl
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from crewdesk.errors import CrewdeskError
from crewdesk.store.interface import READ as READ
from crewdesk.store.interface import WRITE as WRITE
from crewdesk.store.interface import RetailStore as RetailStore
from crewdesk.store.interface import StoreError as StoreError


@dataclass(frozen=True)
class Refund:
    id: str
    status: str | None  # Stripe's API declares a refund's status nullable
    amount_cents: int
    currency: str


class PaymentProvider(ABC):
    """Moves money back to a customer. `idempotency_key` makes a repeated call a no-op at the provider."""

    @abstractmethod
    def refund(self, *, payment_reference: str, amount_cents: int, currency: str, idempotency_key: str, reason: str) -> Refund: ...


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """Verifying TLS (certificate chain and host name) for IMAP and SMTP: the system's CAs, plus the PEM `ca_file`
    when a private CA signed the mail server's certificate."""
    context = ssl.create_default_context()
    if ca_file:
        if not Path(ca_file).is_file():
            raise CrewdeskError(f"mail_ca_file {ca_file}: no such file")
        try:
            context.load_verify_locations(cafile=ca_file)
        except ssl.SSLError as exc:
            raise CrewdeskError(f"mail_ca_file {ca_file}: not PEM certificates ({exc})") from exc
    return context


class DeliveryRefused(CrewdeskError):
    """The channel refused a message for good (bad address, unknown issue): recorded on the message, not retried."""


@dataclass(frozen=True)
class OutboundMessage:
    """What a reply channel needs to send one message on a ticket, without touching the database."""

    message_id: int
    ticket_id: int
    ticket_external_id: str  # the channel's id for the ticket: the first Message-ID, the Jira issue key
    customer: str
    subject: str
    body: str
    public: bool  # False: an internal note for the team (a Jira internal comment; e-mail sends nothing)
    thread: tuple[str, ...] = ()  # channel message ids on the ticket, oldest first (e-mail References)
    in_reply_to: str | None = None  # the customer's message this one answers (e-mail In-Reply-To); None: the thread's latest


class ReplyChannel(ABC):
    """Sends our messages back on the channel a ticket came from (SMTP for e-mail, a comment for Jira).
    Raise TransientError to be retried later and DeliveryRefused to give up on that message."""

    source: str

    @abstractmethod
    def deliver(self, message: OutboundMessage) -> str | None:
        """Send it; return the channel's id for what was sent (Message-ID, comment id), or None when the channel
        deliberately sends nothing for this message (e.g. an internal note on e-mail)."""

    def syncs_status(self, status: str) -> bool:
        """Whether sync_status does anything for a ticket that ended in `status` (resolved, escalated)."""
        return False

    def sync_status(self, *, ticket_external_id: str, status: str) -> StatusSync | None:
        """Mirror the ticket's final status on the channel's own record (a Jira transition), after its replies
        went out. Idempotent: when the record is already there, change nothing. None: nothing to mirror."""
        return None


@dataclass(frozen=True)
class StatusSync:
    status: str  # the channel's status name now
    changed: bool  # False: it was already there
