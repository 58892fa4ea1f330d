"""A Jira (Service Management) webhook delivery read into a JiraEvent: what crewdesk reads of the payload (also
its OpenAPI documentation), and the lenient reading of users, comments and the event's kind."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from crewdesk.tickets.schemas import MAX_BODY_CHARS

EventKind = Literal["issue_created", "comment_created", "comment_updated", "comment_deleted", "issue_updated", "issue_deleted", "other"]

_USER_SCHEMA = {
    "type": "object",
    "properties": {
        "accountId": {"type": "string"},
        "name": {"type": "string"},
        "key": {"type": "string"},
        "emailAddress": {"type": "string"},
        "displayName": {"type": "string"},
    },
}
# The part of a delivery that crewdesk reads (OpenAPI documentation; anything else is accepted and ignored).
PAYLOAD_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "webhookEvent": {
            "type": "string",
            "enum": ["jira:issue_created", "jira:issue_updated", "jira:issue_deleted", "comment_created", "comment_updated", "comment_deleted"],
        },
        "issue_event_type_name": {"type": "string"},
        "timestamp": {"type": "integer"},
        "user": _USER_SCHEMA,
        "issue": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "key": {"type": "string"},
                "fields": {
                    "type": "object",
                    "properties": {
                        "summary": {"type": "string"},
                        "description": {"type": ["string", "null"]},
                        "priority": {"type": "object", "properties": {"name": {"type": "string"}}},
                        "status": {"type": "object", "properties": {"name": {"type": "string"}}},
                        "reporter": _USER_SCHEMA,
                    },
                },
            },
        },
        "comment": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "body": {"type": "string"},
                "author": _USER_SCHEMA,
                "jsdPublic": {"type": "boolean"},
                "created": {"type": "string"},
                "updated": {"type": "string"},
            },
        },
        "changelog": {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "field": {"type": "string"},
                            "fieldId": {"type": "string"},
                            "fromString": {"type": ["string", "null"]},
                            "toString": {"type": ["string", "null"]},
                        },
                    },
                }
            },
        },
    },
    "additionalProperties": True,
}


class JiraUser(BaseModel):
    """A Jira user as webhooks show it: Cloud has accountId (e-mail often hidden), Server has name/key."""

    account_id: str | None = Field(default=None, description="Cloud accountId.")
    name: str | None = Field(default=None, description="Server user name (Cloud sends it on old payloads).")
    key: str | None = Field(default=None, description="Server user key.")
    email: str | None = Field(default=None, description="emailAddress, when the instance shows it.")
    display_name: str | None = None

    @property
    def identity(self) -> str:
        """Who this is, for ticket.customer and message.author: e-mail first, then accountId, then name."""
        return self.email or self.account_id or self.name or self.key or self.display_name or ""


class JiraComment(BaseModel):
    id: str = Field(description="Jira's comment id.")
    body: str = ""
    author: JiraUser | None = None
    public: bool | None = Field(default=None, description="JSM jsdPublic: False for an internal comment; None when not a service desk.")
    created: str | None = None
    updated: str | None = None


class JiraEvent(BaseModel):
    """One webhook delivery, normalised across Jira Cloud and Server/Data Center payload shapes."""

    kind: EventKind
    webhook_event: str = Field(default="", description="The payload's webhookEvent, e.g. jira:issue_updated.")
    event_type_name: str | None = Field(default=None, description="issue_event_type_name (absent on old servers).")
    timestamp: int | None = None
    issue_id: str | None = None
    issue_key: str | None = None
    project_key: str | None = None
    summary: str = ""
    description: str = ""
    priority: str | None = Field(default=None, description="Jira's priority name: Highest, High, Medium, Major, ...")
    status: str | None = Field(default=None, description="The issue's current status name.")
    reporter: JiraUser | None = None
    actor: JiraUser | None = Field(default=None, description="The payload's `user`: who caused the event.")
    comment: JiraComment | None = None
    status_from: str | None = Field(default=None, description="From the changelog's status item, when the status changed.")
    status_to: str | None = None
    changed_fields: list[str] = Field(default_factory=list)


def _text(value: Any, limit: int | None = None) -> str:
    """Jira text as a plain string: wiki/plain text as is, Atlassian Document Format flattened; NUL removed
    because PostgreSQL text refuses it."""
    if value is None:
        return ""
    if isinstance(value, dict):  # ADF: {"type": "doc", "content": [...]}
        parts: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if isinstance(node.get("text"), str):
                    parts.append(node["text"])
                for child in node.get("content") or []:
                    walk(child)
                if node.get("type") in ("paragraph", "heading", "listItem", "codeBlock"):
                    parts.append("\n")
            elif isinstance(node, list):
                for child in node:
                    walk(child)

        walk(value)
        text = "".join(parts).strip()
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value)
    else:
        text = ""
    text = text.replace("\x00", "\ufffd")
    return text[:limit] if limit else text


def _opt(value: Any, limit: int = 255) -> str | None:
    return _text(value, limit) or None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _user(value: Any) -> JiraUser | None:
    user = _dict(value)
    if not user:
        return None
    return JiraUser(
        account_id=_opt(user.get("accountId")),
        name=_opt(user.get("name")),
        key=_opt(user.get("key")),
        email=_opt(user.get("emailAddress"), 320),
        display_name=_opt(user.get("displayName")),
    )


def _kind(webhook_event: str, type_name: str | None, comment: JiraComment | None) -> EventKind:
    if webhook_event in ("jira:issue_created",) or type_name == "issue_created":
        return "issue_created"
    if webhook_event == "jira:issue_deleted" or type_name == "issue_deleted":
        return "issue_deleted"
    if webhook_event in ("comment_created", "comment_updated", "comment_deleted"):
        return webhook_event  # type: ignore[return-value]
    if webhook_event != "jira:issue_updated":
        return "other"
    # Jira Server also reports comments as jira:issue_updated, named by issue_event_type_name, or (old servers)
    # unnamed with the comment attached: an edit shows as updated != created.
    named = {"issue_commented": "comment_created", "issue_comment_edited": "comment_updated", "issue_comment_deleted": "comment_deleted"}
    if type_name in named:
        return named[type_name]  # type: ignore[return-value]
    if not type_name and comment is not None:
        return "comment_created" if not comment.updated or comment.updated == comment.created else "comment_updated"
    return "issue_updated"


def parse_event(payload: dict) -> JiraEvent:
    """Read any webhook body (Cloud or Server, any age) into a JiraEvent; fields it lacks stay empty, never raise."""
    issue = _dict(payload.get("issue"))
    fields = _dict(issue.get("fields"))
    raw_comment = _dict(payload.get("comment"))
    comment = None
    if raw_comment.get("id") is not None:
        public = raw_comment.get("jsdPublic")
        comment = JiraComment(
            id=_text(raw_comment.get("id"), 255),
            body=_text(raw_comment.get("body"), MAX_BODY_CHARS),
            author=_user(raw_comment.get("author")),
            public=public if isinstance(public, bool) else None,
            created=_opt(raw_comment.get("created"), 64),
            updated=_opt(raw_comment.get("updated"), 64),
        )
    webhook_event = _text(payload.get("webhookEvent"), 64)
    type_name = _opt(payload.get("issue_event_type_name"), 64)
    status_from = status_to = None
    changed: list[str] = []
    for item in _dict(payload.get("changelog")).get("items") or []:
        item = _dict(item)
        field = _text(item.get("fieldId") or item.get("field"), 64)
        if field:
            changed.append(field)
        if field.lower() == "status":
            status_from, status_to = _opt(item.get("fromString"), 64), _opt(item.get("toString"), 64)
    timestamp = payload.get("timestamp")
    return JiraEvent(
        kind=_kind(webhook_event, type_name, comment),
        webhook_event=webhook_event,
        event_type_name=type_name,
        timestamp=timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None,
        issue_id=_opt(issue.get("id"), 64),
        issue_key=_opt(issue.get("key"), 255),
        project_key=_opt(_dict(fields.get("project")).get("key"), 64),
        summary=_text(fields.get("summary"), 998),
        description=_text(fields.get("description"), MAX_BODY_CHARS),
        priority=_opt(_dict(fields.get("priority")).get("name"), 64),
        status=_opt(_dict(fields.get("status")).get("name"), 64),
        reporter=_user(fields.get("reporter")),
        actor=_user(payload.get("user")),
        comment=comment,
        status_from=status_from,
        status_to=status_to,
        changed_fields=changed[:50],
    )
