"""Risk by meaning: does a ticket threaten legal action, report a security problem or lost data, speak of self-harm,
threaten violence, or try to steer the model (a prompt injection)? A nearest-neighbour vote over all-MiniLM-L6-v2
vectors of labelled exemplars (the router's embedder, one torch thread), each ticket scored whole and sentence by
sentence, so one risky line in a long ticket still counts.

Exemplars (risk_data/, see its README), all our own: phrasings per risk class and harmless look-alikes labelled `none`
("my lawyer recommended your desk", a parcel stolen from the porch) in examples.jsonl; other businesses' ordinary
requests (banks, insurers, telecoms, utilities, travel, software, healthcare admin, public services) and our store's
payment wording, as `none`, in domains.jsonl and routine.jsonl; prompt injections in injection.jsonl; each in English, German, Spanish
and French. Beside them Bitext's train rows as `none` (its complaints are the hard negatives), except every
BITEXT_EVAL_EVERY-th row, kept for the evaluation (bench/risk_eval.jsonl). MiniLM is an English model that places a
language's texts near each other, so every language needs harmless exemplars beside its risky ones. The exemplar vectors
are cached as .npy in the cache directory given, keyed by the exemplars' sha256 and the embedder version, as the
router's are.

This module decides nothing on its own: crewdesk.tickets.rules.detect puts it behind the escalation regexes (the fast
first pass) and says when it must agree with a regex hit. Figures: bench/risk.py."""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from crewdesk.memory.embeddings import Embedder, local_embedder
from crewdesk.routing.embedding import cached_vectors, segments
from crewdesk.routing.examples import bitext_examples

RISK_LABELS: tuple[str, ...] = ("legal_threat", "security", "data_loss", "self_harm", "threat")
# A prompt injection: text written to steer the model (fake system messages, "ignore previous instructions", claimed
# authority). Not a risk to the customer but to what the crew does: escalated and audited like the risks, under its own label.
INJECTION = "injection"
FLAGGED: tuple[str, ...] = (*RISK_LABELS, INJECTION)  # what a hit can be
NONE = "none"
LABELS: tuple[str, ...] = (*FLAGGED, NONE)
# The risks and their look-alikes (examples.jsonl), ordinary requests of other businesses and retail payment wording
# (domains.jsonl and routine.jsonl), prompt injections (injection.jsonl); see risk_data/README.md.
EXAMPLE_FILES: tuple[str, ...] = (
    "risk_data/examples.jsonl",
    "risk_data/domains.jsonl",
    "risk_data/routine.jsonl",
    "risk_data/injection.jsonl",
    "risk_data/answers.jsonl",  # customers' answers to our questions ("Yes, please do that."): read as injections without them
)
# Bitext train rows 0, 10, 20, ... (0-based, file order) are the evaluation's ordinary tickets, never exemplars.
BITEXT_EVAL_EVERY = 10


@dataclass(frozen=True)
class RiskExample:
    text: str
    label: str  # one of LABELS
    lang: str = "en"


def own_examples() -> list[RiskExample]:
    """Our phrasings: every risk class and injection in en/de/es/fr, harmless look-alikes and other businesses' ordinary
    requests as `none`."""
    rows = []
    for name in EXAMPLE_FILES:
        with importlib.resources.files("crewdesk.routing").joinpath(name).open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    if row["label"] not in LABELS:
                        raise ValueError(f"{name}: unknown risk label {row['label']!r}")
                    rows.append(RiskExample(text=row["text"], label=row["label"], lang=row.get("lang", "en")))
    return rows


def bitext_none_examples() -> list[RiskExample]:
    """Bitext's train rows as ordinary tickets, less the ones the evaluation keeps."""
    return [RiskExample(text=e.text, label=NONE) for i, e in enumerate(bitext_examples()) if i % BITEXT_EVAL_EVERY]


def default_risk_examples() -> list[RiskExample]:
    return own_examples() + bitext_none_examples()


def digest(examples: Sequence[RiskExample]) -> str:
    h = hashlib.sha256()
    for example in examples:
        h.update(f"{example.label}\t{example.text}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class RiskHit:
    """One risk class found in a ticket: its vote share in [0, 1] and the text (whole ticket or one sentence) it was in."""

    label: str
    score: float
    evidence: str

    def __str__(self) -> str:
        return f"{self.label}: {self.evidence!r} ({self.score:.2f})"


@dataclass(frozen=True)
class PartScores:
    """One text (the whole ticket or one of its sentences) against the exemplars."""

    text: str
    shares: dict[str, float]  # label -> share of the k nearest exemplars' similarity-weighted votes
    nearest: dict[str, float]  # label -> cosine to its nearest exemplar


@dataclass(frozen=True)
class RiskAnalysis:
    parts: tuple[PartScores, ...]  # the whole text first, then its sentences and clauses when there are several
    threshold: float
    min_similarity: float
    segment_similarity: float
    segment_threshold: float | None = None  # the share a sentence needs; None: the same as the whole text
    weak_share: float | None = None  # a share below this is a weak vote (see weak_margin); None: every vote stands
    weak_margin: float = 0.05

    def hits(self) -> list[RiskHit]:
        """Each class whose share reaches the threshold in some part (segment_threshold for a sentence), and whose
        nearest exemplar is at least min_similarity in cosine (segment_similarity for a sentence: a short line near
        nothing in particular is noise); the part with the best share is the evidence. A weak vote (a share below
        weak_share: two of five neighbours) stands only when the class's nearest exemplar is about as near as the
        nearest harmless one (within weak_margin in cosine): a routine request of another business or language that
        shares a word or two with risk exemplars ("la différence sur ma carte", "im Laden bar zahlen") draws a couple of
        them into its five, while its nearest neighbour is a harmless request."""
        best: dict[str, RiskHit] = {}
        for n, part in enumerate(self.parts):
            floor = self.min_similarity if n == 0 else self.segment_similarity
            bar = self.threshold if n == 0 or self.segment_threshold is None else self.segment_threshold
            for label in FLAGGED:
                share = part.shares[label]
                if share >= bar and part.nearest[label] >= floor and (label not in best or share > best[label].score):
                    if self.weak(part, label):
                        continue
                    best[label] = RiskHit(label, round(share, 4), part.text)
        return [best[label] for label in FLAGGED if label in best]

    def weak(self, part: PartScores, label: str) -> bool:
        """A weak vote for `label` in `part` whose nearest harmless exemplar is clearly nearer than its nearest `label`
        exemplar: not a hit (hits)."""
        return self.weak_share is not None and part.shares[label] < self.weak_share and part.nearest[label] < part.nearest[NONE] - self.weak_margin

    def _around(self, span: str | None) -> list[PartScores]:
        """The whole text and every sentence that contains `span` (all of them when span is None)."""
        needle = span.casefold() if span else None
        return [self.parts[0], *(p for p in self.parts[1:] if needle is None or needle in p.text.casefold())]

    def none_share(self, span: str | None = None) -> float:
        """How sure the vote is that nothing is at risk where `span` (a regex's match) was found: the lowest `none`
        share of the whole text and of every sentence that contains it."""
        return min(p.shares[NONE] for p in self._around(span))

    def none_margin(self, label: str, span: str | None = None) -> float:
        """How much nearer the text is to a harmless exemplar than to any exemplar of `label`: the lowest difference of
        the two cosines over the whole text and every sentence containing `span`. The vote alone can be swamped by
        Bitext's dense topics (a threat that mentions a refund has five refund rows nearest); this margin is not."""
        return min(p.nearest[NONE] - p.nearest[label] for p in self._around(span))


class Analyser(Protocol):
    """What crewdesk.tickets.rules.detect needs of a classifier (a stand-in in tests and the benchmark)."""

    def analyse(self, text: str) -> RiskAnalysis: ...


class RiskClassifier:
    """Similarity-weighted kNN over the exemplars (k nearest vote with their cosine; a class's score is its share).
    A class is found when its share reaches `threshold` in the whole text or `segment_threshold` in one sentence, its
    nearest exemplar being at least `min_similarity` (whole text) or `segment_similarity` (a sentence) in cosine: a
    sentence needs a clearer vote than the whole ticket, because a short line of German or French sits near the short
    risk exemplars of its language whatever it says. A weak vote (a share below `weak_share`) needs the class's
    nearest exemplar within `weak_margin` of the nearest harmless one (RiskAnalysis.hits). Defaults chosen on the dev
    halves of both evaluation sets (bench/risk.py --variants).

    Built lazily: the embedder and the exemplar vectors load on first use, in the process that uses them (a Celery
    parent never holds torch across a fork). Thread-safe to share; build one per pipeline."""

    def __init__(
        self,
        examples: Sequence[RiskExample] | None = None,
        *,
        embedder: Embedder | None = None,
        cache_dir: Path | str | None = None,
        vectors: np.ndarray | None = None,
        k: int = 5,
        threshold: float = 0.4,
        min_similarity: float = 0.4,
        segment_similarity: float = 0.6,
        segment_threshold: float | None = 0.8,
        weak_share: float | None = 0.7,
        weak_margin: float = 0.05,
    ) -> None:
        self.examples = list(default_risk_examples() if examples is None else examples)
        if not any(e.label == NONE for e in self.examples) or not any(e.label != NONE for e in self.examples):
            raise ValueError("a risk classifier needs `none` exemplars and risky ones")
        unknown = {e.label for e in self.examples} - set(LABELS)
        if unknown:
            raise ValueError(f"unknown risk labels: {sorted(unknown)}")
        self._embedder = embedder
        self.cache_dir = cache_dir
        self.k, self.threshold, self.min_similarity, self.segment_similarity = k, threshold, min_similarity, segment_similarity
        self.segment_threshold = segment_threshold
        self.weak_share, self.weak_margin = weak_share, weak_margin
        self._y = np.array([LABELS.index(e.label) for e in self.examples])
        self._vectors: np.ndarray | None = None if vectors is None else self._checked(np.asarray(vectors, dtype=np.float32))
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = local_embedder()
        return self._embedder

    # -- building -----------------------------------------------------------------------------------------------------

    def cache_path(self, cache_dir: Path | str) -> Path:
        version = re.sub(r"[^A-Za-z0-9]+", "_", self.embedder.version).strip("_").lower()
        return Path(cache_dir) / f"risk-examples-{digest(self.examples)[:24]}-{version}.npy"

    def _checked(self, vectors: np.ndarray) -> np.ndarray:
        if vectors.shape[0] != len(self.examples):
            raise ValueError(f"{vectors.shape[0]} vectors for {len(self.examples)} examples")
        return vectors

    @property
    def vectors(self) -> np.ndarray:
        """The exemplars' unit vectors in the exemplars' order, embedded (or read from the cache) on first use."""
        if self._vectors is None:
            with self._lock:
                if self._vectors is None:
                    self._vectors = self._checked(self._load_or_embed())
        return self._vectors

    def _load_or_embed(self) -> np.ndarray:
        path = self.cache_path(self.cache_dir) if self.cache_dir is not None else None
        return cached_vectors(path, (len(self.examples), self.embedder.dimension), lambda: self.embed([e.text for e in self.examples]))

    def warm(self) -> None:
        """Load the model and the exemplar vectors now rather than on the first ticket."""
        self.vectors  # noqa: B018 (the property loads them)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.embedder.embed_documents(list(texts)), dtype=np.float32).reshape(len(texts), -1)

    # -- scoring ------------------------------------------------------------------------------------------------------

    def score_vectors(self, texts: Sequence[str], queries: np.ndarray) -> list[PartScores]:
        """Score unit-length query vectors (n, dim), one per text; vectorised."""
        vectors = self.vectors
        sims = queries @ vectors.T
        k = min(self.k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.clip(np.take_along_axis(sims, top, axis=1), 1e-6, None)
        shares = np.zeros((len(queries), len(LABELS)), dtype=np.float32)
        np.add.at(shares, (np.arange(len(queries))[:, None], self._y[top]), weights)
        shares /= shares.sum(axis=1, keepdims=True)
        nearest = np.stack([sims[:, self._y == i].max(axis=1) if (self._y == i).any() else np.full(len(queries), -1.0) for i in range(len(LABELS))], axis=1)
        return [
            PartScores(
                text=text,
                shares={label: float(shares[row, i]) for i, label in enumerate(LABELS)},
                nearest={label: float(nearest[row, i]) for i, label in enumerate(LABELS)},
            )
            for row, text in enumerate(texts)
        ]

    @staticmethod
    def parts_of(text: str) -> list[str]:
        """The whole text, then its sentences and clauses when it has more than one."""
        text = text.strip()
        pieces = segments(text)
        return [text, *pieces] if len(pieces) > 1 else [text]

    def analysis(self, parts: Sequence[PartScores]) -> RiskAnalysis:
        return RiskAnalysis(
            parts=tuple(parts),
            threshold=self.threshold,
            min_similarity=self.min_similarity,
            segment_similarity=self.segment_similarity,
            segment_threshold=self.segment_threshold,
            weak_share=self.weak_share,
            weak_margin=self.weak_margin,
        )

    def analyse(self, text: str) -> RiskAnalysis:
        return self.analyse_many([text])[0]

    def analyse_many(self, texts: Iterable[str]) -> list[RiskAnalysis]:
        """Several tickets with one embedding call (the benchmark's batches)."""
        per_text = [self.parts_of(t) for t in texts]
        flat = [part for parts in per_text for part in parts]
        scored = self.score_vectors(flat, self.embed(flat)) if flat else []
        out, at = [], 0
        for parts in per_text:
            out.append(self.analysis(scored[at : at + len(parts)]))
            at += len(parts)
        return out

    def hits(self, text: str) -> list[RiskHit]:
        return self.analyse(text).hits()
