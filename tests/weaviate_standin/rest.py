"""The stand-in's REST half (http.server on loopback): /v1/meta, the readiness probes, and the schema endpoints
(collections.create, exists, list_all, delete) with a server's status codes and error bodies."""

from __future__ import annotations

import json
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from tests.weaviate_standin.store import WeaviateError

if TYPE_CHECKING:
    from tests.weaviate_standin import WeaviateStandIn


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows failures, not each request

    def _send(self, status: int, body: Any = None) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, error: WeaviateError) -> None:
        self._send(error.status, {"error": [{"message": error.message}]})

    def _route(self, method: str) -> None:
        standin = self.server.standin
        standin.rest_requests.append((method, self.path))
        path = self.path.split("?", 1)[0].rstrip("/")
        if not path.startswith("/v1/"):
            return self._send(HTTPStatus.NOT_FOUND)
        path = path[len("/v1") :]
        if path.startswith("/.well-known/"):
            if path in ("/.well-known/ready", "/.well-known/live"):
                return self._send(HTTPStatus.OK)
            return self._send(HTTPStatus.NOT_FOUND)  # openid-configuration: no OIDC here
        if standin.api_key and self.headers.get("Authorization") != f"Bearer {standin.api_key}":
            return self._send(HTTPStatus.UNAUTHORIZED, {"code": 401, "message": "anonymous access not enabled, please provide an auth scheme such as OIDC"})
        status = standin.rest_fault()
        if status:
            return self._send(status, {"error": [{"message": f"injected by the stand-in: {status}"}]})
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null") if length else None
        store = standin.store
        try:
            if path == "/meta" and method == "GET":
                return self._send(HTTPStatus.OK, {"hostname": "http://[::]:8080", "modules": {}, "version": standin.version, "grpcMaxMessageSize": 104858000})
            if path == "/schema" and method == "GET":
                return self._send(HTTPStatus.OK, store.schema())
            if path == "/schema" and method == "POST":
                standin.wait_for_creates()
                return self._send(HTTPStatus.OK, store.create(body or {}))
            if path == "/graphql" and method == "POST":
                return self._send(HTTPStatus.OK, _graphql(standin, (body or {}).get("query", "")))
            if path.startswith("/schema/") and path.count("/") == 2:
                name = path.split("/")[2]
                if method == "GET":
                    try:
                        return self._send(HTTPStatus.OK, store.get(name).config)
                    except WeaviateError:
                        return self._send(HTTPStatus.NOT_FOUND)  # a server answers an unknown class with an empty 404
                if method == "DELETE":
                    store.delete(name)
                    return self._send(HTTPStatus.OK)
        except WeaviateError as error:
            return self._error(error)
        return self._send(HTTPStatus.NOT_FOUND, {"error": [{"message": f"{method} {self.path} is not modelled by this stand-in"}]})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_HEAD(self) -> None:
        self._route("HEAD")


_AGGREGATE_COUNT = re.compile(r"^\{Aggregate\{([A-Za-z_][A-Za-z0-9_]*)\{meta\{count\}\}\}\}$")


def _graphql(standin: WeaviateStandIn, query: str) -> dict[str, Any]:
    """Only what the client sends a server older than 1.29 for aggregate.over_all(total_count=True) without filters;
    GraphQL reports errors in a 200 answer."""
    found = _AGGREGATE_COUNT.match(re.sub(r"\s+", "", query))
    if not found:
        return {"data": None, "errors": [{"message": f"this GraphQL query is not modelled by this stand-in: {query}"}]}
    try:
        collection = standin.store.get(found.group(1))
    except WeaviateError:
        return {"data": {"Aggregate": None}, "errors": [{"message": f'Cannot query field "{found.group(1)}" on type "AggregateObjectsObj".'}]}
    with standin.store.lock:
        count = len(collection.objects)
    return {"data": {"Aggregate": {collection.name: [{"meta": {"count": count}}]}}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, standin: WeaviateStandIn) -> None:
        self.standin = standin
        super().__init__(("127.0.0.1", 0), _Handler)


def serve(standin: WeaviateStandIn) -> tuple[_Server, threading.Thread]:
    server = _Server(standin)
    thread = threading.Thread(target=server.serve_forever, name="weaviate-standin-rest", daemon=True)
    thread.start()
    return server, thread
