"""Private Redis and PostgreSQL servers for fault tests: each on its own port and directory, so a test can restart
(or kill) them with their own commands without touching the servers the other tests share. bench/faults.py uses
them too."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


class PrivateRedis:
    """redis-server on a free port. `persistent=False` is a stock Redis between snapshots: a restart loses every queued
    message; `persistent=True` is the AOF set-up docker-compose runs (appendfsync everysec)."""

    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persistent = persistent
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def _cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10)

    def start(self) -> PrivateRedis:
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.persistent else ["--appendonly", "no"]
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                *persistence,
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "redis.log"),
                "--pidfile",
                str(self.dir / "redis.pid"),
            ],
            check=True,
        )
        _wait(lambda: self._cli("ping").stdout.strip() == "PONG", "redis-server")
        return self

    def stop(self) -> None:
        self._cli("shutdown", "nosave")
        _wait(lambda: self._cli("ping").returncode != 0, "redis-server shutdown", timeout=10)

    def restart(self) -> None:
        """Stop and start with redis's own commands; without persistence the data is gone."""
        self.stop()
        self.start()

    def keys(self) -> int:
        return int(self._cli("dbsize").stdout.strip() or 0)


class PrivatePostgres:
    """A throwaway PostgreSQL cluster (initdb, pg_ctl) on a free port, owned by the `postgres` system user when run as
    root (initdb refuses root)."""

    def __init__(self, workdir: Path) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql)")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:  # pytest's tmp dirs are root-only: the cluster lives where `postgres` can reach it
            workdir = Path(tempfile.mkdtemp(prefix="crewdesk-pg-"))
            workdir.chmod(0o755)
            shutil.chown(workdir, "postgres")
        workdir.mkdir(parents=True, exist_ok=True)
        self.root = workdir
        self.dir = workdir / "pgdata"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self._user, *args], capture_output=True, text=True, timeout=120, check=check)

    def ready(self) -> bool:
        return subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)], timeout=10).returncode == 0

    def start(self) -> PrivatePostgres:
        if not self.dir.exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres", "--no-sync")
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.dir),
            "-o",
            f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off",
            "-l",
            str(self.dir / "server.log"),
            "-w",
            "start",
        )
        _wait(self.ready, "postgres")
        return self

    def restart(self, mode: str = "fast") -> None:
        """`pg_ctl restart -m fast`: every connection is cut (AdminShutdown), the server comes back."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir), "-m", mode, "-l", str(self.dir / "server.log"), "-w", "restart")
        _wait(self.ready, "postgres after restart")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
