"""Retrieval quality of the knowledge base: one command, prints recall@5 and MRR on bench/kb_questions.jsonl.

  .venv/bin/python bench/kb_recall.py [--backend lance|weaviate] [--alpha 0.5] [--k 5] [--chunk-chars 1200]
      [--overlap 150] [--misses] [--sweep]

Builds the demo KB (tau2 retail policy.md, ABCD guidelines.json and kb.json) with the local embedder
(all-MiniLM-L6-v2) in a fresh LanceDB directory, or with --backend weaviate in fresh collections on the Weaviate at
WEAVIATE_URL (WEAVIATE_GRPC_PORT, WEAVIATE_API_KEY; dropped after) or, with none set, on the in-process stand-in of
tests/weaviate_standin; then asks every labelled question. A retrieved chunk is relevant when it comes from a
labelled source and section (heading path ends with it) and, if the label gives one, contains the answer phrase.
recall@k: share of questions with a relevant chunk in the top k. MRR: mean of 1/rank of the first relevant chunk
(top 10; 0 when none). --sweep also reports alpha 0 (BM25 only) to 1 (vectors only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CREWDESK_LOG_LEVEL", "WARNING")
warnings.filterwarnings("ignore")

from crewdesk.logging import configure_logging
from crewdesk.memory.base import MemoryBackend
from crewdesk.memory.embeddings import local_embedder
from crewdesk.memory.lance import LanceBackend
from crewdesk.memory.schemas import KBChunk
from crewdesk.memory.service import DEMO_KB, ingest

QUESTIONS = ROOT / "bench" / "kb_questions.jsonl"


def normalise(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"').replace("**", "")
    return " ".join(text.lower().split())


def relevant(chunk: KBChunk, question: dict) -> bool:
    where = any(
        Path(chunk.source).name == place["source"] and (chunk.heading == place["section"] or chunk.heading.endswith(" > " + place["section"]))
        for place in question["relevant"]
    )
    return where and ("answer" not in question or normalise(question["answer"]) in normalise(chunk.text))


def evaluate(store: MemoryBackend, questions: list[dict], *, k: int, depth: int = 10) -> tuple[float, float, list[tuple[dict, list[KBChunk]]], list[float]]:
    found, reciprocal, misses, seconds = 0, 0.0, [], []
    for question in questions:
        started = time.perf_counter()
        hits = store.search_kb(question["question"], k=depth)
        seconds.append(time.perf_counter() - started)
        ranks = [rank for rank, hit in enumerate(hits, 1) if relevant(hit.chunk, question)]
        if ranks and ranks[0] <= k:
            found += 1
        else:
            misses.append((question, [h.chunk for h in hits[:k]]))
        reciprocal += 1 / ranks[0] if ranks else 0.0
    return found / len(questions), reciprocal / len(questions), misses, seconds


@contextlib.contextmanager
def open_store(backend: str, *, alpha: float) -> Iterator[MemoryBackend]:
    """A fresh store: a temporary LanceDB directory, or new collections on a Weaviate (dropped after)."""
    if backend == "lance":
        with tempfile.TemporaryDirectory(prefix="crewdesk-kb-") as home:
            yield LanceBackend(path=Path(home), embedder=local_embedder(), alpha=alpha)
        return
    from crewdesk.memory.weaviate_backend import WeaviateBackend

    with contextlib.ExitStack() as stack:
        url, grpc_port, api_key = os.environ.get("WEAVIATE_URL", ""), int(os.environ.get("WEAVIATE_GRPC_PORT", "50051")), os.environ.get("WEAVIATE_API_KEY", "")
        if not url:
            from tests.weaviate_standin import WeaviateStandIn

            standin = stack.enter_context(WeaviateStandIn())
            url, grpc_port = standin.url, standin.grpc_port
            print(f"Weaviate: the in-process stand-in (tests/weaviate_standin, reporting server version {standin.version})")
        prefix = f"CrewdeskBench{uuid.uuid4().hex[:8]}"
        store = WeaviateBackend(url=url, grpc_port=grpc_port, api_key=api_key, prefix=prefix, embedder=local_embedder(), alpha=alpha)
        try:
            yield store
        finally:
            client = store._connect()
            for name in client.collections.list_all(simple=True):
                if name.startswith(prefix):
                    client.collections.delete(name)
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["lance", "weaviate"], default="lance", help="the memory backend to build the KB in (default: lance)")
    parser.add_argument("--alpha", type=float, default=0.5, help="hybrid weight: 1 = vectors only, 0 = BM25 only (default: CREWDESK_KB_HYBRID_ALPHA's default)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--chunk-chars", type=int, default=1200)
    parser.add_argument("--overlap", type=int, default=150)
    parser.add_argument("--misses", action="store_true", help="print each question missed and what came back instead")
    parser.add_argument("--sweep", action="store_true", help="also report alpha = 0, 0.25, 0.5, 0.75, 1")
    args = parser.parse_args()
    configure_logging(level="WARNING", json=False)
    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    with open_store(args.backend, alpha=args.alpha) as store:
        started = time.perf_counter()
        reports = ingest(backend=store, paths=DEMO_KB, chunk_chars=args.chunk_chars, overlap=args.overlap)
        built = time.perf_counter() - started
        print(
            f"demo KB: {sum(r.added for r in reports)} chunks from {len(reports)} files in {built:.1f} s "
            f"(chunk cap {args.chunk_chars} chars, overlap {args.overlap}); {len(questions)} questions; embedder {store.embedder.version}; backend {store.kind}"
        )
        for alpha in [0.0, 0.25, 0.5, 0.75, 1.0] if args.sweep else [args.alpha]:
            store.alpha = alpha
            recall, mrr, misses, seconds = evaluate(store, questions, k=args.k)
            seconds.sort()
            print(
                f"alpha {alpha:.2f}: recall@{args.k} {recall:.3f}  MRR {mrr:.3f}  ({len(questions) - len(misses)}/{len(questions)} found; "
                f"query p50 {1000 * seconds[len(seconds) // 2]:.0f} ms)"
            )
        if args.misses:
            store.alpha = args.alpha
            for question, chunks in evaluate(store, questions, k=args.k)[2]:
                print(f"\nMISS {question['id']}: {question['question']}\n  wanted {question['relevant']} {question.get('answer', '')!r}")
                for chunk in chunks:
                    flat = re.sub(r"\s+", " ", chunk.text)[:90]
                    print(f"  got {Path(chunk.source).name} | {chunk.heading} | {flat}")


if __name__ == "__main__":
    main()
