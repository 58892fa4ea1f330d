"""Post crewdesk's replies back to Jira Service Management as request comments (public for the customer, internal
for agent notes), and move the issue to a configured status when its ticket ends (resolved, escalated)."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from crewdesk.connectors.base import DeliveryRefused, OutboundMessage, ReplyChannel, StatusSync
from crewdesk.errors import CrewdeskError, TransientError
from crewdesk.settings import JiraSettings
from crewdesk.tickets.schemas import jira_key_problem

# Jira Cloud answers well within this; a hung connection must not hold a delivery worker for long.
TIMEOUT = httpx.Timeout(15.0, connect=5.0)


class JiraUnavailable(TransientError):
    """429, 408 or 5xx. `retry_after`: seconds from Jira's Retry-After header, its own hint for the next attempt."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def path(*segments: str) -> str:
    """A URL path from its segments, each quoted whole: a "/" or "?" inside one cannot make another path."""
    return "".join("/" + quote(segment, safe="") for segment in segments)


def issue_key(key: str) -> str:
    """`key` when it is a Jira issue key; refused for good otherwise, before any URL is built with it."""
    problem = jira_key_problem(key)
    if problem:
        raise DeliveryRefused(f"not sent to Jira: {problem}")
    return key


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None  # an HTTP date, or absent: the task's own backoff applies


def _jira_error(response: httpx.Response) -> str:
    """Jira's own words (errorMessage / errorMessages / errors), else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(data, dict):
        parts = [str(data.get("errorMessage") or "")] + [str(m) for m in data.get("errorMessages") or []]
        parts += [f"{k}: {v}" for k, v in (data.get("errors") or {}).items()] if isinstance(data.get("errors"), dict) else []
        text = "; ".join(p for p in parts if p)
        if text:
            return text[:300]
    return response.text[:300]


class JiraReplyChannel(ReplyChannel):
    source = "jira"

    def __init__(self, *, base_url: str, user: str, api_token: str, client: httpx.Client | None = None, statuses: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.statuses = {k: v.strip() for k, v in (statuses or {}).items() if v and v.strip()}  # our final status -> Jira status name
        self._client = client or httpx.Client(
            auth=httpx.BasicAuth(user, api_token), timeout=TIMEOUT, headers={"Accept": "application/json", "User-Agent": "crewdesk"}
        )

    @classmethod
    def from_settings(cls, settings: JiraSettings) -> JiraReplyChannel:
        token = settings.jira_api_token.get_secret_value()
        if not settings.jira_user or not token:
            raise CrewdeskError("jira_base_url is set, but jira_user and jira_api_token are needed to post replies")
        return cls(
            base_url=settings.jira_base_url,
            user=settings.jira_user,
            api_token=token,
            statuses={
                "resolved": settings.jira_status_on_resolved,
                "escalated": settings.jira_status_on_escalated,
                "waiting_on_customer": settings.jira_status_on_waiting,
            },
        )

    def _call(self, method: str, url: str, what: str, **kwargs) -> httpx.Response:
        """One request; 408/429/5xx and network trouble are transient, any other 4xx refuses for good."""
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientError(f"Jira timed out {what}: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"Jira unreachable {what}: {exc}") from exc
        status = response.status_code
        if status in (408, 429) or status >= 500:
            wait = _retry_after(response)
            hint = f"; retry after {wait:g} s" if wait is not None else ""
            raise JiraUnavailable(f"Jira answered {status} {what}{hint}: {_jira_error(response)}", wait)
        if status >= 400:
            raise DeliveryRefused(f"Jira refused {what} ({status}): {_jira_error(response)}")
        return response

    def syncs_status(self, status: str) -> bool:
        return status in self.statuses

    def sync_status(self, *, ticket_external_id: str, status: str) -> StatusSync | None:
        """GET the issue's status and the transitions open from it; when it is not yet at the configured status,
        POST the transition that leads there. A workflow with no such transition refuses (DeliveryRefused)."""
        target = self.statuses.get(status)
        if not target:
            return None
        key = issue_key(ticket_external_id)
        response = self._call(
            "GET", self.base_url + path("rest", "api", "3", "issue", key), f"reading the status of {key}", params={"fields": "status", "expand": "transitions"}
        )
        try:
            data = response.json()
            current = str(((data.get("fields") or {}).get("status") or {}).get("name") or "")
            offered = [t for t in data.get("transitions") or [] if isinstance(t, dict)]
        except (ValueError, AttributeError) as exc:
            raise DeliveryRefused(f"Jira sent an unreadable issue for {key}: {response.text[:200]}") from exc
        if current.casefold() == target.casefold():
            return StatusSync(status=current, changed=False)
        lead_there = [t for t in offered if str((t.get("to") or {}).get("name") or "").casefold() == target.casefold()]
        if not lead_there:
            names = ", ".join(f"{t.get('name')} -> {(t.get('to') or {}).get('name')}" for t in offered) or "none"
            raise DeliveryRefused(f"Jira offers no transition from {current or '(unknown)'} to {target} on {key} (offered: {names})")
        transition = lead_there[0]
        self._call(
            "POST",
            self.base_url + path("rest", "api", "3", "issue", key, "transitions"),
            f"moving {key} to {target}",
            json={"transition": {"id": str(transition.get("id"))}},
        )
        return StatusSync(status=str(transition["to"].get("name") or target), changed=True)

    def deliver(self, message: OutboundMessage) -> str:
        """POST /rest/servicedeskapi/request/{issueKey}/comment; returns the new comment's id (which the webhook's
        loop protection later recognises)."""
        key = issue_key(message.ticket_external_id)
        url = self.base_url + path("rest", "servicedeskapi", "request", key, "comment")
        response = self._call("POST", url, f"posting a comment on {key}", json={"body": message.body, "public": message.public})
        status = response.status_code
        try:
            comment_id = response.json().get("id")
        except (ValueError, AttributeError):
            comment_id = None
        # Posted, but Jira did not say under which id: record that rather than re-post it.
        return str(comment_id) if comment_id not in (None, "") else f"unknown:{status}"

    def close(self) -> None:
        self._client.close()
