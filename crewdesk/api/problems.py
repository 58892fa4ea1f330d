"""RFC 9457 problem details for the answers the routes do not choose themselves: a request that fails validation
(422, e.g. a `source` that is not a channel), a body over the limit (413), a caller over its rate limit (429)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from crewdesk.api.common import PROBLEM_SCHEMA

# The 422 problem also lists each error as FastAPI does (loc, msg, type).
VALIDATION_PROBLEM: dict[str, Any] = {
    **PROBLEM_SCHEMA,
    "properties": {
        **PROBLEM_SCHEMA["properties"],
        "errors": {
            "type": "array",
            "items": {"type": "object", "properties": {"loc": {"type": "array"}, "msg": {"type": "string"}, "type": {"type": "string"}}},
        },
    },
}


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem details answer."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def problem_response(description: str, headers: dict[str, Any] | None = None, schema: dict[str, Any] = PROBLEM_SCHEMA) -> dict[str, Any]:
    """The OpenAPI entry of a problem answer, for a route's `responses=`."""
    response: dict[str, Any] = {"description": description, "content": {"application/problem+json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _where(loc: Any) -> str:
    return ".".join(str(part) for part in loc if part != "body") or "body"


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{k: v for k, v in error.items() if k in ("loc", "msg", "type")} for error in exc.errors()]
    detail = "; ".join(f"{_where(e.get('loc', ()))}: {e.get('msg', '')}" for e in errors[:5])[:2000] or "the request is not valid"
    return problem(422, "Unprocessable Content", detail, errors=jsonable_encoder(errors))


def install(app: FastAPI) -> None:
    """422s as problem details, in the answers and in the OpenAPI document."""
    app.add_exception_handler(RequestValidationError, _invalid)
    make_schema = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = make_schema()
            for operation in (op for path in schema.get("paths", {}).values() for op in path.values() if isinstance(op, dict)):
                if "422" in operation.get("responses", {}):
                    operation["responses"]["422"] = problem_response("The request does not validate: each error in `errors`.", schema=VALIDATION_PROBLEM)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
