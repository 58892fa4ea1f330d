"""Real mail servers for tests: a private dovecot IMAP instance and an aiosmtpd SMTP server, both on loopback."""

from __future__ import annotations

import imaplib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from crewdesk.connectors.imap import quote

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
PASSWORD = "crewdesk-test"
USERS = 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the test CA's certificate: what a client must be told to trust
    cert: Path  # the server's certificate for 127.0.0.1 and localhost, signed by that CA
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A private CA and a server certificate it signed, as a company's internal mail server would have."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crewdesk test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    directory.chmod(0o755)
    for path in (files.ca, files.cert, files.key):
        path.chmod(0o644)  # dovecot's config process reads them
    return files


def server_tls_context(files: TlsFiles):
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    return context


def dovecot_missing() -> str | None:
    """Why dovecot cannot run here, or None. scripts/services.sh installs Debian's dovecot-imapd when it can."""
    if not Path(DOVECOT).exists():
        return "dovecot is not installed (scripts/services.sh installs dovecot-imapd when run as root)"
    if not Path("/usr/lib/dovecot/imap").exists() and not Path("/usr/libexec/dovecot/imap").exists():
        return "dovecot-core is installed without dovecot-imapd"
    return None


class Dovecot:
    """One private dovecot: its own config, state and Maildirs in a temp dir, plaintext IMAP on 127.0.0.1 only;
    with `tls`, also STARTTLS on that port and implicit TLS (IMAPS) on `tls_port`.

    Each test takes its own user from the passwd-file, so it starts with empty mailboxes."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        # Short path: dovecot's unix sockets live under base_dir and the socket path limit is 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="cdv-"))
        self.port = free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen | None = None
        self.passwd = self.root / "passwd"
        self.config = self.root / "dovecot.conf"
        self.log = self.root / "dovecot.log"
        self._users = 0
        self.tls = tls
        self.tls_port = free_port() if tls is not None else 0

    def _write_config(self) -> None:
        import pwd

        uid, gid = os.getuid(), os.getgid()
        if uid == 0:
            # dovecot's own unprivileged users (created by the Debian package) for its internal and login processes;
            # dovecot refuses uid 0 for mail, so the Maildirs belong to nobody.
            internal_user, login_user = "dovecot", "dovenull"
            nobody = pwd.getpwnam("nobody")
            uid, gid = nobody.pw_uid, nobody.pw_gid
        else:
            internal_user = login_user = pwd.getpwuid(uid).pw_name
        self.root.chmod(0o711)  # dovecot's auth process (another user) must reach the passwd-file
        self.passwd.write_text("".join(f"user{n}:{{PLAIN}}{PASSWORD}\n" for n in range(1, USERS + 1)))
        self.passwd.chmod(0o644)
        (self.root / "mail").mkdir()
        os.chown(self.root / "mail", uid, gid) if os.getuid() == 0 else None
        ssl = f"ssl = yes\nssl_cert = <{self.tls.cert}\nssl_key = <{self.tls.key}" if self.tls else "ssl = no"
        self.config.write_text(f"""
instance_name = crewdesk-test-{self.port}
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log}
info_log_path = {self.log}
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal_user}
default_login_user = {login_user}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.root}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
{"    ssl = yes" if self.tls else ""}
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
""")

    def start(self) -> Dovecot:
        self._write_config()
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.proc.stderr.read().decode(errors='replace')}\n{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("dovecot did not answer within 20 s:\n" + self.log_text())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)

    def new_user(self) -> str:
        """A user with an empty mailbox. The users are written before start: dovecot re-reads a changed passwd-file
        at most once a second and penalises the failed logins in between."""
        self._users += 1
        if self._users > USERS:
            raise RuntimeError(f"this dovecot has only {USERS} test users")
        return f"user{self._users}"

    def client(self, user: str, password: str = PASSWORD) -> ImapClient:
        return ImapClient(self.host, self.port, user, password)

    @staticmethod
    def client_for(settings) -> ImapClient:
        """A client on the mailbox that crewdesk settings point at."""
        return ImapClient(settings.imap_host, settings.imap_port, settings.imap_user, settings.imap_password.get_secret_value())


class ImapClient:
    """The test's own IMAP session (what another mail client would do): append, list flags, recreate folders."""

    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        self.imap = imaplib.IMAP4(host, port, timeout=10)
        self.imap.login(user, password)

    def __enter__(self) -> ImapClient:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        typ, data = self.imap.append(quote(folder), "", None, raw)
        assert typ == "OK", data

    def create(self, folder: str) -> None:
        self.imap.create(quote(folder))

    def delete(self, folder: str) -> None:
        self.imap.select("INBOX")  # a selected folder cannot be deleted on some servers
        typ, data = self.imap.delete(quote(folder))
        assert typ == "OK", data

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        """UID -> flags of every message in the folder."""
        typ, _ = self.imap.select(quote(folder), readonly=True)
        assert typ == "OK"
        typ, data = self.imap.uid("FETCH", "1:*", "(UID FLAGS)")
        result: dict[int, set[str]] = {}
        for line in data:
            if not line:
                continue
            text = line.decode() if isinstance(line, bytes) else line[0].decode()
            uid = int(text.split("UID ", 1)[1].split()[0].rstrip(")"))
            flags = text.split("FLAGS (", 1)[1].split(")", 1)[0].split()
            result[uid] = set(flags)
        return result

    def uidvalidity(self, folder: str = "INBOX") -> int:
        typ, data = self.imap.status(quote(folder), "(UIDVALIDITY)")
        assert typ == "OK", data
        return int(data[0].decode().split("UIDVALIDITY ", 1)[1].rstrip(")"))


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    tls: bool = False  # the message came over an encrypted connection (STARTTLS or implicit TLS)

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=policy.default)


@dataclass
class SmtpServer:
    """aiosmtpd on loopback keeping what it receives. Recipients in `refuse` get a 550; stop()/start() keep the port,
    so a test can take the server down and bring it back. `tls`: "starttls" (required before MAIL) or "ssl"
    (implicit TLS) with the certificate in `tls_files`."""

    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    refuse: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    tls: str = "none"
    tls_files: TlsFiles | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._controller = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # aiosmtpd's hook name
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            encrypted = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content, encrypted))
        return "250 Message accepted for delivery"

    def start(self) -> SmtpServer:
        from aiosmtpd.controller import Controller

        tls: dict = {}
        if self.tls == "starttls":
            tls = {"tls_context": server_tls_context(self.tls_files), "require_starttls": True}
        elif self.tls == "ssl":
            tls = {"ssl_context": server_tls_context(self.tls_files)}
        self._controller = Controller(self, hostname=self.host, port=self.port, **tls)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
