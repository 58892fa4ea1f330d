"""The production backend: Weaviate through weaviate-client v4 (self-provided vectors, BM25 + vector hybrid search,
uuid5 ids for idempotent upserts); its contract runs against tests/weaviate_standin in CI and a server when WEAVIATE_URL
is set."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from crewdesk.logging import get_logger
from crewdesk.memory.base import MemoryBackend, MemoryBackendError, MemoryUnavailable, generation_tag
from crewdesk.memory.embeddings import Embedder
from crewdesk.memory.schemas import Interaction, KBChunk, KBFilters, KBHit, Kind, RecallFilters, RecallHit

if TYPE_CHECKING:
    import weaviate

log = get_logger(__name__)
T = TypeVar("T")

VECTOR = "default"
_COLLECTION = {"kb": "Kb", "interactions": "Interaction"}
_TEXT = {"kb": "content", "interactions": "summary"}
_KB_FIELDS = ("chunk_id", "source", "title", "heading", "text", "product", "position")
_INTERACTION_FIELDS = ("interaction_id", "customer_key", "ticket_id", "summary", "category", "product", "outcome", "created_at")
# Weaviate keeps "" as null, so a text field can come back missing: it reads as "", these non-text fields as their own
_NOT_TEXT = {"position": 0, "ticket_id": 0, "created_at": None}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())  # the client's messages span lines; the CLI reports errors on one


def _uuid(key: str) -> str:
    from weaviate.util import generate_uuid5

    return str(generate_uuid5(key, "crewdesk"))


def properties(kind: Kind) -> list:
    """Collection schema. Filterable ids and tags use FIELD tokenization (exact match) and stay out of BM25."""
    from weaviate.classes.config import DataType, Property, Tokenization

    def tag(name: str, data_type=DataType.TEXT) -> Property:
        if data_type is DataType.TEXT:
            return Property(name=name, data_type=data_type, tokenization=Tokenization.FIELD, index_searchable=False, index_filterable=True)
        return Property(name=name, data_type=data_type, index_filterable=True)

    def searchable(name: str) -> Property:
        return Property(name=name, data_type=DataType.TEXT, tokenization=Tokenization.WORD, index_searchable=True)

    def stored(name: str) -> Property:
        return Property(name=name, data_type=DataType.TEXT, index_searchable=False, index_filterable=False)

    if kind == "kb":
        return [
            tag("chunk_id"),
            tag("source"),
            stored("title"),
            stored("heading"),
            stored("text"),
            tag("product"),
            tag("position", DataType.INT),
            searchable("content"),
            tag("embedding_version"),
        ]
    return [
        tag("interaction_id"),
        tag("customer_key"),
        tag("ticket_id", DataType.INT),
        searchable("summary"),
        tag("category"),
        tag("product"),
        tag("outcome"),
        tag("created_at", DataType.DATE),
        tag("embedding_version"),
    ]


def vector_config():
    from weaviate.classes.config import Configure, VectorDistances

    return Configure.Vectors.self_provided(name=VECTOR, vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE))


def inverted_index_config():
    """indexNullState: Weaviate stores "" as null, so an empty tag is found with IsNull, which needs this index."""
    from weaviate.classes.config import Configure

    return Configure.inverted_index(index_null_state=True)


def filters_for(**equal: str | None):
    """AND of exact matches; None when nothing is asked (Weaviate takes filters=None as no filter). An empty value is
    matched as null: Weaviate keeps "" as null, so equal("") would match nothing."""
    from weaviate.classes.query import Filter

    parts = [
        Filter.by_property(name).is_none(True) if value == "" else Filter.by_property(name).equal(value) for name, value in equal.items() if value is not None
    ]
    combined = None
    for part in parts:
        combined = part if combined is None else combined & part
    return combined


def read_properties(properties: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """A stored object's fields as written: a text field Weaviate returned without a value was "" (kept as null)."""
    return {f: properties[f] if properties.get(f) is not None else _NOT_TEXT.get(f, "") for f in fields}


_TRANSIENT_GRPC = ("UNAVAILABLE", "DEADLINE_EXCEEDED")
_TRANSIENT_HTTP = (502, 503, 504)


def is_transient(exc: BaseException) -> bool:
    """Whether a weaviate-client error means the server is away or slow (retry later) rather than that it refused the
    request. The client wraps gRPC errors in its own (WeaviateQueryError, WeaviateBatchError, WeaviateDeleteManyError,
    WeaviateRetryError after its own retries of UNAVAILABLE), keeping the grpc.RpcError in the exception chain."""
    from weaviate.exceptions import UnexpectedStatusCodeError, WeaviateConnectionError, WeaviateGRPCUnavailableError, WeaviateRetryError, WeaviateTimeoutError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, WeaviateConnectionError | WeaviateGRPCUnavailableError | WeaviateTimeoutError | WeaviateRetryError):
            return True
        if isinstance(current, UnexpectedStatusCodeError) and current.status_code in _TRANSIENT_HTTP:
            return True
        code = getattr(current, "code", None)
        if callable(code) and type(current).__module__.startswith("grpc"):
            try:
                name = getattr(code(), "name", "")
            except Exception:  # noqa: BLE001 - an RpcError that is not a Call has no code
                name = ""
            if name in _TRANSIENT_GRPC:
                return True
        current = current.__cause__ or current.__context__
    return False


class WeaviateBackend(MemoryBackend):
    kind = "weaviate"

    def __init__(
        self, *, url: str, embedder: Embedder, api_key: str = "", grpc_port: int = 50051, prefix: str = "Crewdesk", alpha: float = 0.5, timeout: float = 30.0
    ) -> None:
        super().__init__(embedder=embedder, alpha=alpha)
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", prefix):
            raise MemoryBackendError(f"weaviate collection prefix {prefix!r} must start with a capital letter and hold only letters and digits")
        self.url, self.api_key, self.grpc_port, self.prefix, self.timeout = url, api_key, grpc_port, prefix, timeout
        self._client: weaviate.WeaviateClient | None = None
        self._pid: int | None = None
        self._versions: dict[str, str] = {}

    # connection
    def _connect(self):
        if self._client is not None and self._pid == os.getpid():
            return self._client
        import weaviate
        from weaviate.classes.init import AdditionalConfig, Auth, Timeout

        parsed = urlparse(self.url if "://" in self.url else f"http://{self.url}")
        secure = parsed.scheme == "https"
        try:
            self._client = weaviate.connect_to_custom(
                http_host=parsed.hostname or "localhost",
                http_port=parsed.port or (443 if secure else 8080),
                http_secure=secure,
                grpc_host=parsed.hostname or "localhost",
                grpc_port=self.grpc_port,
                grpc_secure=secure,
                auth_credentials=Auth.api_key(self.api_key) if self.api_key else None,
                additional_config=AdditionalConfig(timeout=Timeout(init=10, query=self.timeout, insert=max(60, self.timeout))),
                # no PyPI version check (up to the init timeout on a closed network), no OIDC discovery, no gRPC ping:
                # the first real call says whether the server is there, and an outage then is MemoryUnavailable
                skip_init_checks=True,
            )
        except Exception as exc:
            from weaviate.exceptions import WeaviateBaseError

            if isinstance(exc, WeaviateBaseError) and not is_transient(exc):  # it answered: a wrong API key, a too old server
                raise MemoryBackendError(f"Weaviate at {self.url} refused the connection: {_one_line(exc)}") from exc
            raise MemoryUnavailable(f"cannot reach Weaviate at {self.url}: {_one_line(exc)}") from exc
        self._pid = os.getpid()
        return self._client

    def close(self) -> None:
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None

    def _call(self, action: Callable[[], T]) -> T:
        """Weaviate errors become ours by what they mean: the server away or too slow (a connection error, gRPC
        UNAVAILABLE or DEADLINE_EXCEEDED at any step, HTTP 502/503/504) -> MemoryUnavailable, retried later; a
        request the server refused -> MemoryBackendError."""
        from weaviate.exceptions import WeaviateBaseError

        try:
            return action()
        except WeaviateBaseError as exc:
            raise self._ours(exc) from exc

    def _ours(self, exc: BaseException) -> MemoryBackendError:
        if is_transient(exc):
            return MemoryUnavailable(f"Weaviate at {self.url}: {_one_line(exc)}")
        return MemoryBackendError(f"Weaviate at {self.url}: {_one_line(exc)}")

    # collections: one generation per embedding version, <prefix><Kind>_<version tag>
    def _name(self, kind: Kind) -> str:
        return f"{self.prefix}{_COLLECTION[kind]}_{generation_tag(self.embedder.version)}"

    def _names(self, kind: Kind) -> list[str]:
        start = f"{self.prefix}{_COLLECTION[kind]}_".lower()
        return sorted(name for name in self._call(lambda: self._connect().collections.list_all(simple=True)) if name.lower().startswith(start))

    def _collection(self, kind: Kind, *, create: bool = False):
        client, name = self._connect(), self._name(kind)
        if self._call(lambda: client.collections.exists(name)):
            return client.collections.use(name)
        if not create:
            return None
        try:
            return self._call(
                lambda: client.collections.create(
                    name, properties=properties(kind), vector_config=vector_config(), inverted_index_config=inverted_index_config()
                )
            )
        except MemoryUnavailable:
            raise
        except MemoryBackendError:
            if self._call(lambda: client.collections.exists(name)):  # another worker created it since we looked (422)
                return client.collections.use(name)
            raise

    def stored_versions(self) -> set[str]:
        client, versions = self._connect(), set()
        for kind in ("kb", "interactions"):
            for name in self._names(kind):
                if name not in self._versions:
                    found = self._call(lambda: client.collections.use(name).query.fetch_objects(limit=1, return_properties=["embedding_version"])).objects  # noqa: B023 - _call calls it at once, inside the iteration
                    if not found:
                        continue
                    self._versions[name] = found[0].properties["embedding_version"]
                versions.add(self._versions[name])
        return versions

    def _insert(self, collection, rows: Sequence[tuple[str, dict[str, Any], str]]) -> None:
        """rows: (our id, properties, text to embed)."""
        from weaviate.classes.data import DataObject

        vectors = self.embedder.embed_documents([text for _, _, text in rows])
        objects = [
            DataObject(properties={**props, "embedding_version": self.embedder.version}, uuid=_uuid(key), vector={VECTOR: vector})
            for (key, props, _), vector in zip(rows, vectors, strict=True)
        ]
        for start in range(0, len(objects), 200):
            result = self._call(lambda: collection.data.insert_many(objects[start : start + 200]))  # noqa: B023 - _call calls it at once, inside the iteration
            if result.has_errors:
                first = next(iter(result.errors.values()))
                raise MemoryBackendError(f"Weaviate refused {len(result.errors)} object(s): {first.message}")

    def _delete(self, collection, where) -> int:
        """One delete_many removes at most the server's QUERY_MAXIMUM_RESULTS matches (10,000 by default, set per
        server), so it is repeated until a round matches nothing."""
        deleted = 0
        while True:
            result = self._call(lambda: collection.data.delete_many(where=where))
            deleted += result.successful
            if result.failed:
                raise MemoryBackendError(f"Weaviate failed to delete {result.failed} object(s)")
            if result.matches == 0 or result.successful == 0:
                return deleted

    def _hybrid(self, collection, kind: Kind, *, query: str, k: int, where, fields: Sequence[str]) -> list[tuple[dict[str, Any], float]]:
        from weaviate.classes.query import HybridFusion, MetadataQuery

        vector = self.embedder.embed_query(query)
        response = self._call(
            lambda: collection.query.hybrid(
                query=query,
                vector=vector,
                alpha=self.alpha,
                limit=k,
                filters=where,
                fusion_type=HybridFusion.RELATIVE_SCORE,
                query_properties=[_TEXT[kind]],
                target_vector=VECTOR,
                return_properties=list(fields),
                return_metadata=MetadataQuery(score=True),
            )
        )
        return [(read_properties(obj.properties, fields), float(obj.metadata.score or 0.0)) for obj in response.objects]

    # knowledge base
    def upsert_chunks(self, chunks: Sequence[KBChunk]) -> int:
        if not chunks:
            return 0
        self.check_version()
        collection = self._collection("kb", create=True)
        rows = [
            (
                chunk.id,
                {"chunk_id": chunk.id, **chunk.model_dump(include={"source", "title", "heading", "text", "product", "position"}), "content": chunk.content},
                chunk.content,
            )
            for chunk in chunks
        ]
        self._insert(collection, rows)
        return len(chunks)

    def delete_chunks(self, ids: Sequence[str]) -> int:
        from weaviate.classes.query import Filter

        collection = self._collection("kb")
        if collection is None or not ids:
            return 0
        for start in range(0, len(ids), 1000):
            self._delete(collection, Filter.by_property("chunk_id").contains_any(list(ids[start : start + 1000])))
        return len(ids)

    def chunk_ids(self, *, source: str) -> set[str]:
        collection = self._collection("kb")
        if collection is None:
            return set()
        ids: set[str] = set()
        offset, page = 0, 1000
        while True:  # offset paging: a source beyond QUERY_MAXIMUM_RESULTS (10,000 chunks) is not supported
            found = self._call(
                lambda: collection.query.fetch_objects(
                    filters=filters_for(source=source),
                    limit=page,
                    offset=offset,  # noqa: B023 - _call calls it at once, inside the iteration
                    return_properties=["chunk_id"],
                )
            ).objects
            ids.update(obj.properties["chunk_id"] for obj in found)
            if len(found) < page:
                return ids
            offset += page

    def search_kb(self, query: str, *, k: int = 5, filters: KBFilters | None = None) -> list[KBHit]:
        self.check_version()
        collection = self._collection("kb")
        if collection is None:
            return []
        filters = filters or KBFilters()
        rows = self._hybrid(collection, "kb", query=query, k=k, where=filters_for(source=filters.source, product=filters.product), fields=_KB_FIELDS)
        return [KBHit(chunk=KBChunk(id=props["chunk_id"], **{f: props[f] for f in _KB_FIELDS[1:]}), score=score) for props, score in rows]

    # customers
    def remember(self, interaction: Interaction) -> None:
        self.check_version()
        collection = self._collection("interactions", create=True)
        props = interaction.model_dump(exclude={"id"})
        props.update(interaction_id=interaction.id, created_at=interaction.created_at.astimezone(UTC))
        self._insert(collection, [(interaction.id, props, interaction.summary)])

    def recall(self, customer_key: str, query: str, *, k: int = 3, filters: RecallFilters | None = None) -> list[RecallHit]:
        self.check_version()
        collection = self._collection("interactions")
        if collection is None:
            return []
        filters = filters or RecallFilters()
        where = filters_for(customer_key=customer_key, outcome=filters.outcome, product=filters.product, category=filters.category)
        rows = self._hybrid(collection, "interactions", query=query, k=k, where=where, fields=_INTERACTION_FIELDS)
        return [
            RecallHit(interaction=Interaction(id=props["interaction_id"], **{f: props[f] for f in _INTERACTION_FIELDS[1:]}), score=score)
            for props, score in rows
        ]

    def forget_customer(self, customer_key: str) -> int:
        """Deletes in every generation. Weaviate drops deleted objects from its segments when it compacts them (LSM),
        not at once; the objects are unreachable by any query from this call on."""
        return self._erase(filters_for(customer_key=customer_key))

    def purge_before(self, cutoff: datetime) -> int:
        from weaviate.classes.query import Filter

        if cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=UTC)
        return self._erase(Filter.by_property("created_at").less_than(cutoff))

    def _erase(self, where) -> int:
        client = self._connect()
        erased = sum(self._delete(client.collections.use(name), where) for name in self._names("interactions"))
        log.info("memory.erased", backend=self.kind, rows=erased)
        return erased

    # housekeeping
    def count(self, kind: Kind) -> int:
        client = self._connect()
        return sum(self._call(lambda: client.collections.use(name).aggregate.over_all(total_count=True)).total_count or 0 for name in self._names(kind))  # noqa: B023 - _call calls it at once, inside the generator's step

    def reindex(self) -> int:
        """Copy each old generation into the current one with fresh vectors (same UUIDs, so a re-run after a crash
        overwrites), then drop the old collection."""
        from weaviate.exceptions import WeaviateBaseError

        client, moved = self._connect(), 0
        for kind in ("kb", "interactions"):
            current = self._name(kind)
            id_field, fields = ("chunk_id", _KB_FIELDS) if kind == "kb" else ("interaction_id", _INTERACTION_FIELDS)
            for name in [n for n in self._names(kind) if n.lower() != current.lower()]:
                target = self._collection(kind, create=True)
                old = client.collections.use(name)
                batch: list[tuple[str, dict[str, Any], str]] = []
                try:
                    for obj in old.iterator(return_properties=[*fields, _TEXT[kind]]):  # fetches pages as it goes
                        props = read_properties(obj.properties, (*fields, _TEXT[kind]))
                        batch.append((props[id_field], props, props[_TEXT[kind]]))
                        if len(batch) == 256:
                            self._insert(target, batch)
                            moved += len(batch)
                            batch = []
                except WeaviateBaseError as exc:
                    raise self._ours(exc) from exc
                if batch:
                    self._insert(target, batch)
                    moved += len(batch)
                self._call(lambda: client.collections.delete(name))  # noqa: B023 - _call calls it at once, inside the iteration
                self._versions.pop(name, None)
                log.info("memory.reindexed", kind=kind, old=name, new=current)
        return moved
