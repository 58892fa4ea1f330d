"""What only the Weaviate backend has to get right, against tests/weaviate_standin (issue 23): errors classified by what
they mean (each gRPC status code injected per method, a real deadline, REST statuses), erasure beyond one round of
QUERY_MAXIMUM_RESULTS, two worker processes creating the same collection at once, and a connect that asks nothing of
any host but the server (no PyPI version check)."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import grpc
import httpx
import pytest

from crewdesk.errors import TransientError
from crewdesk.memory.base import MemoryBackendError, MemoryUnavailable
from crewdesk.memory.schemas import Interaction, KBChunk
from crewdesk.memory.service import customer_key
from crewdesk.memory.weaviate_backend import WeaviateBackend
from tests.integration.test_memory_contract import HashEmbedder, interaction
from tests.weaviate_standin import WeaviateStandIn

SOURCE = "/kb/help.md"
CHUNKS = [
    KBChunk(id="help-1", source=SOURCE, title="Help", heading="Refunds", text="Refunds reach the card in 5 to 7 days."),
    KBChunk(id="help-2", source=SOURCE, title="Help", heading="Shipping", text="Standard shipping takes three days.", position=1),
]
ANA = customer_key(customer="ana@example.com")


@pytest.fixture(autouse=True)
def _no_client_backoff(monkeypatch):
    """weaviate-client retries UNAVAILABLE itself, sleeping 1, 2, 4 ... 32 s (63 s for a search) before it gives up:
    the same attempts, without the waits."""
    import weaviate.retry

    monkeypatch.setattr(weaviate.retry, "time", SimpleNamespace(sleep=lambda seconds: None))  # that module's only, not time.sleep


@pytest.fixture(scope="module")
def standin():
    with WeaviateStandIn() as server:
        yield server


@pytest.fixture(autouse=True)
def _faults_cleared(request):
    """A test that fails with a fault still set must not hand it to the next one on the shared stand-in."""
    yield
    if "standin" in request.fixturenames:
        request.getfixturevalue("standin").clear_faults()


def backend_on(server: WeaviateStandIn, *, embedder=None, prefix: str = "", timeout: float = 30.0) -> WeaviateBackend:
    return WeaviateBackend(
        url=server.url,
        grpc_port=server.grpc_port,
        api_key=server.api_key,
        prefix=prefix or f"CrewdeskTest{uuid.uuid4().hex[:8]}",
        embedder=embedder or HashEmbedder(),
        timeout=timeout,
    )


@pytest.fixture
def store(standin):
    store = backend_on(standin)
    store.upsert_chunks(CHUNKS)
    store.remember(interaction("ana@example.com", 1, "Issue: refund for a kettle", days_ago=400))
    yield store
    standin.clear_faults()
    store.close()


# errors by what they mean

OPERATIONS: dict[str, tuple[str, Callable[[WeaviateBackend], object]]] = {
    "search_kb": ("Search", lambda store: store.search_kb("refund", k=3)),
    "recall": ("Search", lambda store: store.recall(ANA, "refund", k=3)),
    "chunk_ids (fetch)": ("Search", lambda store: store.chunk_ids(source=SOURCE)),
    "upsert_chunks (insert_many)": ("BatchObjects", lambda store: store.upsert_chunks([CHUNKS[0].model_copy(update={"id": "help-3"})])),
    "remember (insert_many)": ("BatchObjects", lambda store: store.remember(interaction("ana@example.com", 2, "Issue: late parcel"))),
    "forget_customer (delete_many)": ("BatchDelete", lambda store: store.forget_customer(ANA)),
    "purge_before (delete_many)": ("BatchDelete", lambda store: store.purge_before(datetime.now(UTC) - timedelta(days=365))),
}
TRANSIENT = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED]
# every other status a server can end a call with: the request was refused, and sending it again will not help
PERMANENT = [code for code in grpc.StatusCode if code is not grpc.StatusCode.OK and code not in TRANSIENT]


# every status code on one operation per gRPC method; on the others, the two transient ones and a refusal
EVERY_CODE = {"search_kb", "upsert_chunks (insert_many)", "forget_customer (delete_many)"}
CASES = [
    pytest.param(operation, code, id=f"{operation}-{code.name}")
    for operation in OPERATIONS
    for code in (TRANSIENT + PERMANENT if operation in EVERY_CODE else [*TRANSIENT, grpc.StatusCode.INVALID_ARGUMENT])
]


@pytest.mark.parametrize(("operation", "code"), CASES)
def test_grpc_errors_after_connecting_are_classified_by_status_code(standin, store, operation, code):
    method, call = OPERATIONS[operation]
    store.search_kb("refund", k=1)  # connected, and the stored embedding versions are known: the fault hits `operation`
    store.recall(ANA, "refund", k=1)
    standin.fail_grpc(method, code)
    with pytest.raises(MemoryBackendError) as raised:
        call(store)
    assert standin.faults.calls.get(method, 0) >= 1
    if code in TRANSIENT:
        assert isinstance(raised.value, MemoryUnavailable) and isinstance(raised.value, TransientError), raised.value
    else:
        assert not isinstance(raised.value, MemoryUnavailable), raised.value
    standin.clear_faults()
    call(store)  # the server is back: the same call goes through


def test_an_outage_while_reindexing_is_transient(standin):
    """reindex reads the old generation with the client's iterator (cursor fetches over gRPC)."""
    prefix = f"CrewdeskTest{uuid.uuid4().hex[:8]}"
    backend_on(standin, prefix=prefix, embedder=HashEmbedder("hash-old")).remember(interaction("ana@example.com", 1, "Issue: refund"))
    new = backend_on(standin, prefix=prefix, embedder=HashEmbedder("hash-new"))
    standin.fail_grpc("Search", grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(MemoryUnavailable):
        new.reindex()
    standin.clear_faults()
    assert new.reindex() == 1 and new.stored_versions() == {"hash-new:64"}


def test_a_real_deadline_is_transient(standin, store):
    """Not an injected status: the server answers after the backend's query timeout, so the client's deadline expires."""
    slow = backend_on(standin, prefix=store.prefix, timeout=1.0)
    slow.search_kb("refund", k=1)
    standin.delay_grpc("Search", 2.5, times=1)
    started = time.monotonic()
    with pytest.raises(MemoryUnavailable, match=r"(?i)deadline"):
        slow.search_kb("refund", k=1)
    assert time.monotonic() - started < 2.4
    slow.close()


@pytest.mark.parametrize(("status", "transient"), [(503, True), (502, True), (504, True), (500, False), (422, False)])
def test_rest_statuses_are_classified(standin, store, status, transient):
    standin.fail_rest(status)
    with pytest.raises(MemoryBackendError) as raised:
        store.count("kb")  # lists the collections over REST (and counts over GraphQL on a 1.28 server)
    assert isinstance(raised.value, MemoryUnavailable) is transient, raised.value
    assert store.count("kb") == 2


def test_aggregate_over_grpc_is_classified_too():
    """A server from 1.29 on answers aggregate.over_all over gRPC (older ones over GraphQL, as above)."""
    with WeaviateStandIn(version="1.30.0") as server:
        store = backend_on(server)
        store.upsert_chunks(CHUNKS)
        assert store.count("kb") == 2 and server.faults.calls.get("Aggregate") == 1
        for code in TRANSIENT:
            server.fail_grpc("Aggregate", code)
            with pytest.raises(MemoryUnavailable):
                store.count("kb")
        server.fail_grpc("Aggregate", grpc.StatusCode.INVALID_ARGUMENT)
        with pytest.raises(MemoryBackendError) as raised:
            store.count("kb")
        assert not isinstance(raised.value, MemoryUnavailable)
        store.close()


def test_an_outage_after_connecting_never_fails_a_ticket(settings, session_factory, make_ticket):
    """The pipeline on a real WeaviateBackend whose server answers every gRPC call UNAVAILABLE: recall and remember
    fail as MemoryUnavailable, are logged, and the ticket is resolved all the same."""
    from crews.pipeline import Pipeline
    from tests.helpers import RecordingFactory

    with WeaviateStandIn() as server:
        memory_settings = settings.model_copy(
            update={
                "memory_backend": "weaviate",
                "weaviate_url": server.url,
                "weaviate_grpc_port": server.grpc_port,
                "weaviate_collection_prefix": "CrewdeskOutage",
            }
        )
        pipeline = Pipeline(settings=memory_settings, session_factory=session_factory, llm_factory=RecordingFactory(memory_settings))
        pipeline.memory.remember(interaction("ana@example.com", 1, "Issue: refund"))  # collections exist: the outage comes after
        for method in ("Search", "BatchObjects", "BatchDelete", "Aggregate"):
            server.fail_grpc(method, grpc.StatusCode.UNAVAILABLE)
        ticket = make_ticket("I was charged twice, please refund.", customer="ana@example.com")
        assert pipeline.process(ticket).status == "resolved"
        assert server.faults.calls.get("Search", 0) >= 1  # the run did ask for the customer's memory
        with pytest.raises(MemoryUnavailable):
            pipeline.memory.recall(ANA, "refund", k=3)
        pipeline.memory.close()


def test_a_server_that_never_answered_is_unavailable():
    with pytest.raises(MemoryUnavailable):
        WeaviateBackend(url="http://127.0.0.1:1", grpc_port=2, embedder=HashEmbedder()).count("kb")


def test_a_server_that_refuses_the_connection_is_a_permanent_error():
    """A wrong API key (401 on /v1/meta) or a server older than the client supports will not pass on a retry."""
    with WeaviateStandIn(api_key="right-key") as server:
        wrong = WeaviateBackend(url=server.url, grpc_port=server.grpc_port, api_key="wrong-key", embedder=HashEmbedder())
        with pytest.raises(MemoryBackendError, match="401") as raised:
            wrong.count("kb")
        assert not isinstance(raised.value, MemoryUnavailable)
    with WeaviateStandIn(version="1.26.0") as server:
        with pytest.raises(MemoryBackendError, match="not supported") as raised:
            backend_on(server).count("kb")
        assert not isinstance(raised.value, MemoryUnavailable)


# erasure beyond one round of QUERY_MAXIMUM_RESULTS


def test_forget_and_purge_erase_beyond_one_round_of_query_maximum_results():
    """One delete_many removes at most the server's QUERY_MAXIMUM_RESULTS matches; a server configured low (5 here,
    10,000 by default) must still lose every row of the customer."""
    with WeaviateStandIn(query_maximum_results=5) as server:
        store = backend_on(server)
        for n in range(12):
            store.remember(interaction("ana@example.com", n, f"Issue {n}: refund question"))
        store.remember(interaction("bo@example.com", 99, "Issue: refund question"))
        assert store.forget_customer(ANA) == 12
        assert store.recall(ANA, "refund question", k=5) == []
        assert store.count("interactions") == 1
        for n in range(7):
            store.remember(interaction("cy@example.com", 100 + n, f"Old issue {n}", days_ago=400))
        assert store.purge_before(datetime.now(UTC) - timedelta(days=365)) == 7
        assert store.count("interactions") == 1
        store.close()


# two worker processes creating the same collection at once


def _remember_one(url: str, grpc_port: int, prefix: str, ticket_id: int) -> None:
    store = WeaviateBackend(url=url, grpc_port=grpc_port, prefix=prefix, embedder=HashEmbedder())
    store.remember(
        Interaction(
            id=f"race-{ticket_id}",
            customer_key="race",
            ticket_id=ticket_id,
            summary=f"Issue {ticket_id}: refund",
            outcome="resolved",
            created_at=datetime.now(UTC),
        )
    )
    store.close()


def test_two_processes_creating_the_same_collection_both_write():
    """Both workers see no collection, both create it: the server takes one create and refuses the other (422, already
    exists); the loser must use the winner's collection, not fail its write. The stand-in holds the first create until
    the second arrives, so the race happens every time."""
    with WeaviateStandIn() as server:
        server.hold_creates(2, timeout=120)
        prefix = f"CrewdeskTest{uuid.uuid4().hex[:8]}"
        context = multiprocessing.get_context("spawn")  # like two fresh worker children
        workers = [context.Process(target=_remember_one, args=(server.url, server.grpc_port, prefix, n)) for n in (1, 2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(240)
        assert [worker.exitcode for worker in workers] == [0, 0]
        assert sum(1 for method, path in server.rest_requests if method == "POST" and path == "/v1/schema") == 2
        store = backend_on(server, prefix=prefix)
        assert store.count("interactions") == 2
        store.close()


# connect asks nothing of any other host


def test_connect_calls_no_host_but_the_server(standin, monkeypatch):
    """weaviate-client's init checks ask PyPI for a newer client on every connect (up to the init timeout when the
    network is closed). Every HTTP request the client makes is recorded here; only the server may be asked."""
    asked: list[str] = []
    real_send = httpx.Client.send

    def send(self, request, *args, **kwargs):
        asked.append(f"{request.url.host}:{request.url.port}")
        if request.url.host != "127.0.0.1":
            return httpx.Response(200, json={"info": {"version": "4.0.0"}}, request=request)  # answered here: nothing leaves the machine
        return real_send(self, request, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", send)
    store = backend_on(standin)
    started = time.monotonic()
    store.count("kb")
    assert asked and set(asked) == {f"127.0.0.1:{standin.http_port}"}, asked
    assert time.monotonic() - started < 5
    store.close()
