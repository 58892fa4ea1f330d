"""E-mail over TLS, as production mail servers require: a real dovecot with implicit TLS (IMAPS) and STARTTLS, and a
real aiosmtpd with STARTTLS (required) and implicit TLS, all with a certificate from a private test CA. crewdesk
trusts that CA only through CREWDESK_MAIL_CA_FILE; without it the connection is refused, with a clear error, and
nothing is read, marked or lost."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from crewdesk.connectors.base import OutboundMessage, tls_context
from crewdesk.connectors.imap import ImapMailbox
from crewdesk.connectors.smtp import SmtpReplyChannel
from crewdesk.errors import CrewdeskError, TransientError
from tests.integration.test_email_imap import SUPPORT, append, email_tickets, flags, mail, poll
from tests.mailservers import PASSWORD, Dovecot, SmtpServer, TlsFiles, dovecot_missing, make_tls_files


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def dovecot_tls(tls_files):
    missing = dovecot_missing()
    if missing:
        pytest.skip(missing)
    server = Dovecot(tls=tls_files).start()
    yield server
    server.stop()


def tls_settings(settings, server: Dovecot, tls: str, ca_file: str):
    port = server.tls_port if tls == "ssl" else server.port
    return settings.model_copy(
        update={
            "imap_host": server.host,
            "imap_port": port,
            "imap_tls": tls,
            "imap_user": server.new_user(),
            "imap_password": SecretStr(PASSWORD),
            "imap_folder": "INBOX",
            "support_address": SUPPORT,
            "mail_ca_file": ca_file,
        }
    )


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
def test_the_poller_reads_mail_over_tls_from_a_server_with_a_private_ca(tls, settings, dovecot_tls, tls_files, session_factory):
    mail_settings = tls_settings(settings, dovecot_tls, tls, str(tls_files.ca))
    append(mail_settings.model_copy(update={"imap_port": dovecot_tls.port}), mail(f"Over {tls}")[0])  # the test's own plaintext client

    report = poll(mail_settings, session_factory)

    assert report.fetched == 1 and report.outcomes == {"created": 1}
    assert [t.subject for t in email_tickets(session_factory)] == [f"Over {tls}"]
    with ImapMailbox.from_settings(mail_settings) as mailbox:  # the session really is encrypted
        assert mailbox.imap.sock.version().startswith("TLSv1.")
    log = dovecot_tls.log_text()
    assert "TLS" in log and f"user=<{mail_settings.imap_user}>" in log


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
def test_an_untrusted_certificate_refuses_the_connection_and_loses_nothing(tls, settings, dovecot_tls, session_factory):
    mail_settings = tls_settings(settings, dovecot_tls, tls, "")  # the system's CAs only: the test CA is unknown to them
    append(mail_settings.model_copy(update={"imap_port": dovecot_tls.port, "imap_tls": "none"}), mail("Waiting")[0])

    with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
        poll(mail_settings, session_factory)

    assert email_tickets(session_factory) == []
    [left] = flags(mail_settings.model_copy(update={"imap_port": dovecot_tls.port, "imap_tls": "none"})).values()
    assert "\\Seen" not in left  # still unread, for the poll after the certificate is fixed


def outbound() -> OutboundMessage:
    return OutboundMessage(
        message_id=3,
        ticket_id=1,
        ticket_external_id="m1@example.com",
        customer="ana@example.com",
        subject="Refund please",
        body="Your refund is on its way.",
        public=True,
        thread=("m1@example.com",),
    )


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_replies_go_out_over_tls(tls, tls_files):
    server = SmtpServer(tls=tls, tls_files=tls_files).start()
    try:
        channel = SmtpReplyChannel(host=server.host, port=server.port, tls=tls, support_address=SUPPORT, timeout=5, ca_file=str(tls_files.ca))
        sent_id = channel.deliver(outbound())
        untrusted = SmtpReplyChannel(host=server.host, port=server.port, tls=tls, support_address=SUPPORT, timeout=5)
        with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusted.deliver(outbound())
    finally:
        server.stop()
    [received] = server.received
    assert received.tls and received.rcpt_tos == ["ana@example.com"] and received.message["In-Reply-To"] == "<m1@example.com>"
    assert received.message["Message-ID"] == f"<{sent_id}>" and sent_id.endswith("@crewdesk.test")  # random: tests/security/test_threads.py


def test_a_server_that_requires_starttls_refuses_plaintext_and_nothing_is_sent(tls_files):
    server = SmtpServer(tls="starttls", tls_files=tls_files).start()
    try:
        plain = SmtpReplyChannel(host=server.host, port=server.port, tls="none", support_address=SUPPORT, timeout=5)
        with pytest.raises(TransientError, match="530"):  # "Must issue a STARTTLS command first"
            plain.deliver(outbound())
    finally:
        server.stop()
    assert server.received == []


def test_a_missing_or_broken_ca_file_is_a_clear_error(tmp_path):
    with pytest.raises(CrewdeskError, match=r"mail_ca_file .*nope\.pem: no such file"):
        tls_context(str(tmp_path / "nope.pem"))
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate")
    with pytest.raises(CrewdeskError, match="not PEM certificates"):
        tls_context(str(broken))
