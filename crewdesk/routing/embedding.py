"""The embedding design: all-MiniLM-L6-v2 vectors of labelled examples, a ticket classified by its nearest examples
(similarity-weighted kNN, the default) or by the nearest class centroid; priority and sentiment from word cues
(cues.py). A long ticket is also split into sentences and clauses, each classified on its own, so that a ticket asking
for two things gets both intents. The example vectors are cached as .npy in a directory the caller names, keyed by the
examples' sha256 and the embedder's version, so start-up embeds the 3,700 examples once, not every time."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from crewdesk.memory.embeddings import Embedder, local_embedder
from crewdesk.routing import cues
from crewdesk.routing.examples import Example, default_examples, digest
from crewdesk.routing.schemas import CATEGORY_OF, Intent, Route

INTENTS: tuple[Intent, ...] = tuple(Intent)
Method = Literal["knn", "centroid"]

_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\s*\n+\s*")
# Connectors that start a second request inside one sentence ("... the lamp and also change my address").
_CLAUSE = re.compile(
    r"\s*,?\s*\b(?:and also|and then|as well as|additionally|in addition|also|plus|und außerdem|außerdem|"
    r"und auch|zudem|y también|y además|además|también)\b\s*",
    re.I,
)
MIN_SEGMENT_WORDS = 3
MAX_SEGMENTS = 8


def segments(text: str) -> list[str]:
    """Sentences, then clauses at connectors; a fragment shorter than MIN_SEGMENT_WORDS joins the next one."""
    pieces = [clause for sentence in _SENTENCE.split(text.strip()) for clause in _CLAUSE.split(sentence)]
    out: list[str] = []
    carry = ""
    for piece in pieces:
        piece = f"{carry} {piece}".strip() if carry else piece.strip()
        if len(piece.split()) < MIN_SEGMENT_WORDS:
            carry = piece
            continue
        out.append(piece)
        carry = ""
    if carry:
        if out:
            out[-1] = f"{out[-1]} {carry}"
        else:
            out.append(carry)
    return out[:MAX_SEGMENTS]


def cached_vectors(path: Path | None, shape: tuple[int, int], embed: Callable[[], np.ndarray]) -> np.ndarray:
    """Vectors read from `path` (a .npy cache) when it holds `shape`, else `embed()`ed and written there atomically
    (readers never see half a file). An unreadable or mis-shaped cache is embedded again and replaced."""
    if path is not None and path.exists():
        try:
            vectors = np.load(path)
        except (OSError, ValueError):
            vectors = None
        if vectors is not None and vectors.shape == shape:
            return vectors
    vectors = embed()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        with partial.open("wb") as handle:
            np.save(handle, vectors)
        os.replace(partial, path)
    return vectors


@dataclass(frozen=True)
class Scores:
    """One text against the examples: every intent ranked best first, its score in [0, 1], and the nearest example."""

    ranking: tuple[Intent, ...]
    intent_scores: dict[Intent, float]
    label: str  # the best fine label (a Bitext intent, or ours for seed examples)
    similarity: float  # cosine to the single nearest example

    @property
    def intent(self) -> Intent:
        return self.ranking[0]

    @property
    def score(self) -> float:
        return self.intent_scores[self.intent]

    @property
    def margin(self) -> float:
        """Best intent's score minus the runner-up's: small means a tie worth a second opinion."""
        return self.score - self.intent_scores[self.ranking[1]]


@dataclass(frozen=True)
class Analysis:
    whole: Scores
    parts: tuple[tuple[str, Scores], ...]  # (segment, its scores); empty for a one-segment ticket


class EmbeddingRouter:
    """Built from labelled examples (default: packaged Bitext train mapped to our intents, plus our seed set).

    knn: the k nearest examples vote with their cosine similarity; an intent's score is its share of the votes.
    centroid: an intent's score is the cosine to the nearest centroid among its fine labels.
    A ticket whose nearest example is below `other_below` is `other` with confidence 0: nothing we know looks like it.
    A segment of a longer ticket adds its intent when its score reaches `segment_score` and its nearest example
    `segment_similarity` (a greeting or a line of context is near nothing and adds nothing)."""

    def __init__(
        self,
        examples: Sequence[Example] | None = None,
        *,
        embedder: Embedder | None = None,
        cache_dir: Path | str | None = None,
        vectors: np.ndarray | None = None,
        method: Method = "knn",
        k: int = 7,
        other_below: float = 0.3,
        segment_score: float = 0.5,
        segment_similarity: float = 0.5,
    ) -> None:
        self.examples = list(default_examples() if examples is None else examples)
        if not self.examples:
            raise ValueError("an embedding router needs examples")
        self.embedder = embedder or local_embedder()
        self.method, self.k = method, k
        self.other_below, self.segment_score, self.segment_similarity = other_below, segment_score, segment_similarity
        self.labels = sorted({e.label for e in self.examples})
        intent_of_label: dict[str, Intent] = {}
        for e in self.examples:
            if intent_of_label.setdefault(e.label, e.intent) is not e.intent:
                raise ValueError(f"label {e.label!r} maps to both {intent_of_label[e.label]} and {e.intent}")
        index = {label: i for i, label in enumerate(self.labels)}
        self._y = np.array([index[e.label] for e in self.examples])
        # (labels, intents) one-hot: label scores -> intent scores
        self._label_intent = np.zeros((len(self.labels), len(INTENTS)), dtype=np.float32)
        for label, intent in intent_of_label.items():
            self._label_intent[index[label], INTENTS.index(intent)] = 1.0
        self._vectors = self._example_vectors(cache_dir) if vectors is None else np.asarray(vectors, dtype=np.float32)
        if self._vectors.shape[0] != len(self.examples):
            raise ValueError(f"{self._vectors.shape[0]} vectors for {len(self.examples)} examples")
        centroids = np.stack([self._vectors[self._y == i].mean(axis=0) for i in range(len(self.labels))])
        self._centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)

    @property
    def vectors(self) -> np.ndarray:
        """The examples' unit vectors, in the examples' order (read-only use)."""
        return self._vectors

    # -- building -----------------------------------------------------------------------------------------------------

    def cache_path(self, cache_dir: Path | str) -> Path:
        version = re.sub(r"[^A-Za-z0-9]+", "_", self.embedder.version).strip("_").lower()
        return Path(cache_dir) / f"routing-examples-{digest(self.examples)[:24]}-{version}.npy"

    def _example_vectors(self, cache_dir: Path | str | None) -> np.ndarray:
        path = self.cache_path(cache_dir) if cache_dir is not None else None
        return cached_vectors(path, (len(self.examples), self.embedder.dimension), lambda: self.embed([e.text for e in self.examples]))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.embedder.embed_documents(list(texts)), dtype=np.float32).reshape(len(texts), -1)

    # -- scoring ------------------------------------------------------------------------------------------------------

    def score_vectors(self, queries: np.ndarray) -> list[Scores]:
        """Score unit-length query vectors (n, dim); vectorised, so the benchmark can score a fold at once."""
        sims = queries @ self._vectors.T
        nearest = sims.max(axis=1)
        # Each intent's best single similarity: orders the intents the kNN vote gave nothing to.
        label_best = np.stack([sims[:, self._y == i].max(axis=1) for i in range(len(self.labels))], axis=1)
        intent_best = np.where(self._label_intent[None, :, :] > 0, label_best[:, :, None], -1.0).max(axis=1)
        if self.method == "knn":
            k = min(self.k, sims.shape[1])
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            weights = np.clip(np.take_along_axis(sims, top, axis=1), 1e-6, None)
            label_scores = np.zeros((len(queries), len(self.labels)), dtype=np.float32)
            np.add.at(label_scores, (np.arange(len(queries))[:, None], self._y[top]), weights)
            label_scores /= label_scores.sum(axis=1, keepdims=True)
            intent_scores = label_scores @ self._label_intent
        else:
            label_scores = queries @ self._centroids.T
            intent_scores = np.where(self._label_intent[None, :, :] > 0, label_scores[:, :, None], -1.0).max(axis=1)
            intent_scores = np.clip(intent_scores, 0.0, 1.0)
        out = []
        for row in range(len(queries)):
            order = np.lexsort((intent_best[row], intent_scores[row]))[::-1]
            ranking = tuple(INTENTS[i] for i in order)
            out.append(
                Scores(
                    ranking=ranking,
                    intent_scores={INTENTS[i]: float(intent_scores[row, i]) for i in range(len(INTENTS))},
                    label=self.labels[int(label_scores[row].argmax())],
                    similarity=float(nearest[row]),
                )
            )
        return out

    def analyse(self, text: str) -> Analysis:
        parts = segments(text)
        texts = [text] + (parts if len(parts) > 1 else [])
        scores = self.score_vectors(self.embed(texts))
        return Analysis(whole=scores[0], parts=tuple(zip(texts[1:], scores[1:], strict=True)))

    # -- routing ------------------------------------------------------------------------------------------------------

    def intents(self, analysis: Analysis) -> tuple[list[Intent], float]:
        """At most 3 intents, primary first, and the primary's confidence. Evidence for an intent: the whole text's
        score for its own best intent plus the score of every segment that names it clearly (score and nearest
        example above the segment thresholds); the primary is the intent with the most evidence."""
        whole = analysis.whole
        if whole.similarity < self.other_below:
            return [Intent.other], 0.0
        evidence, best = {whole.intent: whole.score}, {whole.intent: whole.score}
        for _, part in analysis.parts:
            if part.intent is not Intent.other and part.score >= self.segment_score and part.similarity >= self.segment_similarity:
                evidence[part.intent] = evidence.get(part.intent, 0.0) + part.score
                best[part.intent] = max(best.get(part.intent, 0.0), part.score)
        ranked = sorted(evidence, key=lambda intent: evidence[intent], reverse=True)[:3]
        return ranked, best[ranked[0]]

    def route_analysis(self, text: str, analysis: Analysis) -> Route:
        intents, confidence = self.intents(analysis)
        mood = cues.sentiment(text)
        return Route(
            intents=intents,
            category=CATEGORY_OF[intents[0]],
            priority=cues.priority(text, intents, mood),
            sentiment=mood,
            confidence=round(min(max(confidence, 0.0), 1.0), 4),
            method="embedding",
        )

    def route(self, text: str) -> Route:
        return self.route_analysis(text, self.analyse(text))
