"""The stand-in's gRPC half: weaviate.v1.Weaviate (Search, BatchObjects, BatchDelete, Aggregate) and the health check,
served by grpcio with the servicer class generated from the protobuf definitions weaviate-client ships."""

from __future__ import annotations

import struct
import threading
import time
import uuid as uuid_lib
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from weaviate.proto.v1 import (
    aggregate_pb2,
    base_pb2,
    base_search_pb2,
    batch_delete_pb2,
    batch_pb2,
    health_weaviate_pb2,
    properties_pb2,
    search_get_pb2,
    weaviate_pb2_grpc,
)

from tests.weaviate_standin.store import Collection, Store, StoredObject, WeaviateError

_OPERATORS = {
    base_pb2.Filters.OPERATOR_EQUAL: "Equal",
    base_pb2.Filters.OPERATOR_NOT_EQUAL: "NotEqual",
    base_pb2.Filters.OPERATOR_GREATER_THAN: "GreaterThan",
    base_pb2.Filters.OPERATOR_GREATER_THAN_EQUAL: "GreaterThanEqual",
    base_pb2.Filters.OPERATOR_LESS_THAN: "LessThan",
    base_pb2.Filters.OPERATOR_LESS_THAN_EQUAL: "LessThanEqual",
    base_pb2.Filters.OPERATOR_AND: "And",
    base_pb2.Filters.OPERATOR_OR: "Or",
    base_pb2.Filters.OPERATOR_NOT: "Not",
    base_pb2.Filters.OPERATOR_IS_NULL: "IsNull",
    base_pb2.Filters.OPERATOR_CONTAINS_ANY: "ContainsAny",
    base_pb2.Filters.OPERATOR_CONTAINS_ALL: "ContainsAll",
    base_pb2.Filters.OPERATOR_CONTAINS_NONE: "ContainsNone",
}


@dataclass
class Fault:
    """What the next calls of one gRPC method get: a status code (aborted at once) or a delay before answering."""

    code: grpc.StatusCode | None = None
    delay: float = 0.0
    times: int | None = None  # None: every call until cleared


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_method: dict[str, Fault] = {}
        self.calls: dict[str, int] = {}

    def set(self, method: str, fault: Fault) -> None:
        with self._lock:
            self._by_method[method] = fault

    def clear(self) -> None:
        with self._lock:
            self._by_method.clear()

    def take(self, method: str) -> Fault | None:
        with self._lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            fault = self._by_method.get(method)
            if fault is None:
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self._by_method[method]
            return fault


def decode_vector(raw: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def filter_from_grpc(message: base_pb2.Filters) -> dict[str, Any]:
    operator = _OPERATORS.get(message.operator)
    if operator is None:
        raise WeaviateError(f"filter operator {base_pb2.Filters.Operator.Name(message.operator)} is not modelled by this stand-in")
    if operator in ("And", "Or", "Not"):
        return {"operator": operator, "filters": [filter_from_grpc(sub) for sub in message.filters]}
    if message.HasField("target"):
        if not message.target.property:
            raise WeaviateError("filters on references are not modelled by this stand-in")
        on = message.target.property
    else:
        on = message.on[0]
    kind = message.WhichOneof("test_value")
    value: Any = getattr(message, kind) if kind else None
    if kind in ("value_text_array", "value_int_array", "value_boolean_array", "value_number_array"):
        value = list(value.values)
    return {"operator": operator, "on": on, "value": value}


_VALUE_FIELDS = {"text": "text_value", "int": "int_value", "number": "number_value", "boolean": "bool_value", "date": "date_value", "uuid": "uuid_value"}


def _value(data_type: str, raw: Any) -> properties_pb2.Value:
    if data_type in _VALUE_FIELDS:
        return properties_pb2.Value(**{_VALUE_FIELDS[data_type]: raw})
    raise WeaviateError(f"returning {data_type} properties is not modelled by this stand-in")


class WeaviateService(weaviate_pb2_grpc.WeaviateServicer):
    def __init__(self, store: Store, faults: Faults) -> None:
        self.store, self.faults = store, faults

    def _guard(self, method: str, context: grpc.ServicerContext) -> None:
        fault = self.faults.take(method)
        if fault is None:
            return
        if fault.delay:
            time.sleep(fault.delay)
        if fault.code is not None:
            context.abort(fault.code, f"injected by the stand-in: {fault.code.name}")

    @staticmethod
    def _fail(context: grpc.ServicerContext, error: WeaviateError) -> None:
        context.abort(getattr(grpc.StatusCode, error.code, grpc.StatusCode.UNKNOWN), error.message)

    # Search: fetch (filters, offset, limit), cursor (after), hybrid, near vector, BM25
    def Search(self, request: search_get_pb2.SearchRequest, context: grpc.ServicerContext) -> search_get_pb2.SearchReply:
        self._guard("Search", context)
        started = time.perf_counter()
        try:
            results = self._search(request)
        except WeaviateError as error:
            self._fail(context, error)
        return search_get_pb2.SearchReply(took=time.perf_counter() - started, results=results)

    def _search(self, request: search_get_pb2.SearchRequest) -> list[search_get_pb2.SearchResult]:
        collection = self.store.get(request.collection)
        if request.tenant:
            raise WeaviateError("multi-tenancy is not modelled by this stand-in")
        limit = request.limit or self.store.query_defaults_limit
        offset = request.offset
        self.store.check_window(offset=offset, limit=limit)
        where = filter_from_grpc(request.filters) if request.HasField("filters") else None
        match = self.store.matcher(collection, where)
        with self.store.lock:
            everyone = list(collection.objects.values())
        candidates = [obj for obj in everyone if match(obj)]
        scores: dict[str, float] = {}
        distances: dict[str, float] = {}
        if request.after:
            if where is not None or offset or request.HasField("hybrid_search") or request.HasField("near_vector") or request.HasField("bm25_search"):
                raise WeaviateError("cursor api: invalid 'after' parameter: other params cannot be set along with after: offset,sort,where,search")
            ranked = sorted((obj for obj in candidates if obj.uuid > str(uuid_lib.UUID(request.after))), key=lambda obj: obj.uuid)[:limit]
        elif request.HasField("hybrid_search"):
            hybrid = request.hybrid_search
            alpha = hybrid.alpha_param if hybrid.use_alpha_param else hybrid.alpha
            if hybrid.fusion_type not in (base_search_pb2.Hybrid.FUSION_TYPE_RELATIVE_SCORE, base_search_pb2.Hybrid.FUSION_TYPE_UNSPECIFIED):
                raise WeaviateError("only relative-score fusion is modelled by this stand-in")
            target, vector = self._query_vector(collection, hybrid)
            pairs = self.store.hybrid(
                collection,
                candidates,
                query=hybrid.query,
                vector=vector,
                target=target,
                alpha=alpha,
                properties=list(hybrid.properties),
                offset=offset,
                limit=limit,
            )
            ranked = [obj for obj, _ in pairs]
            scores = {obj.uuid: score for obj, score in pairs}
        elif request.HasField("bm25_search"):
            pairs = self.store.bm25(collection, candidates, query=request.bm25_search.query, properties=list(request.bm25_search.properties))[
                offset : offset + limit
            ]
            ranked = [obj for obj, _ in pairs]
            scores = {obj.uuid: score for obj, score in pairs}
        elif request.HasField("near_vector"):
            target, vector = self._query_vector(collection, request.near_vector)
            assert vector is not None
            pairs = self.store.nearest(candidates, vector=vector, target=target)[offset : offset + limit]
            ranked = [obj for obj, _ in pairs]
            distances = {obj.uuid: distance for obj, distance in pairs}
        else:
            ranked = sorted(candidates, key=lambda obj: obj.uuid)[offset : offset + limit]
        return [self._result(collection, obj, request, scores.get(obj.uuid), distances.get(obj.uuid)) for obj in ranked]

    @staticmethod
    def _query_vector(collection: Collection, search: Any) -> tuple[str, list[float] | None]:
        named = list((collection.config.get("vectorConfig") or {}).keys())
        targets = list(search.targets.target_vectors) if search.HasField("targets") else list(search.target_vectors)
        if len(targets) > 1:
            raise WeaviateError("multi-target vector search is not modelled by this stand-in")
        target = targets[0] if targets else (named[0] if len(named) == 1 else "default")
        if named and target not in named:
            raise WeaviateError(f"collection {collection.name} has no vector named {target!r}")
        raw = b""
        if search.vector_bytes:
            raw = search.vector_bytes
        elif len(search.vectors):
            raw = search.vectors[0].vector_bytes
        elif getattr(search, "near_vector", None) is not None and search.HasField("near_vector"):
            near = search.near_vector
            if near.vector_bytes:
                raw = near.vector_bytes
            elif len(near.vector_for_targets):
                for_target = near.vector_for_targets[0]
                raw = for_target.vector_bytes or for_target.vectors[0].vector_bytes
            elif len(near.vectors):
                raw = near.vectors[0].vector_bytes
        elif len(getattr(search, "vector_for_targets", [])):
            for_target = search.vector_for_targets[0]
            raw = for_target.vector_bytes or for_target.vectors[0].vector_bytes
        return target, decode_vector(raw) if raw else None

    def _result(
        self, collection: Collection, obj: StoredObject, request: search_get_pb2.SearchRequest, score: float | None, distance: float | None
    ) -> search_get_pb2.SearchResult:
        wanted = request.properties
        # no PropertiesRequest, or all asked: every property, as the client expects from 1.25 on
        asked_some = request.HasField("properties") and not wanted.return_all_nonref_properties
        names = list(wanted.non_ref_properties) if asked_some else list(obj.properties)
        for name in names:
            collection.prop(name)  # an unknown property is an error, a null one is left out
        fields = {name: _value(collection.data_type(name), obj.properties[name]) for name in names if name in obj.properties}
        meta = search_get_pb2.MetadataResult(id=obj.uuid, id_as_bytes=uuid_lib.UUID(obj.uuid).bytes)
        asked = request.metadata
        if asked.score and score is not None:
            meta.score, meta.score_present = score, True
        if asked.distance and distance is not None:
            meta.distance, meta.distance_present = distance, True
        if asked.creation_time_unix:
            meta.creation_time_unix, meta.creation_time_unix_present = obj.created, True
        if asked.last_update_time_unix:
            meta.last_update_time_unix, meta.last_update_time_unix_present = obj.updated, True
        if asked.vector or len(asked.vectors):
            for name in list(asked.vectors) or list(obj.vectors):
                if name in obj.vectors:
                    meta.vectors.append(base_pb2.Vectors(name=name, vector_bytes=struct.pack(f"<{len(obj.vectors[name])}f", *obj.vectors[name])))
        return search_get_pb2.SearchResult(
            properties=search_get_pb2.PropertiesResult(target_collection=collection.name, non_ref_props=properties_pb2.Properties(fields=fields)),
            metadata=meta,
        )

    # writes
    def BatchObjects(self, request: batch_pb2.BatchObjectsRequest, context: grpc.ServicerContext) -> batch_pb2.BatchObjectsReply:
        self._guard("BatchObjects", context)
        started = time.perf_counter()
        errors = []
        for index, obj in enumerate(request.objects):
            try:
                if obj.tenant:
                    raise WeaviateError("multi-tenancy is not modelled by this stand-in")
                properties = json_format.MessageToDict(obj.properties.non_ref_properties) if obj.HasField("properties") else {}
                extra = (
                    obj.properties.text_array_properties
                    or obj.properties.int_array_properties
                    or obj.properties.number_array_properties
                    or obj.properties.object_properties
                    or obj.properties.single_target_ref_props
                )
                if extra:
                    raise WeaviateError("array, object and reference properties are not modelled by this stand-in")
                vectors = {vector.name or "default": decode_vector(vector.vector_bytes) for vector in obj.vectors}
                if obj.vector_bytes:
                    vectors["default"] = decode_vector(obj.vector_bytes)
                self.store.put(obj.collection, object_uuid=obj.uuid, properties=properties, vectors=vectors)
            except WeaviateError as error:
                errors.append(batch_pb2.BatchObjectsReply.BatchError(index=index, error=error.message))
        return batch_pb2.BatchObjectsReply(took=time.perf_counter() - started, errors=errors)

    def BatchDelete(self, request: batch_delete_pb2.BatchDeleteRequest, context: grpc.ServicerContext) -> batch_delete_pb2.BatchDeleteReply:
        self._guard("BatchDelete", context)
        started = time.perf_counter()
        try:
            if request.tenant:
                raise WeaviateError("multi-tenancy is not modelled by this stand-in")
            matches, deleted = self.store.delete_where(request.collection, filter_from_grpc(request.filters), dry_run=request.dry_run)
        except WeaviateError as error:
            self._fail(context, error)
        return batch_delete_pb2.BatchDeleteReply(took=time.perf_counter() - started, failed=0, matches=matches, successful=deleted)

    def Aggregate(self, request: aggregate_pb2.AggregateRequest, context: grpc.ServicerContext) -> aggregate_pb2.AggregateReply:
        self._guard("Aggregate", context)
        started = time.perf_counter()
        try:
            collection = self.store.get(request.collection)
            if len(request.aggregations) or request.HasField("group_by") or request.HasField("hybrid") or request.HasField("near_vector"):
                raise WeaviateError("only objects_count with filters is modelled by this stand-in's Aggregate")
            match = self.store.matcher(collection, filter_from_grpc(request.filters) if request.HasField("filters") else None)
            with self.store.lock:
                count = sum(1 for obj in collection.objects.values() if match(obj))
        except WeaviateError as error:
            self._fail(context, error)
        single = aggregate_pb2.AggregateReply.Single(objects_count=count if request.objects_count else None)
        return aggregate_pb2.AggregateReply(took=time.perf_counter() - started, single_result=single)


def health_handler(faults: Faults) -> grpc.GenericRpcHandler:
    def check(request: health_weaviate_pb2.WeaviateHealthCheckRequest, context: grpc.ServicerContext) -> health_weaviate_pb2.WeaviateHealthCheckResponse:
        fault = faults.take("Health")
        if fault is not None and fault.code is not None:
            context.abort(fault.code, f"injected by the stand-in: {fault.code.name}")
        return health_weaviate_pb2.WeaviateHealthCheckResponse(status=health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING)

    return grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                check,
                request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
                response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString,
            )
        },
    )
