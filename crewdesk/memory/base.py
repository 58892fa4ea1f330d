"""The one memory interface every backend implements (LanceDB embedded, Weaviate), its errors, and hybrid fusion."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from crewdesk.errors import CrewdeskError, TransientError
from crewdesk.memory.schemas import Interaction, KBChunk, KBFilters, KBHit, Kind, RecallFilters, RecallHit, SyncReport

if TYPE_CHECKING:
    from crewdesk.memory.embeddings import Embedder


class MemoryBackendError(CrewdeskError):
    """The memory backend refused or failed an operation."""


class MemoryUnavailable(MemoryBackendError, TransientError):
    """The backend's server cannot be reached right now (Weaviate down, a timeout)."""


class EmbeddingError(MemoryBackendError):
    """The embedding model could not be loaded."""


class EmbeddingVersionMismatch(MemoryBackendError):
    """The store holds vectors from another embedding model or dimension; mixing them would make search meaningless."""

    def __init__(self, *, stored: set[str], configured: str) -> None:
        self.stored, self.configured = stored, configured
        super().__init__(
            f"the memory backend holds vectors made with {', '.join(sorted(stored))}, but the configured embedder is {configured}; "
            "run `crewdesk kb reindex` to re-embed them"
        )


def generation_tag(version: str) -> str:
    """A table/collection-name-safe form of an embedding version: 'all-MiniLM-L6-v2:384' -> 'all_minilm_l6_v2_384'."""
    return re.sub(r"[^a-z0-9]+", "_", version.lower()).strip("_")


def fuse(*, vector: Sequence[tuple[str, float]], keyword: Sequence[tuple[str, float]], alpha: float, k: int) -> list[tuple[str, float]]:
    """Relative-score fusion, as Weaviate's hybrid search does it, so both backends rank alike: each leg's scores are
    min-max normalised to [0, 1], then combined as alpha * vector + (1 - alpha) * keyword; a missing leg counts 0."""

    def normalised(leg: Sequence[tuple[str, float]]) -> dict[str, float]:
        if not leg:
            return {}
        scores = [score for _, score in leg]
        low, high = min(scores), max(scores)
        return {key: 1.0 if high == low else (score - low) / (high - low) for key, score in leg}

    by_vector, by_keyword = normalised(vector), normalised(keyword)
    fused = {key: alpha * by_vector.get(key, 0.0) + (1 - alpha) * by_keyword.get(key, 0.0) for key in by_vector.keys() | by_keyword.keys()}
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]


class MemoryBackend(ABC):
    """KB chunks and customer interactions with hybrid (keyword + vector) search. Vectors come from `embedder`; a store
    keeps one generation of tables per embedding version and refuses to mix versions (EmbeddingVersionMismatch)."""

    kind: str = ""  # "lance", "weaviate": which backend, in reports and logs

    def __init__(self, *, embedder: Embedder, alpha: float = 0.5) -> None:
        self.embedder = embedder
        self.alpha = alpha

    # knowledge base
    @abstractmethod
    def upsert_chunks(self, chunks: Sequence[KBChunk]) -> int:
        """Insert or replace chunks by id; returns how many were written."""

    @abstractmethod
    def delete_chunks(self, ids: Sequence[str]) -> int:
        """Delete chunks by id; returns how many were asked for."""

    @abstractmethod
    def chunk_ids(self, *, source: str) -> set[str]:
        """Ids of the chunks stored for one source."""

    @abstractmethod
    def search_kb(self, query: str, *, k: int = 5, filters: KBFilters | None = None) -> list[KBHit]:
        """Hybrid search over KB chunks, best first."""

    # customers
    @abstractmethod
    def remember(self, interaction: Interaction) -> None:
        """Store (or replace, by id) one interaction summary."""

    @abstractmethod
    def recall(self, customer_key: str, query: str, *, k: int = 3, filters: RecallFilters | None = None) -> list[RecallHit]:
        """This customer's interactions most relevant to `query`; never another customer's."""

    @abstractmethod
    def forget_customer(self, customer_key: str) -> int:
        """Erase every interaction of this customer, in every embedding generation; returns how many."""

    @abstractmethod
    def purge_before(self, cutoff: datetime) -> int:
        """Erase interactions remembered before `cutoff` (retention); returns how many."""

    # housekeeping
    @abstractmethod
    def count(self, kind: Kind) -> int:
        """Rows of this kind, across every embedding generation."""

    @abstractmethod
    def stored_versions(self) -> set[str]:
        """Embedding versions the stored vectors were made with."""

    @abstractmethod
    def reindex(self) -> int:
        """Re-embed everything stored under another embedding version with `embedder`, then drop the old vectors;
        returns how many rows were re-embedded."""

    def close(self) -> None:  # noqa: B027 - an optional hook: a no-op for stores without connections
        """Release connections; the store may be used again after."""

    def check_version(self) -> None:
        stored = self.stored_versions()
        if stored - {self.embedder.version}:
            raise EmbeddingVersionMismatch(stored=stored, configured=self.embedder.version)

    def sync_source(self, *, source: str, chunks: Sequence[KBChunk]) -> SyncReport:
        """Make the store hold exactly `chunks` for `source`: new ids are embedded and added, vanished ids deleted,
        unchanged ids left alone (no re-embedding, no write)."""
        wanted = {chunk.id: chunk for chunk in chunks}
        present = self.chunk_ids(source=source)
        new = [chunk for key, chunk in wanted.items() if key not in present]
        gone = sorted(present - wanted.keys())
        if new:
            self.upsert_chunks(new)
        if gone:
            self.delete_chunks(gone)
        return SyncReport(source=source, added=len(new), removed=len(gone), unchanged=len(present & wanted.keys()))
