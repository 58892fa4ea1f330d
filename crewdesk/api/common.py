"""What the routers share: the error body, documented error responses, row ids and the NUL-byte rule."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel

# Row ids are PostgreSQL integers: a larger id is a 422, not a database error.
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class ErrorView(BaseModel):
    detail: str


Responses = dict[int | str, dict[str, Any]]  # FastAPI's `responses=`
NOT_FOUND: Responses = {404: {"model": ErrorView, "description": "No such row."}}
CONFLICT: Responses = {409: {"model": ErrorView}}
BAD_BODY: Responses = {400: {"model": ErrorView, "description": "The body could not be read (not UTF-8)."}}


def schema_no_nul(schema: dict[str, Any], _model: type) -> None:
    """Publish the NUL-byte rule TicketIn and Decision enforce: PostgreSQL text cannot hold NUL."""
    for prop in schema.get("properties", {}).values():
        for branch in (prop, *prop.get("anyOf", [])):
            if branch.get("type") == "string" and "enum" not in branch:
                branch["pattern"] = "^[^\\u0000]*$"


# RFC 9457 problem details, as crewdesk/api/errors.py answers a missing or insufficient API key.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"}},
    "required": ["type", "title", "status", "detail"],
}
AUTH: Responses = {
    401: {"description": "No API key, or one that is unknown or revoked.", "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}},
    403: {
        "description": "The key lacks the route's scope, decides its own request, or approves twice a write that needs two people.",
        "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
    },
}
