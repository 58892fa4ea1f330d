"""One IMAP folder read by UID over imaplib: the poller's view of a mailbox (select, search, fetch, mark, move)."""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import ssl
import time
from typing import Literal

from crewdesk.connectors.base import tls_context
from crewdesk.errors import CrewdeskError, TransientError
from crewdesk.settings import MailSettings

_UID = re.compile(rb"\bUID (\d+)")
_NETWORK_ERRORS = (imaplib.IMAP4.abort, OSError, socket.timeout, ssl.SSLError, EOFError)


class MailboxError(CrewdeskError):
    """The server refused something that will not pass on a retry: bad login, a missing folder."""


def quote(folder: str) -> str:
    """imaplib sends arguments as they are; a folder name with spaces or quotes must be a quoted string."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uid_sets(uids: list[int], size: int = 500) -> list[str]:
    """Comma lists of at most `size` UIDs: servers limit command length, and a backlog can hold thousands."""
    ordered = sorted(set(uids))
    return [",".join(str(u) for u in ordered[i : i + size]) for i in range(0, len(ordered), size)]


class ImapMailbox:
    """A logged-in IMAP session on one folder. Use as a context manager; network failures raise TransientError,
    refusals MailboxError. Fetching uses BODY.PEEK[] so reading a message never sets \\Seen by itself."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user: str,
        password: str,
        folder: str = "INBOX",
        tls: Literal["ssl", "starttls", "none"] = "ssl",
        timeout: float = 60.0,
        ca_file: str = "",
    ) -> None:
        self.host, self.port, self.user, self.password = host, port, user, password
        self.folder, self.tls, self.timeout = folder, tls, timeout
        self.tls_context = tls_context(ca_file) if tls != "none" else None
        self.imap: imaplib.IMAP4 | None = None
        self.capabilities: frozenset[str] = frozenset()
        self.uidvalidity: int | None = None

    @classmethod
    def from_settings(cls, settings: MailSettings) -> ImapMailbox:
        return cls(
            host=settings.imap_host,
            port=settings.imap_port,
            user=settings.imap_user,
            password=settings.imap_password.get_secret_value(),
            folder=settings.imap_folder,
            tls=settings.imap_tls,
            ca_file=settings.mail_ca_file,
        )

    @property
    def key(self) -> str:
        """The cursor's name: one per account, server and folder."""
        return f"{self.user}@{self.host}:{self.port}/{self.folder}"

    def __enter__(self) -> ImapMailbox:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        try:
            if self.tls == "ssl":
                self.imap = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=self.tls_context, timeout=self.timeout)
            else:
                self.imap = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
                if self.tls == "starttls":
                    self.imap.starttls(self.tls_context)
            self.imap.login(self.user, self.password)
            # The greeting's capabilities are the pre-login ones; MOVE and UIDPLUS are announced after login.
            typ, data = self.imap.capability()
            self.capabilities = frozenset(b" ".join(d for d in data if d).decode().upper().split()) if typ == "OK" else frozenset()
        except _NETWORK_ERRORS as exc:
            self.close()
            raise TransientError(f"IMAP {self.host}:{self.port}: {exc}") from exc
        except imaplib.IMAP4.error as exc:
            self.close()
            raise MailboxError(f"IMAP {self.user}@{self.host}:{self.port}: {exc}") from exc

    def close(self) -> None:
        if self.imap is None:
            return
        try:
            self.imap.logout()
        except (imaplib.IMAP4.error, *_NETWORK_ERRORS):
            pass
        self.imap = None

    def _session(self) -> imaplib.IMAP4:
        if self.imap is None:
            raise TransientError("IMAP session is not connected")
        return self.imap

    def _call(self, what: str, command: str, *args: str, ok_if: bytes | None = None) -> list:
        """Run an imaplib command; anything but OK is a MailboxError (unless its text holds `ok_if`)."""
        imap = self._session()
        try:
            typ, data = getattr(imap, command)(*args)
        except _NETWORK_ERRORS as exc:
            raise TransientError(f"IMAP {what}: {exc}") from exc
        except imaplib.IMAP4.error as exc:
            raise MailboxError(f"IMAP {what}: {exc}") from exc
        if typ != "OK" and not (ok_if and ok_if in b" ".join(d for d in data if isinstance(d, bytes)).upper()):
            raise MailboxError(f"IMAP {what}: {typ} {data!r}")
        return data

    def select(self) -> int:
        """Open the folder read-write; returns its UIDVALIDITY."""
        self._call(f"SELECT {self.folder}", "select", quote(self.folder))
        _, data = self._session().response("UIDVALIDITY")
        if not data or data[0] is None:  # not in the SELECT answer: ask for it
            status = self._call("STATUS", "status", quote(self.folder), "(UIDVALIDITY)")
            found = re.search(rb"UIDVALIDITY (\d+)", status[0])
            if found is None:
                raise MailboxError(f"IMAP STATUS {self.folder}: no UIDVALIDITY in {status[0]!r}")
            data = [found.group(1)]
        self.uidvalidity = int(data[-1])
        return self.uidvalidity

    def wait_for_mail(self, timeout: float) -> bool:
        """IMAP IDLE (RFC 2177) on the selected folder: True as soon as the server announces new mail (EXISTS or
        RECENT), and the session stays usable; False after `timeout` seconds (at most 25 minutes) without any, and
        the session is closed (imaplib cannot read from a socket that timed out). Call select() first. Without the
        IDLE capability this sleeps and returns False. Python 3.11's imaplib has no IDLE; the exchange is written out."""
        if "IDLE" not in self.capabilities:
            time.sleep(timeout)
            return False
        imap = self._session()
        tag = imap._new_tag()  # imaplib's own tag counter, so later commands stay in sequence
        deadline = time.monotonic() + min(timeout, 1500.0)
        try:
            imap.send(tag + b" IDLE\r\n")
            line = imap.readline()
            if not line.startswith(b"+"):
                raise MailboxError(f"IMAP IDLE refused: {line[:200]!r}")
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                imap.sock.settimeout(left)
                line = imap.readline()
                if not line:
                    raise TransientError("IMAP server closed the connection during IDLE")
                if re.match(rb"\* \d+ (EXISTS|RECENT)", line):
                    break  # anything else ("* OK still here", flag changes) is not new mail
            imap.sock.settimeout(self.timeout)
            imap.send(b"DONE\r\n")
            while not (line := imap.readline()).startswith(tag):  # untagged updates until IDLE's own completion
                if not line:
                    raise TransientError("IMAP server closed the connection ending IDLE")
            if not line.startswith(tag + b" OK"):
                raise MailboxError(f"IMAP IDLE ended with {line[:200]!r}")
            return True
        except TimeoutError:
            self._drop()
            return False
        except _NETWORK_ERRORS as exc:
            self._drop()
            raise TransientError(f"IMAP IDLE on {self.host}:{self.port}: {exc}") from exc

    def _drop(self) -> None:
        """Close the connection without a LOGOUT exchange (after a read timed out, imaplib cannot talk on it)."""
        if self.imap is None:
            return
        with contextlib.suppress(*_NETWORK_ERRORS, imaplib.IMAP4.error):
            self.imap.shutdown()
        self.imap = None

    def _search(self, criteria: str) -> list[int]:
        data = self._call(f"UID SEARCH {criteria}", "uid", "SEARCH", criteria)
        return sorted({int(n) for line in data if line for n in line.split()})

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above last_uid, ascending. `N:*` always matches the highest UID even when it is below N, so filter."""
        return [uid for uid in self._search(f"UID {last_uid + 1}:*") if uid > last_uid]

    def uids_upto(self, last_uid: int, *, unseen_only: bool = False) -> list[int]:
        if last_uid <= 0:
            return []
        return self._search(f"UID 1:{last_uid}" + (" UNSEEN" if unseen_only else ""))

    def fetch(self, uid: int) -> bytes | None:
        """The whole message, or None when it is gone (expunged by another client since the search)."""
        data = self._call(f"UID FETCH {uid}", "uid", "FETCH", str(uid), "(BODY.PEEK[])")
        for part in data:
            # A server may interleave other FETCH responses (flag changes): take the one for this UID with a body.
            if isinstance(part, tuple) and len(part) == 2 and b"BODY[]" in part[0]:
                found = _UID.search(part[0])
                if found is None or int(found.group(1)) == uid:
                    return part[1]
        return None

    def mark_seen(self, uids: list[int]) -> None:
        for ids in uid_sets(uids):
            self._call("UID STORE \\Seen", "uid", "STORE", ids, "+FLAGS.SILENT", "(\\Seen)")

    def ensure_folder(self, folder: str) -> None:
        """Create the folder unless it exists (CREATE then answers NO [ALREADYEXISTS])."""
        self._call(f"CREATE {folder}", "create", quote(folder), ok_if=b"EXISTS")

    def move(self, uids: list[int], folder: str) -> None:
        for ids in uid_sets(uids):
            if "MOVE" in self.capabilities:
                self._call(f"UID MOVE {folder}", "uid", "MOVE", ids, quote(folder))
                continue
            self._call(f"UID COPY {folder}", "uid", "COPY", ids, quote(folder))
            self._call("UID STORE \\Deleted", "uid", "STORE", ids, "+FLAGS.SILENT", "(\\Deleted)")
            if "UIDPLUS" in self.capabilities:
                self._call("UID EXPUNGE", "uid", "EXPUNGE", ids)
            else:
                # Without UIDPLUS only a plain EXPUNGE exists: it also removes messages others flagged \Deleted.
                self._call("EXPUNGE", "expunge")
