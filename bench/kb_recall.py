"""Retrieval quality of the knowledge base: one command, prints recall@5 and MRR on bench/kb_questions.jsonl.

  .venv/bin/python bench/kb_recall.py [--alpha 0.5] [--k 5] [--chunk-chars 1200] [--overlap 150] [--misses] [--sweep]

Builds the demo KB (tau2 retail policy.md, ABCD guidelines.json and kb.json) in a fresh LanceDB directory with the local
embedder (all-MiniLM-L6-v2), then asks every labelled question. A retrieved chunk is relevant when it comes from a
labelled source and section (heading path ends with it) and, if the label gives one, contains the answer phrase.
recall@k: share of questions with a relevant chunk in the top k. MRR: mean of 1/rank of the first relevant chunk
(top 10; 0 when none). --sweep also reports alpha 0 (BM25 only) to 1 (vectors only).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CREWDESK_LOG_LEVEL", "WARNING")
warnings.filterwarnings("ignore")

from crewdesk.logging import configure_logging
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


def evaluate(store: LanceBackend, questions: list[dict], *, k: int, depth: int = 10) -> tuple[float, float, list[tuple[dict, list[KBChunk]]], list[float]]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=0.5, help="hybrid weight: 1 = vectors only, 0 = BM25 only (default: CREWDESK_KB_HYBRID_ALPHA's default)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--chunk-chars", type=int, default=1200)
    parser.add_argument("--overlap", type=int, default=150)
    parser.add_argument("--misses", action="store_true", help="print each question missed and what came back instead")
    parser.add_argument("--sweep", action="store_true", help="also report alpha = 0, 0.25, 0.5, 0.75, 1")
    args = parser.parse_args()
    configure_logging(level="WARNING", json=False)
    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory(prefix="crewdesk-kb-") as home:
        store = LanceBackend(path=Path(home), embedder=local_embedder(), alpha=args.alpha)
        started = time.perf_counter()
        reports = ingest(backend=store, paths=DEMO_KB, chunk_chars=args.chunk_chars, overlap=args.overlap)
        built = time.perf_counter() - started
        print(
            f"demo KB: {sum(r.added for r in reports)} chunks from {len(reports)} files in {built:.1f} s "
            f"(chunk cap {args.chunk_chars} chars, overlap {args.overlap}); {len(questions)} questions; embedder {store.embedder.version}"
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
