"""The embedded default backend: LanceDB files under CREWDESK_HOME/memory, in-process; writes from several worker
processes are serialised by a file lock (fcntl) and commit conflicts are retried."""

from __future__ import annotations

import fcntl
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from crewdesk.logging import get_logger
from crewdesk.memory.base import MemoryBackend, MemoryUnavailable, fuse, generation_tag
from crewdesk.memory.embeddings import Embedder
from crewdesk.memory.schemas import Interaction, KBChunk, KBFilters, KBHit, Kind, RecallFilters, RecallHit

if TYPE_CHECKING:
    import lancedb

log = get_logger(__name__)
T = TypeVar("T")

KINDS: tuple[Kind, ...] = ("kb", "interactions")
_TEXT_COLUMN = {"kb": "content", "interactions": "summary"}
_KB_FIELDS = ("id", "source", "title", "heading", "text", "product", "position")
_INTERACTION_FIELDS = ("id", "customer_key", "ticket_id", "summary", "category", "product", "outcome", "created_at")
_OPTIMIZE_EVERY = 64  # table versions between compactions: each remembered ticket is one small fragment
ANN_MIN_ROWS = 20_000  # below this an exact vector scan is fast enough (30 ms at 10k chunks) and exact


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _where(**equal: str | None) -> str | None:
    clauses = [f"{column} = {_quote(value)}" for column, value in equal.items() if value is not None]
    return " AND ".join(clauses) or None


class LanceBackend(MemoryBackend):
    kind = "lance"

    def __init__(self, *, path: Path, embedder: Embedder, alpha: float = 0.5, lock_timeout: float = 30.0) -> None:
        super().__init__(embedder=embedder, alpha=alpha)
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self._db: lancedb.DBConnection | None = None
        self._pid: int | None = None
        self._versions: dict[str, str] = {}

    # connection, lock, retries
    def _connect(self):
        if self._db is None or self._pid != os.getpid():  # a forked child opens its own: lancedb runs a tokio runtime
            import lancedb

            self.path.mkdir(parents=True, exist_ok=True)
            # read_consistency_interval=0: every read sees the latest commit, also another process's; `forget` removes
            # old versions' files, which a handle pinned to an old version could not read any more.
            self._db = lancedb.connect(str(self.path), read_consistency_interval=timedelta(0))
            self._pid = os.getpid()
        return self._db

    @contextmanager
    def _writing(self, timeout: float | None = None) -> Iterator[None]:
        """One writer at a time across processes: Lance's optimistic commits would otherwise conflict, and `forget`'s
        cleanup of old versions must not run under another writer."""
        self.path.mkdir(parents=True, exist_ok=True)
        timeout = self.lock_timeout if timeout is None else timeout
        with open(self.path / ".write.lock", "a+") as handle:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise MemoryUnavailable(f"memory backend {self.path} is busy (another process holds its write lock)") from None
                    time.sleep(0.02)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _retry(action: Callable[[], T], *, attempts: int = 5) -> T:
        """Commit conflicts (a writer outside our lock, e.g. a compaction) are retried with backoff; anything else raises."""
        for attempt in range(attempts):
            try:
                return action()
            except Exception as exc:
                if attempt + 1 == attempts or not re.search(r"conflict|retryable|concurrent", str(exc), re.I):
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _read(action: Callable[[], T]) -> T:
        """A read racing `forget`'s cleanup may find its version's files gone; the retry reads the new version."""
        try:
            return action()
        except Exception:  # noqa: BLE001 - Lance raises various errors for a vanished version; the retry reads the new one
            time.sleep(0.05)
            return action()

    # tables: one generation per embedding version, named kind__<version tag>
    def _name(self, kind: Kind) -> str:
        return f"{kind}__{generation_tag(self.embedder.version)}"

    def _names(self, kind: Kind) -> list[str]:
        return sorted(name for name in self._connect().list_tables().tables if name.startswith(f"{kind}__"))

    def _schema(self, kind: Kind, dimension: int):
        import pyarrow as pa

        vector = ("vector", pa.list_(pa.float32(), dimension))
        if kind == "kb":
            return pa.schema(
                [
                    *((f, pa.string()) for f in ("id", "source", "title", "heading", "text", "product")),
                    ("position", pa.int32()),
                    ("content", pa.string()),
                    ("embedding_version", pa.string()),
                    vector,
                ]
            )
        return pa.schema(
            [
                ("id", pa.string()),
                ("customer_key", pa.string()),
                ("ticket_id", pa.int64()),
                ("summary", pa.string()),
                ("category", pa.string()),
                ("product", pa.string()),
                ("outcome", pa.string()),
                ("created_at", pa.timestamp("us", tz="UTC")),
                ("embedding_version", pa.string()),
                vector,
            ]
        )

    def _table(self, kind: Kind, *, create: bool = False):
        db, name = self._connect(), self._name(kind)
        if name in self._names(kind):
            return db.open_table(name)
        if not create:
            return None
        table = db.create_table(name, schema=self._schema(kind, self.embedder.dimension), exist_ok=True)
        self._index_text(table, kind)
        return table

    @staticmethod
    def _prune(table) -> None:
        """Remove every older version's files. Safe only under our write lock: no other writer is mid-commit, and
        readers re-read the latest version (read_consistency_interval=0, plus one retry)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # lancedb warns that old versions go; that is the point
            table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)

    @staticmethod
    def _index_text(table, kind: Kind) -> None:
        from lancedb.index import FTS

        table.create_index(_TEXT_COLUMN[kind], config=FTS(), replace=True)

    def stored_versions(self) -> set[str]:
        db, versions = self._connect(), set()
        for kind in KINDS:
            for name in self._names(kind):
                if name not in self._versions:
                    rows = db.open_table(name).search().select(["embedding_version"]).limit(1).to_list()
                    if not rows:
                        continue  # an empty generation mixes nothing
                    self._versions[name] = rows[0]["embedding_version"]
                versions.add(self._versions[name])
        return versions

    def _rows(self, kind: Kind, records: Sequence[dict[str, Any]], texts: Sequence[str]):
        import pyarrow as pa

        vectors = self.embedder.embed_documents(list(texts))
        rows = [{**record, "embedding_version": self.embedder.version, "vector": vector} for record, vector in zip(records, vectors, strict=True)]
        return pa.Table.from_pylist(rows, schema=self._schema(kind, self.embedder.dimension))

    def _upsert(self, kind: Kind, data) -> None:
        with self._writing():
            table = self._table(kind, create=True)
            self._retry(lambda: table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data))
            if table.version % _OPTIMIZE_EVERY == 0:
                table.optimize()  # compaction and FTS index update; old versions kept (default 7 days)

    # knowledge base
    def upsert_chunks(self, chunks: Sequence[KBChunk]) -> int:
        if not chunks:
            return 0
        self.check_version()
        records = [{**chunk.model_dump(include=set(_KB_FIELDS)), "content": chunk.content} for chunk in chunks]
        self._upsert("kb", self._rows("kb", records, [chunk.content for chunk in chunks]))
        return len(chunks)

    def delete_chunks(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with self._writing():
            table = self._table("kb")
            if table is not None:
                for start in range(0, len(ids), 500):
                    batch = ", ".join(_quote(i) for i in ids[start : start + 500])
                    self._retry(lambda: table.delete(f"id IN ({batch})"))  # noqa: B023 - _retry calls it at once, inside the iteration
        return len(ids)

    def chunk_ids(self, *, source: str) -> set[str]:
        table = self._table("kb")
        if table is None:
            return set()
        where = _where(source=source)
        rows = self._read(lambda: table.search().where(where).select(["id"]).limit(table.count_rows(where) + 1).to_list())
        return {row["id"] for row in rows}

    def sources(self) -> dict[str, int]:
        table = self._table("kb")
        if table is None:
            return {}
        counts: dict[str, int] = {}
        for row in table.search().select(["source"]).limit(table.count_rows() + 1).to_list():
            counts[row["source"]] = counts.get(row["source"], 0) + 1
        return counts

    def search_kb(self, query: str, *, k: int = 5, filters: KBFilters | None = None) -> list[KBHit]:
        self.check_version()
        table = self._table("kb")
        if table is None:
            return []
        filters = filters or KBFilters()
        rows = self._hybrid(table, "kb", query=query, k=k, where=_where(source=filters.source, product=filters.product), fields=_KB_FIELDS)
        return [KBHit(chunk=KBChunk(**{f: row[f] for f in _KB_FIELDS}), score=score) for row, score in rows]

    # customers
    def remember(self, interaction: Interaction) -> None:
        self.check_version()
        record = interaction.model_dump()
        record["created_at"] = interaction.created_at.astimezone(UTC)
        self._upsert("interactions", self._rows("interactions", [record], [interaction.summary]))

    def recall(self, customer_key: str, query: str, *, k: int = 3, filters: RecallFilters | None = None) -> list[RecallHit]:
        self.check_version()
        table = self._table("interactions")
        if table is None:
            return []
        filters = filters or RecallFilters()
        where = _where(customer_key=customer_key, outcome=filters.outcome, product=filters.product, category=filters.category)
        rows = self._hybrid(table, "interactions", query=query, k=k, where=where, fields=_INTERACTION_FIELDS)
        return [RecallHit(interaction=Interaction(**{f: row[f] for f in _INTERACTION_FIELDS}), score=score) for row, score in rows]

    def forget_customer(self, customer_key: str) -> int:
        return self._erase(f"customer_key = {_quote(customer_key)}")

    def purge_before(self, cutoff: datetime) -> int:
        if cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=UTC)
        return self._erase(f"created_at < CAST({_quote(cutoff.astimezone(UTC).isoformat())} AS TIMESTAMP)")

    def _erase(self, where: str) -> int:
        """Delete for real. A Lance delete only marks rows in a deletion file, and compaction leaves a fragment with few
        deletions as it is, so the text would stay on disk: rewrite each affected table without the rows, rebuild its
        keyword index (which holds the words), then remove every older version's files."""
        erased = 0
        with self._writing(timeout=600):
            db = self._connect()
            for name in self._names("interactions"):
                table = db.open_table(name)
                hits = table.count_rows(where)
                if not hits:
                    continue
                schema = table.schema
                keep = table.search().where(f"NOT ({where})").select(list(schema.names)).limit(table.count_rows() + 1).to_arrow()
                table = db.create_table(name, data=keep.cast(schema), schema=schema, mode="overwrite")
                self._index_text(table, "interactions")
                self._prune(table)
                erased += hits
        log.info("memory.erased", backend=self.kind, rows=erased)
        return erased

    # housekeeping
    def count(self, kind: Kind) -> int:
        db = self._connect()
        return sum(db.open_table(name).count_rows() for name in self._names(kind))

    def reindex(self) -> int:
        """Re-embed rows of other generations into the current one (merge on id, so a crash mid-way can simply be
        re-run), then drop the old tables and their files."""
        moved = 0
        with self._writing(timeout=600):
            db = self._connect()
            for kind in KINDS:
                current = self._name(kind)
                fields = list(_KB_FIELDS) if kind == "kb" else list(_INTERACTION_FIELDS)
                for name in [n for n in self._names(kind) if n != current]:
                    old = db.open_table(name)
                    rows = old.search().select(fields).limit(old.count_rows() + 1).to_list()
                    target = self._table(kind, create=True)
                    for start in range(0, len(rows), 256):
                        batch = rows[start : start + 256]
                        if kind == "kb":
                            records = [{**row, "content": KBChunk(**row).content} for row in batch]
                            texts = [r["content"] for r in records]
                        else:
                            records, texts = batch, [row["summary"] for row in batch]
                        data = self._rows(kind, records, texts)
                        self._retry(lambda: target.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data))  # noqa: B023 - _retry calls it at once, inside the iteration
                    db.drop_table(name)
                    self._versions.pop(name, None)
                    moved += len(rows)
                    log.info("memory.reindexed", kind=kind, rows=len(rows), old=name, new=current)
                table = self._table(kind)
                if table is not None and moved:
                    self._index_text(table, kind)
                    self._prune(table)
        return moved

    def optimize(self) -> None:
        """Compact fragments and bring indices up to date (the CLI runs it after `kb add`). A large knowledge base also
        gets an ANN vector index: at 100k chunks it takes hybrid queries from ~100 ms (exact scan) to ~20 ms."""
        from lancedb.index import HnswSq

        with self._writing(timeout=1800):
            for kind in KINDS:
                table = self._table(kind)
                if table is None:
                    continue
                table.optimize()
                if kind == "kb" and table.count_rows() >= ANN_MIN_ROWS and not any(i.columns == ["vector"] for i in table.list_indices()):
                    table.create_index("vector", config=HnswSq(distance_type="cosine"))

    # hybrid search
    def _hybrid(self, table, kind: Kind, *, query: str, k: int, where: str | None, fields: Sequence[str]) -> list[tuple[dict, float]]:
        depth = max(4 * k, 20)
        vector = self.embedder.embed_query(query)

        def vector_leg():
            search = table.search(vector, vector_column_name="vector").distance_type("cosine")
            if where:
                search = search.where(where, prefilter=True)
            return search.select([*fields, "_distance"]).limit(depth).to_list()

        def keyword_leg():
            if not re.search(r"\w", query):
                return []
            search = table.search(query, query_type="fts", fts_columns=_TEXT_COLUMN[kind])
            if where:
                search = search.where(where, prefilter=True)
            return search.select([*fields, "_score"]).limit(depth).to_list()

        by_vector, by_keyword = self._read(vector_leg), self._read(keyword_leg)
        rows = {row["id"]: row for row in by_keyword} | {row["id"]: row for row in by_vector}
        ranked = fuse(
            vector=[(r["id"], 1.0 - float(r["_distance"])) for r in by_vector],
            keyword=[(r["id"], float(r["_score"])) for r in by_keyword],
            alpha=self.alpha,
            k=k,
        )
        return [(rows[key], score) for key, score in ranked]
