"""Memory services: open the configured backend, ingest knowledge-base files, remember and recall customers (PII
redacted, keyed by a hash), forget a customer everywhere, purge by retention."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crewdesk.logging import get_logger
from crewdesk.memory.base import EmbeddingVersionMismatch, MemoryBackend, MemoryBackendError
from crewdesk.memory.chunking import chunk_document, iter_files, read_document
from crewdesk.memory.embeddings import embedder_from_settings
from crewdesk.memory.schemas import Interaction, RecallFilters, SyncReport
from crewdesk.settings import PACKAGE_DIR, MemorySettings

log = get_logger(__name__)

DEMO_KB = (  # package data: inside the installed package, checkout or wheel alike
    PACKAGE_DIR / "store" / "tau2" / "policy.md",
    PACKAGE_DIR / "memory" / "demo" / "abcd" / "guidelines.json",
    PACKAGE_DIR / "memory" / "demo" / "abcd" / "kb.json",
)
REMEMBERED_OUTCOMES = frozenset({"resolved", "escalated"})
_VAULT_TOKEN = re.compile(r"<(EMAIL|PHONE|CARD|IBAN|ADDRESS)_\d+>")


def lance_dir(settings: MemorySettings) -> Path:
    return settings.memory_dir or settings.home / "memory"


def open_backend(*, settings: MemorySettings, kind: str | None = None) -> MemoryBackend | None:
    """The configured memory backend (None when memory is off). Nothing connects or loads a model until first use."""
    kind = kind or settings.memory_backend
    if kind == "off":
        return None
    embedder = embedder_from_settings(settings)
    if kind == "lance":
        from crewdesk.memory.lance import LanceBackend

        return LanceBackend(path=lance_dir(settings), embedder=embedder, alpha=settings.kb_hybrid_alpha)
    if kind == "weaviate":
        from crewdesk.memory.weaviate_backend import WeaviateBackend

        if not settings.weaviate_url:
            raise MemoryBackendError("CREWDESK_MEMORY_BACKEND=weaviate needs CREWDESK_WEAVIATE_URL")
        return WeaviateBackend(
            url=settings.weaviate_url,
            grpc_port=settings.weaviate_grpc_port,
            api_key=settings.weaviate_api_key.get_secret_value(),
            prefix=settings.weaviate_collection_prefix,
            embedder=embedder,
            alpha=settings.kb_hybrid_alpha,
        )
    raise MemoryBackendError(f"unknown memory backend {kind!r}")


def every_backend(*, settings: MemorySettings) -> list[MemoryBackend]:
    """Every backend that may hold data about a customer: the configured one, a Weaviate that is configured, and
    embedded files left from before a switch. Erasure must reach all of them."""
    kinds = []
    if settings.memory_backend != "off":
        kinds.append(settings.memory_backend)
    if settings.weaviate_url and "weaviate" not in kinds:
        kinds.append("weaviate")
    if lance_dir(settings).exists() and "lance" not in kinds:
        kinds.append("lance")
    return [backend for backend in (open_backend(settings=settings, kind=kind) for kind in kinds) if backend is not None]


# knowledge base
def ingest(*, backend: MemoryBackend, paths: Sequence[Path], chunk_chars: int = 1200, overlap: int = 150) -> list[SyncReport]:
    """Add or update knowledge-base files. Re-ingesting an unchanged file writes nothing; a changed file's old chunks
    are replaced. A backend embedded with another model is re-embedded first, never mixed."""
    try:
        backend.check_version()
    except EmbeddingVersionMismatch as exc:
        log.warning("memory.reindex_before_ingest", stored=sorted(exc.stored), configured=exc.configured)
        backend.reindex()
    reports = []
    for path in paths:
        for file in iter_files(Path(path)):
            document = read_document(file)
            reports.append(backend.sync_source(source=document.source, chunks=chunk_document(document, max_chars=chunk_chars, overlap=overlap)))
    return reports


# customers
def customer_key(*, customer: str, secret: str = "") -> str:
    """What memory is keyed by: never the address itself. HMAC with a secret when one is configured, so the key cannot
    be found by hashing a list of known addresses."""
    normalised = " ".join(customer.split()).casefold()
    if secret:
        return hmac.new(secret.encode(), normalised.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(f"crewdesk-customer:{normalised}".encode()).hexdigest()


def redact(text: str) -> str:
    """Irreversible placeholders ([EMAIL], [PHONE], ...) for personal data and for per-ticket vault tokens alike: a
    memory outlives its ticket, so nothing in it may resolve back to a value."""
    from crewdesk.pii import find

    text = _VAULT_TOKEN.sub(lambda m: f"[{m.group(1)}]", text)
    out, last = [], 0
    for span in find(text):
        out += [text[last : span.start], f"[{span.label}]"]
        last = span.end
    out.append(text[last:])
    return "".join(out)


def summarise(*, issue: str, actions: Sequence[str], outcome: str, reply: str = "", limit: int = 300) -> str:
    """The remembered form of a ticket: what the customer wanted, what we did, how it ended; redacted."""

    def short(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    parts = [f"Issue: {short(issue)}", f"Actions: {'; '.join(short(a) for a in actions) if actions else 'none (advice only)'}", f"Outcome: {outcome}"]
    if reply:
        parts.append(f"Reply: {short(reply)}")
    return redact("\n".join(parts))


def remember_ticket(
    *,
    backend: MemoryBackend,
    settings: MemorySettings,
    customer: str,
    ticket_id: int,
    summary: str,
    outcome: str,
    category: str = "",
    product: str = "",
    now: datetime | None = None,
) -> Interaction | None:
    if not customer.strip() or outcome not in REMEMBERED_OUTCOMES:
        return None
    key = customer_key(customer=customer, secret=settings.memory_key_secret.get_secret_value())
    interaction = Interaction(
        id=hashlib.sha256(f"{key}:{ticket_id}".encode()).hexdigest()[:32],
        customer_key=key,
        ticket_id=ticket_id,
        summary=redact(summary),
        category=category or "",
        product=product or "",
        outcome=outcome,
        created_at=now or datetime.now(UTC),
    )
    backend.remember(interaction)
    return interaction


def recall_context(
    *, backend: MemoryBackend, settings: MemorySettings, customer: str, query: str, exclude_ticket_id: int | None = None, filters: RecallFilters | None = None
) -> str:
    """A block for the crew's context: this customer's most relevant earlier tickets, newest first; '' when none."""
    if not customer.strip() or settings.memory_recall_k <= 0:
        return ""
    key = customer_key(customer=customer, secret=settings.memory_key_secret.get_secret_value())
    # +1: the current ticket may be among them (a reopened ticket) and is left out
    hits = backend.recall(key, redact(query), k=settings.memory_recall_k + 1, filters=filters)
    earlier = sorted((h.interaction for h in hits if h.interaction.ticket_id != exclude_ticket_id), key=lambda i: i.created_at, reverse=True)
    lines = [
        f"- {i.created_at:%Y-%m-%d} ticket #{i.ticket_id} [{i.category or 'uncategorised'}, {i.outcome}]: {' | '.join(i.summary.splitlines())}"
        for i in earlier[: settings.memory_recall_k]
    ]
    return "\n".join(lines)


def _on_every_backend(backends: Sequence[MemoryBackend], erase: Callable[[MemoryBackend], int], what: str) -> dict[str, int]:
    """Erase on each backend even when another fails (one backend down must not stop the rest), then report failures."""
    counts, failures = {}, []
    for backend in backends:
        try:
            counts[backend.kind] = erase(backend)
        except MemoryBackendError as exc:
            failures.append(f"{backend.kind}: {exc}")
    if failures:
        raise MemoryBackendError(f"{what} incomplete, run it again ({'; '.join(failures)}); done: {counts}")
    return counts


def forget(*, backends: Sequence[MemoryBackend], customer: str, secret: str = "") -> dict[str, int]:
    """Right to erasure: delete every remembered interaction of this customer from every backend."""
    key = customer_key(customer=customer, secret=secret)
    return _on_every_backend(backends, lambda backend: backend.forget_customer(key), "erasure")


def purge(*, backends: Sequence[MemoryBackend], retention_days: int, now: datetime | None = None) -> dict[str, int]:
    """Retention: erase interactions older than retention_days (0 keeps everything)."""
    if retention_days <= 0:
        return {backend.kind: 0 for backend in backends}
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    return _on_every_backend(backends, lambda backend: backend.purge_before(cutoff), "purge")
