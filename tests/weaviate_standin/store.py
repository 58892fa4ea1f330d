"""The stand-in's data: collections (schema as Weaviate returns it), objects, filters, BM25, vector and hybrid search.

Behaviour follows Weaviate's documentation and source where the backend depends on it:
- an empty string (and a missing or null value) is null: it is not stored, not returned, and `Equal("")` matches
  nothing; `IsNull` needs the collection's `indexNullState` (an error otherwise, as on a server);
- filters need `indexFilterable` properties, and text filters follow the property's tokenization (`field`: the whole
  trimmed value, `word`: every token of the value);
- offset + limit above QUERY_MAXIMUM_RESULTS is an error, and one batch delete removes at most QUERY_MAXIMUM_RESULTS
  objects ("run the same query multiple times"), reporting that round's matches;
- BM25 (k1 1.2, b 0.75, `word` tokens, the `en` stopwords dropped from the query) on the searchable properties;
- hybrid: each leg fetches max(offset + 100, offset + limit) candidates (Weaviate's hybrid.DefaultLimit), relative-score
  fusion min-max normalises each leg (the highest score 1, the lowest 0) and sums alpha * vector + (1 - alpha) * keyword.
"""

from __future__ import annotations

import copy
import math
import re
import threading
import time
import uuid as uuid_lib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

HYBRID_DEFAULT_LIMIT = 100  # hybrid.DefaultLimit: candidates per leg before fusion
BM25_K1, BM25_B = 1.2, 0.75
# Weaviate's "en" stopword preset: left out of a BM25 query
EN_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    ]
)
_PROPERTY_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,230}$")
_CLASS_NAME = re.compile(r"^[A-Z][_0-9A-Za-z]{0,254}$")
_RESERVED = {"_additional", "_id", "id"}
_DATA_TYPES = {"text", "int", "number", "boolean", "date", "uuid"}  # arrays, objects, blobs and references are not modelled


class WeaviateError(Exception):
    """An error a server would return: `status` for REST, `code` (a grpc.StatusCode name) for gRPC."""

    def __init__(self, message: str, *, status: int = 422, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


def word_tokens(text: str) -> list[str]:
    """Weaviate's `word` tokenization: alphanumeric runs, lowercased."""
    return re.findall(r"[^\W_]+", text.lower())


def parse_date(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise WeaviateError(f"invalid date {value!r}: must be RFC3339") from exc


@dataclass
class StoredObject:
    uuid: str
    properties: dict[str, Any]  # null and "" values are absent
    vectors: dict[str, list[float]]
    created: int = field(default_factory=lambda: int(time.time() * 1000))
    updated: int = field(default_factory=lambda: int(time.time() * 1000))


@dataclass
class Collection:
    config: dict[str, Any]
    objects: dict[str, StoredObject] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config["class"]

    def prop(self, name: str) -> dict[str, Any]:
        for prop in self.config.get("properties") or []:
            if prop["name"] == name:
                return prop
        raise WeaviateError(
            f"no such prop with name '{name}' found in class '{self.name}' in the schema. Check your schema files for which properties in this class are available"
        )

    def data_type(self, name: str) -> str:
        return self.prop(name)["dataType"][0]


def _hnsw_defaults(given: dict[str, Any]) -> dict[str, Any]:
    defaults = {
        "bq": {"enabled": False},
        "cleanupIntervalSeconds": 300,
        "distance": "cosine",
        "dynamicEfFactor": 8,
        "dynamicEfMax": 500,
        "dynamicEfMin": 100,
        "ef": -1,
        "efConstruction": 128,
        "filterStrategy": "sweeping",
        "flatSearchCutoff": 40000,
        "maxConnections": 32,
        "pq": {"enabled": False},
        "skip": False,
        "sq": {"enabled": False},
        "vectorCacheMaxObjects": 1000000000000,
    }
    return {**defaults, **(given or {})}


def complete_class(given: dict[str, Any]) -> dict[str, Any]:
    """Validate a class as POST /v1/schema does and fill in the defaults a server returns with it."""
    config = copy.deepcopy(given)
    name = str(config.get("class") or "")
    if name[:1].islower():
        name = name[0].upper() + name[1:]  # Weaviate capitalises class names
    if not _CLASS_NAME.match(name):
        raise WeaviateError(f"'{name}' is not a valid class name")
    config["class"] = name
    seen = set()
    for prop in config.get("properties") or []:
        pname = prop.get("name", "")
        if not _PROPERTY_NAME.match(pname) or pname in _RESERVED:
            raise WeaviateError(f"'{pname}' is not a valid property name" if pname not in _RESERVED else f"'{pname}' is a reserved property name")
        if pname.lower() in seen:
            raise WeaviateError(f"class '{name}' has a property named '{pname}' more than once")
        seen.add(pname.lower())
        data_type = (prop.get("dataType") or [""])[0]
        if data_type not in _DATA_TYPES:
            raise WeaviateError(f"property '{pname}': data type {data_type!r} is not supported by this stand-in")
        text = data_type == "text"
        prop.setdefault("indexFilterable", True)
        prop.setdefault("indexSearchable", text)
        prop.setdefault("indexRangeFilters", False)
        if text:
            prop.setdefault("tokenization", "word")
            if prop["tokenization"] not in ("word", "field", "lowercase", "whitespace"):
                raise WeaviateError(f"property '{pname}': tokenization {prop['tokenization']!r} is not supported by this stand-in")
        elif prop.get("tokenization"):
            raise WeaviateError(f"Tokenization is not allowed for data type '{data_type}'")
        elif prop["indexSearchable"]:
            raise WeaviateError(f"`indexSearchable` is not allowed for other than text/text[] data types (property '{pname}')")
    inverted = config.setdefault("invertedIndexConfig", {})
    inverted["bm25"] = {"b": BM25_B, "k1": BM25_K1, **(inverted.get("bm25") or {})}
    inverted.setdefault("cleanupIntervalSeconds", 60)
    inverted["stopwords"] = {"additions": None, "preset": "en", "removals": None, **(inverted.get("stopwords") or {})}
    if (inverted["bm25"]["b"], inverted["bm25"]["k1"]) != (BM25_B, BM25_K1) or inverted["stopwords"] != {"additions": None, "preset": "en", "removals": None}:
        raise WeaviateError("only the default BM25 parameters and the en stopwords are modelled by this stand-in")
    inverted.setdefault("indexNullState", False)
    inverted.setdefault("indexPropertyLength", False)
    inverted.setdefault("indexTimestamps", False)
    config.setdefault("multiTenancyConfig", {"autoTenantActivation": False, "autoTenantCreation": False, "enabled": False})
    config.setdefault("replicationConfig", {"asyncEnabled": False, "deletionStrategy": "NoAutomatedResolution", "factor": 1})
    config.setdefault(
        "shardingConfig",
        {
            "actualCount": 1,
            "actualVirtualCount": 128,
            "desiredCount": 1,
            "desiredVirtualCount": 128,
            "function": "murmur3",
            "key": "_id",
            "strategy": "hash",
            "virtualPerPhysical": 128,
        },
    )
    if "vectorConfig" in config:
        for vector_name, vector in config["vectorConfig"].items():
            vectorizer = vector.get("vectorizer") or {"none": {}}
            if list(vectorizer) != ["none"]:
                raise WeaviateError(f"vector {vector_name!r}: only self-provided vectors (vectorizer none) are modelled by this stand-in")
            vector["vectorizer"] = vectorizer
            vector.setdefault("vectorIndexType", "hnsw")
            if vector["vectorIndexType"] != "hnsw":
                raise WeaviateError(f"vector {vector_name!r}: only hnsw is modelled by this stand-in")
            vector["vectorIndexConfig"] = _hnsw_defaults(vector.get("vectorIndexConfig") or {})
    else:
        config.setdefault("vectorizer", "none")
        config.setdefault("vectorIndexType", "hnsw")
        config["vectorIndexConfig"] = _hnsw_defaults(config.get("vectorIndexConfig") or {})
    return config


class Store:
    """Every collection, behind one lock (a server serialises schema changes; objects are cheap enough here)."""

    def __init__(self, *, query_maximum_results: int = 10_000, query_defaults_limit: int = 25) -> None:
        self.query_maximum_results = query_maximum_results
        self.query_defaults_limit = query_defaults_limit
        self.lock = threading.RLock()
        self.collections: dict[str, Collection] = {}  # keyed by the lowercased name: names differing in case collide

    # schema
    def create(self, given: dict[str, Any]) -> dict[str, Any]:
        config = complete_class(given)
        with self.lock:
            if config["class"].lower() in self.collections:
                raise WeaviateError(f'class name "{config["class"]}" already exists')
            self.collections[config["class"].lower()] = Collection(config=config)
        return copy.deepcopy(config)

    def get(self, name: str) -> Collection:
        with self.lock:
            found = self.collections.get(name.lower())
        if found is None or found.name != (name[:1].upper() + name[1:]):
            raise WeaviateError(f"could not find class {name} in schema", status=404, code="NOT_FOUND")
        return found

    def delete(self, name: str) -> None:
        with self.lock:
            self.collections.pop(name.lower(), None)  # deleting a class that is not there is a 200 too

    def schema(self) -> dict[str, Any]:
        with self.lock:
            return {"classes": [copy.deepcopy(c.config) for c in self.collections.values()]}

    # objects
    def put(self, collection_name: str, *, object_uuid: str, properties: dict[str, Any], vectors: dict[str, list[float]]) -> None:
        collection = self.get(collection_name)
        try:
            object_uuid = str(uuid_lib.UUID(object_uuid))
        except ValueError as exc:
            raise WeaviateError(f"invalid UUID {object_uuid!r}") from exc
        stored: dict[str, Any] = {}
        for name, value in properties.items():
            data_type = collection.data_type(name)
            if value is None or value == "" or value == []:
                continue  # null: Weaviate keeps no value (an empty string or array is null)
            stored[name] = self._coerce(collection, name, data_type, value)
        named = collection.config.get("vectorConfig") or {}
        for name, vector in vectors.items():
            if name not in named:
                raise WeaviateError(f"collection {collection.name} has no vector named {name!r}")
            existing = next((len(other.vectors[name]) for other in collection.objects.values() if name in other.vectors), len(vector))
            if existing != len(vector):
                raise WeaviateError(
                    f"insert to vector index: new node has a vector with length {len(vector)}. Existing nodes have vectors with length {existing}"
                )
        with self.lock:
            previous = collection.objects.get(object_uuid)
            obj = StoredObject(uuid=object_uuid, properties=stored, vectors={k: list(v) for k, v in vectors.items()})
            if previous is not None:
                obj.created = previous.created
            collection.objects[object_uuid] = obj

    @staticmethod
    def _coerce(collection: Collection, name: str, data_type: str, value: Any) -> Any:
        wrong = WeaviateError(f"invalid {data_type} property '{name}' on class '{collection.name}': requires a {data_type}, got {type(value).__name__}")
        if data_type == "text":
            if not isinstance(value, str):
                raise wrong
            return value
        if data_type == "int":
            if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
                raise wrong
            return int(value)
        if data_type == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise wrong
            return float(value)
        if data_type == "boolean":
            if not isinstance(value, bool):
                raise wrong
            return value
        if data_type == "date":
            if not isinstance(value, str):
                raise wrong
            parse_date(value)
            return value
        if data_type == "uuid":
            return str(uuid_lib.UUID(str(value)))
        return value

    # filters
    def matcher(self, collection: Collection, where: dict[str, Any] | None):
        """A predicate over StoredObject for a filter given as {operator, on, value, filters}; errors as a server's."""
        if where is None:
            return lambda obj: True
        op = where["operator"]
        if op in ("And", "Or"):
            parts = [self.matcher(collection, sub) for sub in where["filters"]]
            if op == "And":
                return lambda obj: all(part(obj) for part in parts)
            return lambda obj: any(part(obj) for part in parts)
        if op == "Not":
            [inner] = [self.matcher(collection, sub) for sub in where["filters"]]
            return lambda obj: not inner(obj)
        name = where["on"]
        prop = collection.prop(name)
        if op == "IsNull":
            if not collection.config["invertedIndexConfig"].get("indexNullState"):
                raise WeaviateError("Nullstate must be indexed to be filterable! add `indexNullState: true` to the invertedIndexConfig")
            want_null = bool(where["value"])
            return lambda obj: (name not in obj.properties) == want_null
        if not prop.get("indexFilterable") and not prop.get("indexRangeFilters"):
            raise WeaviateError(
                f"Filtering by property '{name}' requires inverted index. Is `indexFilterable` option of property '{name}' enabled? Set it to `true` or leave empty"
            )
        data_type = prop["dataType"][0]
        value = where["value"]
        tokenization = prop.get("tokenization")

        def terms(text: str) -> list[str]:
            if tokenization == "field":
                return [text.strip()] if text.strip() else []
            if tokenization == "lowercase":
                return text.lower().split()
            if tokenization == "whitespace":
                return text.split()
            return word_tokens(text)

        def comparable(raw: Any) -> Any:
            return parse_date(raw) if data_type == "date" else raw

        if op in ("Equal", "NotEqual"):
            if data_type == "text":
                wanted = terms(value)

                def equal(obj: StoredObject) -> bool:
                    have = obj.properties.get(name)
                    return bool(wanted) and have is not None and all(t in terms(have) for t in wanted)

            else:
                target = comparable(value)

                def equal(obj: StoredObject) -> bool:
                    have = obj.properties.get(name)
                    return have is not None and comparable(have) == target

            if op == "Equal":
                return equal
            return lambda obj: name in obj.properties and not equal(obj)
        if op in ("LessThan", "LessThanEqual", "GreaterThan", "GreaterThanEqual"):
            target = comparable(value)
            compare = {
                "LessThan": lambda a, b: a < b,
                "LessThanEqual": lambda a, b: a <= b,
                "GreaterThan": lambda a, b: a > b,
                "GreaterThanEqual": lambda a, b: a >= b,
            }[op]
            return lambda obj: name in obj.properties and compare(comparable(obj.properties[name]), target)
        if op in ("ContainsAny", "ContainsAll", "ContainsNone"):
            values = list(value)
            if data_type == "text":
                wanted_sets = [terms(v) for v in values]

                def hits(obj: StoredObject) -> list[bool]:
                    have = obj.properties.get(name)
                    tokens = set(terms(have)) if have is not None else set()
                    return [bool(w) and all(t in tokens for t in w) for w in wanted_sets]

            else:

                def hits(obj: StoredObject) -> list[bool]:
                    have = obj.properties.get(name)
                    return [have is not None and comparable(have) == comparable(v) for v in values]

            if op == "ContainsAny":
                return lambda obj: any(hits(obj))
            if op == "ContainsAll":
                return lambda obj: all(hits(obj))
            return lambda obj: not any(hits(obj))
        raise WeaviateError(f"operator {op} is not modelled by this stand-in")

    # search
    def check_window(self, *, offset: int, limit: int) -> None:
        if offset + limit > self.query_maximum_results:
            raise WeaviateError(f"query maximum results exceeded: offset {offset} + limit {limit} > QUERY_MAXIMUM_RESULTS {self.query_maximum_results}")

    def bm25(self, collection: Collection, candidates: list[StoredObject], *, query: str, properties: list[str]) -> list[tuple[StoredObject, float]]:
        """BM25 over the searchable properties (their word tokens); statistics over the whole collection."""
        names = properties or [p["name"] for p in collection.config.get("properties") or [] if p.get("indexSearchable")]
        for name in names:
            prop = collection.prop(name)
            if not prop.get("indexSearchable"):
                raise WeaviateError(f"Property '{name}' is not searchable: BM25 needs `indexSearchable`")
        terms = [t for t in word_tokens(query) if t not in EN_STOPWORDS] or word_tokens(query)
        if not terms:
            return []
        everyone = list(collection.objects.values())
        scores: dict[str, float] = {}
        for name in names:
            docs = {obj.uuid: Counter(word_tokens(str(obj.properties.get(name, "")))) for obj in everyone}
            lengths = {key: sum(counts.values()) for key, counts in docs.items()}
            present = [n for n in lengths.values() if n]
            average = sum(present) / len(present) if present else 0.0
            total = len(present)
            for term in set(terms):
                having = sum(1 for counts in docs.values() if counts.get(term))
                if not having:
                    continue
                idf = math.log(1 + (total - having + 0.5) / (having + 0.5))
                for obj in candidates:
                    tf = docs[obj.uuid].get(term, 0)
                    if tf:
                        norm = tf + BM25_K1 * (1 - BM25_B + BM25_B * lengths[obj.uuid] / average)
                        scores[obj.uuid] = scores.get(obj.uuid, 0.0) + idf * tf * (BM25_K1 + 1) / norm
        by_id = {obj.uuid: obj for obj in candidates}
        return sorted(((by_id[key], score) for key, score in scores.items()), key=lambda pair: (-pair[1], pair[0].uuid))

    @staticmethod
    def cosine_distance(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        return 1.0 - (dot / norm if norm else 0.0)

    def nearest(self, candidates: list[StoredObject], *, vector: list[float], target: str) -> list[tuple[StoredObject, float]]:
        with_vectors = [obj for obj in candidates if target in obj.vectors]
        for obj in with_vectors:
            if len(obj.vectors[target]) != len(vector):
                raise WeaviateError(f"vector search: the query vector has length {len(vector)}, the index holds vectors of length {len(obj.vectors[target])}")
            break
        ranked = [(obj, self.cosine_distance(vector, obj.vectors[target])) for obj in with_vectors]
        return sorted(ranked, key=lambda pair: (pair[1], pair[0].uuid))

    def hybrid(
        self,
        collection: Collection,
        candidates: list[StoredObject],
        *,
        query: str,
        vector: list[float] | None,
        target: str,
        alpha: float,
        properties: list[str],
        offset: int,
        limit: int,
    ) -> list[tuple[StoredObject, float]]:
        depth = max(offset + HYBRID_DEFAULT_LIMIT, offset + limit)
        keyword = self.bm25(collection, candidates, query=query, properties=properties)[:depth] if alpha < 1 else []
        dense = self.nearest(candidates, vector=vector, target=target)[:depth] if vector is not None and alpha > 0 else []

        def normalised(leg: list[tuple[StoredObject, float]]) -> dict[str, float]:
            if not leg:
                return {}
            scores = [score for _, score in leg]
            low, high = min(scores), max(scores)
            return {obj.uuid: 1.0 if high == low else (score - low) / (high - low) for obj, score in leg}

        by_keyword = normalised(keyword)
        by_vector = normalised([(obj, -distance) for obj, distance in dense])  # a smaller distance is a higher score
        objects = {obj.uuid: obj for obj, _ in keyword} | {obj.uuid: obj for obj, _ in dense}
        fused = [(objects[key], alpha * by_vector.get(key, 0.0) + (1 - alpha) * by_keyword.get(key, 0.0)) for key in objects]
        fused.sort(key=lambda pair: (-pair[1], pair[0].uuid))
        return fused[offset : offset + limit]

    def delete_where(self, collection_name: str, where: dict[str, Any], *, dry_run: bool = False) -> tuple[int, int]:
        """One round of a batch delete: at most QUERY_MAXIMUM_RESULTS of the matches, in uuid order; (matches, deleted)."""
        collection = self.get(collection_name)
        match = self.matcher(collection, where)
        with self.lock:
            found = sorted((obj for obj in collection.objects.values() if match(obj)), key=lambda obj: obj.uuid)[: self.query_maximum_results]
            if not dry_run:
                for obj in found:
                    collection.objects.pop(obj.uuid, None)
        return len(found), 0 if dry_run else len(found)
