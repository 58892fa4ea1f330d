"""Replies by e-mail over SMTP: threaded onto the customer's mail, with a random Message-ID (recorded on the message
row once sent) and the headers that keep auto-responders (and our own poller) from answering us."""

from __future__ import annotations

import re
import smtplib
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Literal

from crewdesk.connectors.base import DeliveryRefused, OutboundMessage, ReplyChannel, tls_context
from crewdesk.db import utcnow
from crewdesk.errors import TransientError
from crewdesk.settings import MailSettings

MAX_REFERENCES = 30
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|antw)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_TAG = re.compile(r"\s*\[\s*crewdesk\s*#\s*\d+\s*\]\s*", re.IGNORECASE)


def reply_subject(subject: str, ticket_id: int) -> str:
    """`Re: <subject> [crewdesk #<id>]`, once: the customer's Re:/AW: prefixes and any earlier tag are dropped first."""
    base = " ".join(_TAG.sub(" ", subject or "").split())  # one line: a folded or hostile subject cannot add headers
    while (stripped := _REPLY_PREFIX.sub("", base).strip()) != base:
        base = stripped
    return f"Re: {base or 'Your support request'} [crewdesk #{ticket_id}]"


def _angle(message_id: str) -> str:
    return f"<{message_id.strip().strip('<>')}>"


LOOP_HEADER = "X-Crewdesk-Ticket"  # set on every mail we send; the inbound parser ignores any mail carrying it (we would be talking to ourselves)


class SmtpReplyChannel(ReplyChannel):
    """Sends public replies to the ticket's customer. Internal notes are not e-mailed (deliver returns None)."""

    source = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        support_address: str,
        tls: Literal["ssl", "starttls", "none"] = "starttls",
        user: str = "",
        password: str = "",
        timeout: float = 30.0,
        ca_file: str = "",
    ) -> None:
        self.host, self.port, self.tls, self.user, self.password, self.timeout = host, port, tls, user, password, timeout
        self.tls_context = tls_context(ca_file) if tls != "none" else None
        self.support_address = support_address
        self.domain = support_address.rpartition("@")[2] or "crewdesk.invalid"

    @classmethod
    def from_settings(cls, settings: MailSettings) -> SmtpReplyChannel:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            tls=settings.smtp_tls,
            user=settings.smtp_user,
            password=settings.smtp_password.get_secret_value(),
            support_address=settings.support_address,
            ca_file=settings.mail_ca_file,
        )

    def message_id(self) -> str:
        """Random (email.utils.make_msgid: time, process and 64 random bits), so nobody can name our next reply in their
        References before it is sent; it says nothing about the ticket. A resend after a crash (sent, not yet recorded)
        carries a new id: the one window, one message wide, where a receiver cannot drop the copy by its id."""
        return make_msgid(domain=self.domain).strip("<>")

    def compose(self, message: OutboundMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.support_address
        mail["To"] = message.customer
        mail["Subject"] = reply_subject(message.subject, message.ticket_id)
        mail["Date"] = format_datetime(utcnow())
        mail["Message-ID"] = _angle(self.message_id())
        thread = [m for m in message.thread if m]
        parent = message.in_reply_to or (thread[-1] if thread else None)
        if parent:  # the customer's message we answer, even after a reply of ours (a holding reply, then a person's)
            mail["In-Reply-To"] = _angle(parent)
        if thread:
            # Long threads: the first id (the ticket's root) and the most recent ones are what clients thread by.
            kept = thread if len(thread) <= MAX_REFERENCES else [thread[0], *thread[-(MAX_REFERENCES - 1) :]]
            mail["References"] = " ".join(_angle(m) for m in kept)
        mail["Auto-Submitted"] = "auto-replied"  # RFC 3834: auto-responders must not answer this
        mail["X-Auto-Response-Suppress"] = "All"  # the same for Exchange and Outlook
        mail[LOOP_HEADER] = str(message.ticket_id)
        mail.set_content(message.body)
        return mail

    def deliver(self, message: OutboundMessage) -> str | None:
        if not message.public:
            return None  # an internal note is for the team, never mailed to the customer
        _, address = parseaddr(message.customer or "")
        if "@" not in address or any(c in address for c in "\r\n"):
            raise DeliveryRefused(f"ticket {message.ticket_id} has no usable customer address: {message.customer!r}")
        mail = self.compose(message)
        self._send(mail, address)
        return str(mail["Message-ID"]).strip().strip("<>")  # stored on the message row: replies that name it thread here

    def _send(self, mail: EmailMessage, recipient: str) -> None:
        where = f"SMTP {self.host}:{self.port}"
        client: smtplib.SMTP
        try:
            if self.tls == "ssl":
                client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.tls_context)
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if self.tls == "starttls":
                    client.starttls(context=self.tls_context)
                if self.user:
                    client.login(self.user, self.password)
                client.send_message(mail, from_addr=self.support_address, to_addrs=[recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = min(exc.recipients.values(), key=lambda r: r[0])
            detail = f"{where} refused {recipient}: {code} {_text(reply)}"
            raise (DeliveryRefused(detail) if code >= 500 else TransientError(detail)) from exc
        except smtplib.SMTPDataError as exc:  # the server read the message and refused it (content, size, policy)
            detail = f"{where} refused the message: {exc.smtp_code} {_text(exc.smtp_error)}"
            raise (DeliveryRefused(detail) if exc.smtp_code >= 500 else TransientError(detail)) from exc
        except smtplib.SMTPNotSupportedError as exc:  # e.g. a non-ASCII address to a server without SMTPUTF8
            raise DeliveryRefused(f"{where}: {exc}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            # Connection failures, timeouts, 4xx, and refusals of our login or sender address: none is this message's
            # fault, so it is retried (and eventually given up with the reason) rather than refused.
            raise TransientError(f"{where}: {type(exc).__name__}: {exc}") from exc


def _text(reply: bytes | str) -> str:
    return (reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply))[:300]
