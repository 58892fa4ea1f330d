"""An in-process stand-in for the parts of Weaviate that crewdesk/memory/weaviate_backend.py uses, for the tests: no
Weaviate server can run on our machines. REST (http.server) and gRPC (grpcio, with the servicer generated from the
protobuf definitions weaviate-client ships) on loopback ports, one in-memory store behind both; behaviour taken from
Weaviate's documentation (see store.py). Tests inject gRPC status codes and delays per method, REST status codes, and
hold collection creations to make a race certain. README ("Memory and knowledge base") says what it does not model.

    with WeaviateStandIn(query_maximum_results=5) as weaviate:
        backend = WeaviateBackend(url=weaviate.url, grpc_port=weaviate.grpc_port, ...)
"""

from __future__ import annotations

import threading
from concurrent import futures

import grpc
from weaviate.proto.v1 import weaviate_pb2_grpc

from tests.weaviate_standin.grpc_service import Fault, Faults, WeaviateService, health_handler
from tests.weaviate_standin.rest import serve
from tests.weaviate_standin.store import Store

VERSION = "1.28.2"  # the server docker-compose.yml runs


class _AuthInterceptor(grpc.ServerInterceptor):
    """API-key auth on gRPC as on REST: without the bearer key every call is UNAUTHENTICATED."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "anonymous access not enabled, please provide an auth scheme such as OIDC")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation, handler_call_details):
        metadata = dict(handler_call_details.invocation_metadata or ())
        if handler_call_details.method.startswith("/grpc.health") or metadata.get("authorization") == f"Bearer {self.api_key}":
            return continuation(handler_call_details)
        return self._deny


class WeaviateStandIn:
    def __init__(self, *, query_maximum_results: int = 10_000, query_defaults_limit: int = 25, api_key: str = "", version: str = VERSION) -> None:
        self.store = Store(query_maximum_results=query_maximum_results, query_defaults_limit=query_defaults_limit)
        self.faults = Faults()
        self.api_key, self.version = api_key, version
        self.rest_requests: list[tuple[str, str]] = []
        self._rest_faults: list[int] = []
        self._create_barrier: threading.Barrier | None = None
        self._lock = threading.Lock()
        self._grpc: grpc.Server | None = None
        self._rest = None
        self.grpc_port = 0
        self.http_port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> WeaviateStandIn:
        interceptors = [_AuthInterceptor(self.api_key)] if self.api_key else []
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="weaviate-standin-grpc"), interceptors=interceptors)
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(WeaviateService(self.store, self.faults), self._grpc)
        self._grpc.add_generic_rpc_handlers((health_handler(self.faults),))
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self._rest, _ = serve(self)
        self.http_port = self._rest.server_address[1]
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None)
            self._grpc = None
        if self._rest is not None:
            self._rest.shutdown()
            self._rest.server_close()
            self._rest = None

    def __enter__(self) -> WeaviateStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # faults
    def fail_grpc(self, method: str, code: grpc.StatusCode, *, times: int | None = None) -> None:
        """The next `times` calls of `method` (Search, BatchObjects, BatchDelete, Aggregate, Health; None: every call
        until clear_faults) end with `code`."""
        self.faults.set(method, Fault(code=code, times=times))

    def delay_grpc(self, method: str, seconds: float, *, times: int | None = None) -> None:
        """The next calls of `method` answer only after `seconds` (a client deadline shorter than that expires)."""
        self.faults.set(method, Fault(delay=seconds, times=times))

    def fail_rest(self, status: int, *, times: int = 1) -> None:
        """The next `times` REST calls other than the probes answer `status`."""
        with self._lock:
            self._rest_faults.extend([status] * times)

    def clear_faults(self) -> None:
        self.faults.clear()
        with self._lock:
            self._rest_faults.clear()

    def rest_fault(self) -> int:
        with self._lock:
            return self._rest_faults.pop(0) if self._rest_faults else 0

    def hold_creates(self, parties: int, *, timeout: float = 60.0) -> None:
        """Collection creations wait until `parties` of them have arrived, then all go on at once: two workers that
        both saw no collection then both create it, deterministically."""
        self._create_barrier = threading.Barrier(parties, timeout=timeout)

    def wait_for_creates(self) -> None:
        barrier = self._create_barrier
        if barrier is not None:
            barrier.wait()
            self._create_barrier = None  # one race: later creations go straight on
