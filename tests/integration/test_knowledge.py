"""Knowledge base and embeddings without a backend server: chunking of every supported format, the embedders (the
OpenAI API is unreachable here, so a local HTTP stand-in plays it and the test asserts the exact request), the
kb_search tool through the governance gate, the CLI, and the Weaviate adapter's schema and filters against the
installed weaviate-client v4 classes (no server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC
from pathlib import Path
from typing import ClassVar

import pytest

from crewdesk.memory.chunking import UnsupportedDocument, chunk_document, iter_files, read_document
from crewdesk.memory.embeddings import OpenAICompatibleEmbedder, local_embedder
from crewdesk.memory.service import DEMO_KB, customer_key, redact, summarise
from tests.helpers import JsonStandIn, http_stand_in

ROOT = Path(__file__).resolve().parents[2]
CREWDESK = str(Path(sys.executable).parent / "crewdesk")


def test_markdown_is_chunked_by_heading_then_paragraph_with_a_cap_and_overlap(tmp_path):
    long_section = "\n\n".join(f"Paragraph {n}. " + "Words about returns and refunds. " * 12 for n in range(8))
    path = tmp_path / "guide.md"
    path.write_text(f"# Guide\n\nIntro line.\n\n## Returns\n\n{long_section}\n\n```\n# not a heading\n```\n\n### Labels\n\nPrint the **label**.\n")
    chunks = chunk_document(read_document(path), max_chars=600, overlap=80)
    headings = [c.heading for c in chunks]
    assert headings[0] == "Guide" and headings[-1] == "Guide > Returns > Labels" and "Guide > Returns" in headings
    returns = [c for c in chunks if c.heading == "Guide > Returns"]
    assert len(returns) > 2 and all(len(c.text) <= 600 for c in chunks)
    assert all(c.text.startswith("…") for c in returns[1:])  # each later chunk repeats the end of the one before
    assert "# not a heading" in returns[-1].text  # a code fence is not split at its '#'
    assert chunks[-1].text == "Print the label." and chunks[0].title == "Guide"
    assert [c.id for c in chunk_document(read_document(path), max_chars=600, overlap=80)] == [c.id for c in chunks]  # stable ids


def test_html_becomes_safe_text_and_plain_text_is_one_section(tmp_path):
    page = tmp_path / "faq.html"
    page.write_text(
        "<html><head><script>alert('x')</script><style>p{}</style></head><body><h1>FAQ</h1><h2>Shipping</h2>"
        "<p>Ships in <b>2 days</b>. <a href='http://evil.example/'>tracking</a><img src='x.png' alt='pic'></p></body></html>"
    )
    [chunk] = chunk_document(read_document(page))
    assert chunk.heading == "FAQ > Shipping" and "Ships in 2 days" in chunk.text
    assert "alert" not in chunk.text and "evil.example" not in chunk.text and "x.png" not in chunk.text
    note = tmp_path / "note.txt"
    note.write_text("First paragraph.\n\nSecond paragraph.")
    [text_chunk] = chunk_document(read_document(note))
    assert text_chunk.heading == "note" and "Second paragraph." in text_chunk.text


def test_abcd_guidelines_and_action_sequences_are_read(tmp_path):
    policy, guidelines, actions = (read_document(p) for p in DEMO_KB)
    assert policy.title == "Retail agent policy"
    assert len(guidelines.sections) == 55 and guidelines.sections[0].heading == "Product Defect > Initiate Refund"
    assert "[Validate Purchase]" in guidelines.sections[0].text
    assert {s.product for s in guidelines.sections} == {"", "boots", "shirt", "jeans", "jacket"}
    assert len(actions.sections) == 55 and "pull-up-account" in actions.sections[0].text
    assert [p.name for p in iter_files(DEMO_KB[1].parent)] == ["SOURCES.md", "guidelines.json", "kb.json"]  # other JSON is skipped
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"a": 1}))
    with pytest.raises(UnsupportedDocument, match="neither ABCD"):
        read_document(other)
    pdf = tmp_path / "x.pdf"
    pdf.write_bytes(b"%PDF-1.7")
    with pytest.raises(UnsupportedDocument, match="unsupported file type"):
        read_document(pdf)


def test_minilm_is_offline_unit_length_and_single_threaded():
    import torch

    embedder = local_embedder()
    [vector] = embedder.embed_documents(["Where is my refund?"])
    assert len(vector) == 384 and abs(sum(x * x for x in vector) - 1.0) < 1e-3
    assert embedder.version == "all-MiniLM-L6-v2:384" and torch.get_num_threads() == 1
    near, far = embedder.embed_documents(["When will I get my money back?", "How do I reset my password?"])
    assert sum(a * b for a, b in zip(vector, near, strict=True)) > sum(a * b for a, b in zip(vector, far, strict=True))


class _EmbeddingsStandIn(JsonStandIn):
    requests: ClassVar[list] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, dict(self.headers), body))
        data = [{"object": "embedding", "index": i, "embedding": [3.0, 4.0, 0.0]} for i, _ in enumerate(body["input"])]
        self.answer(200, {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 3, "total_tokens": 3}})


def test_openai_compatible_embedder_sends_plain_text_and_versions_by_model_and_dimension():
    """The OpenAI API cannot be reached here: a local stand-in answers and the test checks the exact request."""
    with http_stand_in(_EmbeddingsStandIn) as url:
        embedder = OpenAICompatibleEmbedder(model="nomic-embed-text", base_url=f"{url}/v1", api_key="sk-embed")
        vectors = embedder.embed_documents(["refund policy", "shipping"])
        assert embedder.version == "nomic-embed-text:3"  # an unknown model's dimension is probed once
    path, headers, body = _EmbeddingsStandIn.requests[0]
    assert path == "/v1/embeddings" and headers["Authorization"] == "Bearer sk-embed"
    assert body["model"] == "nomic-embed-text" and body["input"] == ["refund policy", "shipping"]  # strings, not tiktoken ids
    assert vectors == [[0.6, 0.8, 0.0], [0.6, 0.8, 0.0]]  # normalised to unit length like MiniLM's


def test_customer_keys_and_redaction():
    assert customer_key(customer=" Ana@Example.COM ") == customer_key(customer="ana@example.com")
    assert customer_key(customer="ana@example.com") != customer_key(customer="ana@example.com", secret="s3cret")
    assert "ana" not in customer_key(customer="ana@example.com")
    text = summarise(
        issue="Refund to ana@example.com, call me on phone +1 415 555 0100, card 4111 1111 1111 1111, token <EMAIL_2>",
        actions=["return_delivered_order_items {'order_id': '#W123'}"],
        outcome="resolved",
    )
    assert "ana@example.com" not in text and "415 555" not in text and "4111" not in text and "<EMAIL_2>" not in text
    assert "[EMAIL]" in text and "[PHONE]" in text and "[CARD]" in text and "#W123" in text
    assert redact("no personal data here, order #W2378156") == "no personal data here, order #W2378156"


def test_kb_search_tool_passes_the_gate_and_conceals(tmp_path, session_factory, make_ticket):
    from crewdesk.memory.lance import LanceBackend
    from crewdesk.memory.service import ingest
    from tools import kb_search
    from tools.gate import Gate

    kb = tmp_path / "kb.md"
    kb.write_text("# Help\n\n## Escalations\n\nWrite to escalations@example.com for urgent refunds.\n")
    store = LanceBackend(path=tmp_path / "memory", embedder=local_embedder())
    ingest(backend=store, paths=[kb])

    class Vault:
        def conceal(self, value):
            return value.replace("escalations@example.com", "<EMAIL_1>")

        def reveal(self, value):
            return value

    gate = Gate(session_factory=session_factory, ticket_id=make_ticket(), run_id=None, permissions={"billing": frozenset({"kb_search"})}, vault=Vault())
    out = kb_search.KBSearchTool(gate=gate, role="billing", knowledge=store, k=2).run(query="urgent refund")  # the store is passed in
    assert "kb.md > Help > Escalations" in out and "<EMAIL_1>" in out and "escalations@example.com" not in out
    denied = kb_search.KBSearchTool(gate=gate, role="technical", knowledge=store).run(query="urgent refund")
    assert denied.startswith("DENIED")
    from sqlalchemy import select

    from crewdesk.audit.models import AuditEvent

    with session_factory() as db:
        assert db.execute(select(AuditEvent.name).where(AuditEvent.kind == "gate")).scalars().all() == ["denied:kb_search"]
    assert "not configured" in kb_search.KBSearchTool(gate=gate, role="billing").run(query="x")


def test_weaviate_adapter_builds_valid_v4_schema_and_filters_offline():
    from weaviate.collections.classes.config import _CollectionConfigCreate
    from weaviate.collections.classes.filters import _FilterAnd, _FilterValue

    from crewdesk.memory.base import MemoryBackendError, MemoryUnavailable
    from crewdesk.memory.weaviate_backend import WeaviateBackend, filters_for, properties, vector_config

    for kind in ("kb", "interactions"):
        schema = _CollectionConfigCreate(name="CrewdeskKb_x", properties=properties(kind), vector_config=vector_config())._to_dict()
        assert schema["vectorConfig"]["default"] == {"vectorizer": {"none": {}}, "vectorIndexType": "hnsw", "vectorIndexConfig": {"distance": "cosine"}}
        names = {p["name"]: p for p in schema["properties"]}
        assert "id" not in names  # reserved by Weaviate
        assert names["embedding_version"]["tokenization"] == "field"
    assert isinstance(filters_for(customer_key="k", outcome="resolved", product=None), _FilterAnd)
    assert isinstance(filters_for(customer_key="k"), _FilterValue) and filters_for() is None
    with pytest.raises(MemoryBackendError, match="prefix"):
        WeaviateBackend(url="http://127.0.0.1:1", embedder=local_embedder(), prefix="bad-prefix")
    with pytest.raises(MemoryUnavailable, match="cannot reach Weaviate"):
        WeaviateBackend(url="http://127.0.0.1:1", embedder=local_embedder()).count("kb")


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([CREWDESK, *args], env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_cli_kb_add_is_idempotent_and_memory_forget_reaches_the_store(tmp_path):
    from datetime import datetime

    from crewdesk.memory.lance import LanceBackend
    from crewdesk.memory.schemas import Interaction

    env = {"CREWDESK_HOME": str(tmp_path), "CREWDESK_DATABASE_URL": ""}
    doc = tmp_path / "help.md"
    doc.write_text("# Help\n\n## Refunds\n\nRefunds take 5 to 7 business days.\n\n## Shipping\n\nShipping costs $8.\n")
    first = cli("kb", "add", str(doc), env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "added 2, removed 0, unchanged 0" in first.stdout and "knowledge base: 2 chunks in lance (all-MiniLM-L6-v2:384)" in first.stdout
    again = cli("kb", "add", str(doc), env=env)
    assert "added 0, removed 0, unchanged 2" in again.stdout
    found = cli("kb", "search", "how long do refunds take", "-k", "1", env=env)
    assert found.returncode == 0 and "Help > Refunds" in found.stdout
    store = LanceBackend(path=tmp_path / "memory", embedder=local_embedder())
    key = customer_key(customer="ana@example.com")
    store.remember(Interaction(id="i1", customer_key=key, ticket_id=1, summary="Issue: refund", outcome="resolved", created_at=datetime.now(UTC)))
    forgotten = cli("memory", "forget", "--customer", "Ana@example.com", env=env)
    assert forgotten.returncode == 0 and "forgotten: 1 in lance" in forgotten.stdout, forgotten.stderr[-2000:]
    assert store.recall(key, "refund") == []
    purged = cli("memory", "purge", env=env)
    assert purged.returncode == 0 and "purged (older than 365 days): 0 in lance" in purged.stdout
    missing = cli("kb", "add", str(tmp_path / "nope.md"), env=env)
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and "no such file" in missing.stderr
