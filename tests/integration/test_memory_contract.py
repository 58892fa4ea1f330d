"""One contract for every memory backend: upsert, hybrid search, filters, empty strings, idempotent re-ingest, forget,
purge, embedding-version mismatch. LanceDB (the embedded default) runs on real files with the real MiniLM model.

Weaviate runs against a real server when WEAVIATE_URL is set (e.g. WEAVIATE_URL=http://127.0.0.1:8080, gRPC on
WEAVIATE_GRPC_PORT, default 50051, WEAVIATE_API_KEY if it asks for one), else against tests/weaviate_standin, an
in-process stand-in of Weaviate's REST and gRPC API (no Weaviate server can run on our machines): the same cases,
unchanged, either way."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crewdesk.memory.base import EmbeddingVersionMismatch, MemoryBackend
from crewdesk.memory.embeddings import Embedder, local_embedder
from crewdesk.memory.lance import LanceBackend
from crewdesk.memory.schemas import Interaction, KBChunk, KBFilters, RecallFilters
from crewdesk.memory.service import customer_key, forget, ingest
from tests.weaviate_standin import WeaviateStandIn

WEAVIATE_URL = os.environ.get("WEAVIATE_URL", "")
NOW = datetime.now(UTC)

DOC = """# Help centre

## Refunds

Refunds go back to the original payment method within 5 to 7 business days.

Gift card refunds are immediate.

## Shipping

Standard shipping costs $8 and takes three to five days.

## Passwords

We never ask for your password. Use the reset link on the sign-in page.
"""


class HashEmbedder(Embedder):
    """A second, deterministic 'model' (bag of hashed words): switching to it must re-embed, not mix."""

    def __init__(self, name: str = "hash-test", dimension: int = 64) -> None:
        self.name, self.dimension = name, dimension

    def embed_documents(self, texts):
        out = []
        for text in texts:
            vector = [0.0] * self.dimension
            for word in text.lower().split():
                vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimension] += 1.0
            norm = sum(x * x for x in vector) ** 0.5 or 1.0
            out.append([x / norm for x in vector])
        return out


@dataclass(frozen=True)
class WeaviateEndpoint:
    url: str
    grpc_port: int
    api_key: str


@dataclass(frozen=True)
class Place:
    """Where one test's store lives: a fresh directory for Lance, a fresh collection prefix on a Weaviate."""

    kind: str
    location: str
    weaviate: WeaviateEndpoint | None = None


def make_store(place: Place, embedder: Embedder) -> MemoryBackend:
    if place.kind == "lance":
        return LanceBackend(path=Path(place.location), embedder=embedder)
    from crewdesk.memory.weaviate_backend import WeaviateBackend

    assert place.weaviate is not None
    return WeaviateBackend(url=place.weaviate.url, grpc_port=place.weaviate.grpc_port, api_key=place.weaviate.api_key, prefix=place.location, embedder=embedder)


@pytest.fixture(scope="session")
def weaviate_endpoint():
    """A real Weaviate when WEAVIATE_URL is set, else the stand-in (with API-key auth on, as docker-compose runs it)."""
    if WEAVIATE_URL:
        yield WeaviateEndpoint(WEAVIATE_URL, int(os.environ.get("WEAVIATE_GRPC_PORT", "50051")), os.environ.get("WEAVIATE_API_KEY", ""))
        return
    with WeaviateStandIn(api_key="contract-key") as standin:
        yield WeaviateEndpoint(standin.url, standin.grpc_port, standin.api_key)


@pytest.fixture(params=["lance", "weaviate"])
def backend(request, tmp_path):
    """Where the test's store lives (a Place); Weaviate's collections are dropped after."""
    if request.param == "lance":
        yield Place("lance", str(tmp_path / "memory"))
        return
    place = Place("weaviate", f"CrewdeskTest{uuid.uuid4().hex[:8]}", request.getfixturevalue("weaviate_endpoint"))
    yield place
    store = make_store(place, local_embedder())
    client = store._connect()
    for name in client.collections.list_all(simple=True):
        if name.lower().startswith(place.location.lower()):
            client.collections.delete(name)
    store.close()


@pytest.fixture
def store(backend):
    store = make_store(backend, local_embedder())
    yield store
    store.close()


@pytest.fixture
def doc(tmp_path):
    path = tmp_path / "help.md"
    path.write_text(DOC)
    return path


def interaction(customer: str, ticket_id: int, summary: str, *, outcome: str = "resolved", product: str = "", days_ago: float = 0) -> Interaction:
    key = customer_key(customer=customer)
    return Interaction(
        id=f"{key[:16]}-{ticket_id}",
        customer_key=key,
        ticket_id=ticket_id,
        summary=summary,
        outcome=outcome,
        product=product,
        category="billing",
        created_at=NOW - timedelta(days=days_ago),
    )


def test_ingest_and_hybrid_search_find_the_right_section(store, doc):
    [report] = ingest(backend=store, paths=[doc])
    assert (report.added, report.removed, report.unchanged) == (3, 0, 0)
    assert store.count("kb") == 3
    hits = store.search_kb("how long until I get my money back?", k=3)
    assert hits[0].chunk.heading == "Help centre > Refunds" and "5 to 7 business days" in hits[0].chunk.text
    assert hits[0].score >= hits[-1].score
    assert store.search_kb("password reset link", k=1)[0].chunk.heading.endswith("Passwords")
    # an exact rare keyword wins through BM25 even though the vector leg is weak on it
    assert store.search_kb("$8", k=1)[0].chunk.heading.endswith("Shipping")


def test_reingest_is_idempotent_and_a_changed_file_replaces_its_chunks(store, doc):
    ingest(backend=store, paths=[doc])
    [again] = ingest(backend=store, paths=[doc])
    assert (again.added, again.removed, again.unchanged) == (0, 0, 3) and store.count("kb") == 3
    doc.write_text(DOC.replace("three to five days", "two days with our new courier"))
    [changed] = ingest(backend=store, paths=[doc])
    assert (changed.added, changed.removed, changed.unchanged) == (1, 1, 2) and store.count("kb") == 3
    texts = [hit.chunk.text for hit in store.search_kb("how long does shipping take", k=3)]
    assert any("new courier" in t for t in texts) and not any("three to five days" in t for t in texts)


def test_upserting_the_same_chunk_twice_stores_it_once(store, doc):
    from crewdesk.memory.chunking import chunk_document, read_document

    chunks = chunk_document(read_document(doc))
    store.upsert_chunks(chunks)
    store.upsert_chunks(chunks)
    assert store.count("kb") == len(chunks)


def test_kb_filters_by_source_and_product(store, doc, tmp_path):
    other = tmp_path / "boots.md"
    other.write_text("# Boots\n\n## Care\n\nRemove chewing gum from boots with ice, then a soft brush.\n")
    ingest(backend=store, paths=[doc, other])
    from crewdesk.memory.chunking import chunk_document, read_document

    store.upsert_chunks([c.model_copy(update={"product": "boots"}) for c in chunk_document(read_document(other))])
    only_doc = store.search_kb("gum on boots", k=5, filters=KBFilters(source=str(doc.resolve())))
    assert only_doc and all(hit.chunk.source == str(doc.resolve()) for hit in only_doc)
    boots = store.search_kb("refund", k=5, filters=KBFilters(product="boots"))
    assert [hit.chunk.heading for hit in boots] == ["Boots > Care"]


def test_empty_strings_come_back_empty_and_filter_as_empty(store, tmp_path):
    """Weaviate keeps "" as null: a field left empty comes back missing and equal("") matches nothing. The contract is
    that an empty title or product reads back as "" and that filtering on "" finds exactly the untagged rows."""
    source = str(tmp_path / "faq.md")
    untitled = KBChunk(id="faq-1", source=source, text="Our helpline answers on Sundays from 10 to 4.")
    boots = KBChunk(id="faq-2", source=source, title="Boots", heading="Care", text="On Sundays boots are cleaned with ice.", product="boots", position=1)
    store.upsert_chunks([untitled, boots])
    [hit] = store.search_kb("when does the helpline answer on sundays", k=1)
    assert hit.chunk == untitled
    assert [h.chunk.id for h in store.search_kb("sundays", k=5, filters=KBFilters(product=""))] == ["faq-1"]
    assert [h.chunk.id for h in store.search_kb("sundays", k=5, filters=KBFilters(product="boots"))] == ["faq-2"]
    assert store.chunk_ids(source=source) == {"faq-1", "faq-2"}
    store.remember(interaction("ana@example.com", 1, "Issue: refund for a kettle", product=""))
    store.remember(interaction("ana@example.com", 2, "Issue: refund for boots", product="boots"))
    ana = customer_key(customer="ana@example.com")
    [untagged] = store.recall(ana, "refund", k=5, filters=RecallFilters(product=""))
    assert untagged.interaction.ticket_id == 1 and untagged.interaction.product == ""
    assert store.recall(ana, "refund", k=5, filters=RecallFilters(category="")) == []  # both have a category


def test_recall_is_per_customer_and_filters_by_outcome_and_product(store):
    store.remember(interaction("ana@example.com", 1, "Issue: double charge on invoice. Actions: refund. Outcome: resolved", product="plan"))
    store.remember(interaction("ana@example.com", 2, "Issue: cannot sign in. Outcome: escalated", outcome="escalated"))
    store.remember(interaction("bo@example.com", 3, "Issue: double charge on invoice too. Outcome: resolved"))
    ana = customer_key(customer="ana@example.com")
    hits = store.recall(ana, "charged twice", k=5)
    assert {h.interaction.ticket_id for h in hits} == {1, 2} and hits[0].interaction.ticket_id == 1
    assert [h.interaction.ticket_id for h in store.recall(ana, "charge", k=5, filters=RecallFilters(outcome="escalated"))] == [2]
    assert [h.interaction.ticket_id for h in store.recall(ana, "charge", k=5, filters=RecallFilters(product="plan"))] == [1]
    assert store.recall(customer_key(customer="nobody@example.com"), "charge", k=5) == []
    # remembering the same ticket again replaces its summary
    store.remember(interaction("ana@example.com", 1, "Issue: double charge. Outcome: resolved after a second look", product="plan"))
    assert store.count("interactions") == 3


def test_forget_erases_the_customer_and_nobody_else(store):
    for n in range(3):
        store.remember(interaction("Ana@Example.com", n, f"Issue {n}: refund question"))
    store.remember(interaction("bo@example.com", 9, "Issue: refund question"))
    counts = forget(backends=[store], customer="  ana@example.COM ")  # the key is of the normalised id
    assert counts == {store.kind: 3}
    assert store.recall(customer_key(customer="ana@example.com"), "refund question", k=10) == []
    assert [h.interaction.ticket_id for h in store.recall(customer_key(customer="bo@example.com"), "refund", k=10)] == [9]
    assert store.count("interactions") == 1
    assert forget(backends=[store], customer="ana@example.com") == {store.kind: 0}


def test_purge_erases_only_what_is_past_retention(store):
    store.remember(interaction("ana@example.com", 1, "old: refund", days_ago=400))
    store.remember(interaction("ana@example.com", 2, "recent: refund", days_ago=3))
    assert store.purge_before(NOW - timedelta(days=365)) == 1
    assert [h.interaction.ticket_id for h in store.recall(customer_key(customer="ana@example.com"), "refund", k=5)] == [2]


def test_a_new_embedding_version_reembeds_instead_of_mixing(backend, doc):
    old = make_store(backend, local_embedder())
    ingest(backend=old, paths=[doc])
    old.remember(interaction("ana@example.com", 1, "Issue: refund for a broken kettle"))
    assert old.stored_versions() == {"all-MiniLM-L6-v2:384"}
    new = make_store(backend, HashEmbedder())
    with pytest.raises(EmbeddingVersionMismatch, match="kb reindex"):
        new.search_kb("refund", k=1)
    with pytest.raises(EmbeddingVersionMismatch):
        new.remember(interaction("bo@example.com", 2, "anything"))
    # `kb add` re-embeds first: nothing is mixed, nothing is lost
    [report] = ingest(backend=new, paths=[doc])
    assert report.unchanged == 3 and report.added == 0
    assert new.stored_versions() == {"hash-test:64"}
    assert new.count("kb") == 3 and new.count("interactions") == 1
    assert new.search_kb("refunds original payment method", k=1)[0].chunk.heading.endswith("Refunds")
    assert new.recall(customer_key(customer="ana@example.com"), "refund kettle", k=1)[0].interaction.ticket_id == 1
    with pytest.raises(EmbeddingVersionMismatch):  # and the old model now sees the mismatch the other way round
        old.search_kb("refund", k=1)
    old.close()
    new.close()


def test_recall_on_the_knowledge_base_questions(backend):
    """bench/kb_recall.py's 83 labelled questions over the demo KB, hybrid at alpha 0.5: both backends measured 0.940
    recall@5 (README, Benchmarks); the contract holds each to 0.90."""
    import importlib.util

    from crewdesk.memory.service import DEMO_KB

    spec = importlib.util.spec_from_file_location("kb_recall", Path(__file__).resolve().parents[2] / "bench" / "kb_recall.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    questions = [json.loads(line) for line in bench.QUESTIONS.read_text().splitlines() if line.strip()]
    store = make_store(backend, local_embedder())
    reports = ingest(backend=store, paths=DEMO_KB)
    assert sum(r.added for r in reports) == store.count("kb") > 100
    recall, mrr, _, _ = bench.evaluate(store, questions, k=5)
    assert recall >= 0.90 and mrr >= 0.75, (recall, mrr)
    store.close()


# LanceDB only: what only the embedded backend has to get right itself


def _grep(directory: Path, needle: str) -> list[str]:
    result = subprocess.run(["grep", "-rlai", needle, str(directory)], capture_output=True, text=True)
    return result.stdout.split()


def test_forget_leaves_no_trace_in_lance_files(tmp_path):
    """A Lance delete only marks rows deleted and keeps old versions; forget must remove the bytes themselves."""
    store = LanceBackend(path=tmp_path / "memory", embedder=HashEmbedder())
    for n in range(30):
        store.remember(interaction("bo@example.com", 100 + n, f"Issue {n}: the parcel with the kettle was late"))
    store.remember(interaction("ana@example.com", 1, "Issue: zanzibarine quokkafruit subscription was charged twice"))
    store.optimize()  # compacted into one fragment, so a plain delete would not rewrite it
    assert _grep(tmp_path, "quokkafruit"), "the text should be on disk before forget (else this test proves nothing)"
    assert store.forget_customer(customer_key(customer="ana@example.com")) == 1
    assert _grep(tmp_path, "quokkafruit") == [] and _grep(tmp_path, "zanzibarin") == []  # data files, old versions, keyword index
    assert store.count("interactions") == 30
    table = store._table("interactions")
    assert len(table.list_versions()) == 1
    assert store.recall(customer_key(customer="bo@example.com"), "kettle late", k=2)  # the rest still searchable


def _remember_many(path: str, prefix: str, n: int) -> None:
    store = LanceBackend(path=Path(path), embedder=HashEmbedder())
    for i in range(n):
        store.remember(interaction(f"{prefix}@example.com", i, f"{prefix} ticket {i}: refund"))


def test_worker_processes_write_concurrently_without_losing_rows(tmp_path):
    """Celery children are separate processes: the file lock serialises their commits."""
    context = multiprocessing.get_context("spawn")  # like a fresh worker child; never fork a process that used lancedb
    path = str(tmp_path / "memory")
    LanceBackend(path=Path(path), embedder=HashEmbedder()).remember(interaction("seed@example.com", 0, "seed"))  # the table exists before the race
    workers = [context.Process(target=_remember_many, args=(path, f"w{n}", 15)) for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert LanceBackend(path=Path(path), embedder=HashEmbedder()).count("interactions") == 1 + 3 * 15


def test_forget_goes_on_when_one_backend_is_down_and_says_so(tmp_path):
    from crewdesk.memory.base import MemoryBackendError
    from crewdesk.memory.weaviate_backend import WeaviateBackend

    lance = LanceBackend(path=tmp_path / "memory", embedder=HashEmbedder())
    lance.remember(interaction("ana@example.com", 1, "Issue: refund"))
    down = WeaviateBackend(url="http://127.0.0.1:1", embedder=HashEmbedder())
    with pytest.raises(MemoryBackendError, match=r"erasure incomplete.*weaviate: cannot reach Weaviate.*done: \{'lance': 1\}"):
        forget(backends=[down, lance], customer="ana@example.com")
    assert lance.count("interactions") == 0
