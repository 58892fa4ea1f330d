"""Memory benchmark: one command, prints embeddings/s, upsert/s and query p50/p95 at 10k and 100k chunks, and what
customer memory costs per ticket.

  .venv/bin/python bench/memory.py [--scales 10000 100000] [--base-texts 2000] [--queries 200] [--tickets 12] [--skip-pipeline]

1. Embeddings/s: the real all-MiniLM-L6-v2 on one torch thread, on synthetic chunk-sized texts (~700 characters).
2. Upsert/s and query latency on the embedded LanceDB store at each scale. Embedding 100k texts on one thread would
   take most of an hour, so the chunks at scale reuse real MiniLM vectors of --base-texts distinct texts, each with
   small random noise and renormalised (a distinct vector per chunk); upsert/s is therefore the store's write rate
   without embedding. Queries are embedded by the real model, so their latency includes it. The keyword index is
   brought up to date (optimize) before querying, as `crewdesk kb add` does.
3. Memory per ticket: the in-process pipeline on SQLite with the scripted model (0 ms), customer memory off vs on
   (recall before the crew, remember after), same tickets; extra ms and prompt tokens per ticket.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HOME = Path(tempfile.mkdtemp(prefix="crewdesk-bench-memory-"))
os.environ.update(
    CREWAI_DISABLE_TELEMETRY="true",
    OTEL_SDK_DISABLED="true",
    CREWAI_TRACING_ENABLED="false",
    CREWAI_TESTING="true",
    CREWAI_STORAGE_DIR=str(HOME / "crewai"),
    CREWDESK_HOME=str(HOME),
    CREWDESK_LOG_LEVEL="ERROR",
)
warnings.filterwarnings("ignore")

import numpy as np

from crewdesk.logging import configure_logging
from crewdesk.memory.embeddings import Embedder, local_embedder
from crewdesk.memory.lance import LanceBackend
from crewdesk.memory.schemas import KBChunk

WORDS = (  # noqa: SIM905 - a readable word list
    "order refund return exchange shipping delivery parcel invoice charge payment card gift subscription account password "
    "address email phone cancel pending delivered processed item product variant size color boots jacket shirt jeans member "
    "gold silver bronze guest promo code discount fee waive credit store policy agent customer confirm verify identity status "
    "tracking label warehouse courier late missing damaged stain replacement warranty"
).split()
QUESTIONS = [
    "how long does a refund take",
    "can I cancel an order that already shipped",
    "gift card balance for a payment change",
    "return policy for gold members",
    "my parcel is late and the tracking does not move",
    "promo code rejected at checkout",
    "change the delivery address of a pending order",
    "charged twice on my subscription invoice",
    "exchange boots for another size",
    "reset two-factor authentication",
]


def synthetic_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"Section {i}. " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(95, 115))) + "." for i in range(n)]


class ReusedVectors(Embedder):
    """Documents: real MiniLM vectors of the base texts plus small noise (scale tests); queries: the real model."""

    def __init__(self, base: dict[str, np.ndarray], real: Embedder, seed: int = 7) -> None:
        self.name, self.dimension = real.name, real.dimension
        self.base, self.real, self.rng = base, real, np.random.default_rng(seed)

    def embed_documents(self, texts):
        vectors = np.stack([self.base[text.rsplit("\n", 1)[-1].split(" #", 1)[0]] for text in texts]) + self.rng.normal(0, 0.02, (len(texts), self.dimension))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype("float32").tolist()

    def embed_query(self, text):
        return self.real.embed_query(text)


def bench_embeddings(texts: list[str]) -> tuple[float, dict[str, np.ndarray]]:
    embedder = local_embedder()
    started = time.perf_counter()
    embedder.embed_documents(texts[:16])  # load the model and warm up
    print(f"MiniLM load + first batch of 16 (once per worker process): {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    vectors = embedder.embed_documents(texts)
    rate = len(texts) / (time.perf_counter() - started)
    single = []
    for question in QUESTIONS * 3:
        t = time.perf_counter()
        embedder.embed_query(question)
        single.append(time.perf_counter() - t)
    print(f"embeddings/s (all-MiniLM-L6-v2, 1 torch thread, {len(texts)} texts of ~{int(statistics.mean(map(len, texts)))} chars, batch 32): {rate:.1f}")
    print(f"  one query embedding: p50 {1000 * statistics.median(single):.1f} ms")
    return rate, {text: np.asarray(vector, dtype="float32") for text, vector in zip(texts, vectors, strict=True)}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bench_scale(n: int, base: dict[str, np.ndarray], queries: int, batch: int = 1000) -> dict[str, float]:
    texts = list(base)
    store = LanceBackend(path=HOME / f"scale-{n}", embedder=ReusedVectors(base, local_embedder()))
    chunks = [
        KBChunk(
            id=f"c{i}",
            source=f"/kb/doc{i // 50}.md",
            title="Synthetic",
            heading=f"Doc {i // 50} > Part {i % 50}",
            text=f"{texts[i % len(texts)]} #{i}",
            position=i % 50,
        )
        for i in range(n)
    ]
    started = time.perf_counter()
    for start in range(0, n, batch):
        store.upsert_chunks(chunks[start : start + batch])
    upsert_seconds = time.perf_counter() - started
    started = time.perf_counter()
    store.optimize()
    optimize_seconds = time.perf_counter() - started
    rng = random.Random(n)
    latencies = []
    for i in range(queries):
        question = QUESTIONS[i % len(QUESTIONS)] + ("" if i < len(QUESTIONS) else f" {rng.choice(WORDS)}")
        t = time.perf_counter()
        hits = store.search_kb(question, k=5)
        latencies.append(time.perf_counter() - t)
        assert len(hits) == 5
    # an idempotent re-upsert of 1,000 unchanged chunks (what re-ingesting an edited file costs at this size)
    t = time.perf_counter()
    store.upsert_chunks(chunks[:1000])
    reupsert = time.perf_counter() - t
    result = {
        "upsert_per_s": n / upsert_seconds,
        "optimize_s": optimize_seconds,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p95_ms": 1000 * percentile(latencies, 95),
        "reupsert_1k_s": reupsert,
    }
    print(
        f"{n:>7,} chunks: upsert {result['upsert_per_s']:,.0f}/s (batches of {batch}, embedding excluded), optimize {optimize_seconds:.1f} s, "
        f"query p50 {result['p50_ms']:.0f} ms / p95 {result['p95_ms']:.0f} ms (hybrid, k=5, {queries} queries, query embedding included), "
        f"re-upsert of 1,000 existing {reupsert:.2f} s"
    )
    return result


def bench_pipeline(tickets: int) -> None:
    from sqlalchemy import select

    from crewdesk.db import make_engine, make_session_factory, transaction
    from crewdesk.llm.factory import LLMFactory
    from crewdesk.migrate import upgrade
    from crewdesk.runs.models import CrewRun
    from crewdesk.settings import load_settings
    from crewdesk.tickets import service as ticket_service
    from crewdesk.tickets.schemas import TicketIn
    from crews.config import load_config
    from crews.pipeline import Pipeline

    bodies = [
        "I was charged twice for my subscription this month, please refund one charge.",
        "Where is my refund for the cancelled order? It has been a week.",
        "The export button crashes the app with error 500.",
        "Please change the shipping address on my pending order.",
    ]
    results = {}
    for mode in ("no kb_search", "off", "lance"):
        slug = mode.replace(" ", "-")
        url = f"sqlite:///{HOME / f'pipeline-{slug}.db'}"
        upgrade(url)
        settings = load_settings(
            database_url=url,
            llm_provider="scripted",
            memory_backend="off" if mode == "no kb_search" else mode,
            memory_dir=HOME / f"pipeline-memory-{slug}",
            log_level="ERROR",
        )
        factory = make_session_factory(make_engine(url))
        config = load_config(settings.agents_dir, settings.tasks_dir)
        if mode == "no kb_search":  # what listing the tool costs in every specialist prompt
            config = replace(config, roles={k: replace(r, tools=tuple(t for t in r.tools if t != "kb_search")) for k, r in config.roles.items()})
        pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings), config=config)
        seconds, tokens = [], []
        for n in range(tickets + 1):
            with transaction(factory) as db:
                ticket, _ = ticket_service.submit(
                    db=db,
                    ticket_in=TicketIn(
                        external_id=f"b{n}", source="bench", customer=f"customer{n % 3}@example.com", subject="Help", body=bodies[n % len(bodies)]
                    ),
                )
            started = time.perf_counter()
            pipeline.process(ticket.id)
            elapsed = time.perf_counter() - started
            with factory() as db:
                run = db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket.id)).scalar_one()
            if n:  # the first ticket warms CrewAI up: left out
                seconds.append(elapsed)
                tokens.append(run.tokens_in)
        results[mode] = (statistics.median(seconds), statistics.mean(tokens))
    bare, off, on = results["no kb_search"], results["off"], results["lance"]
    print(
        f"kb_search listed for the 4 specialists: +{off[1] - bare[1]:.0f} prompt tokens per ticket (its description in each specialist prompt; "
        "a call adds its passages, ~4 x 250 tokens)"
    )
    print(
        f"memory per ticket (scripted model at 0 ms, {tickets} tickets from 3 customers, SQLite, LanceDB + MiniLM): "
        f"+{1000 * (on[0] - off[0]):.0f} ms median ({1000 * off[0]:.0f} -> {1000 * on[0]:.0f} ms), "
        f"+{on[1] - off[1]:.0f} prompt tokens mean ({off[1]:.0f} -> {on[1]:.0f}); no extra LLM calls"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--base-texts", type=int, default=2000, help="distinct texts embedded by the real model")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--tickets", type=int, default=12)
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()
    configure_logging(level="ERROR", json=False)
    import platform

    print(f"crewdesk memory benchmark, {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    began = time.perf_counter()
    _, base = bench_embeddings(synthetic_texts(args.base_texts, seed=1))
    for n in args.scales:
        bench_scale(n, base, args.queries)
    if not args.skip_pipeline:
        bench_pipeline(args.tickets)
    print(f"total {time.perf_counter() - began:.0f} s; scratch dir {HOME}")


if __name__ == "__main__":
    main()
