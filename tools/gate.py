"""The one governance gate every tool call passes: permission, rate limit, idempotency key, audit record.

Approval thresholds for money-moving tools arrive with those tools (issue 3); the gate already carries the
hook (`requires_approval`) so no tool can bypass it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from crewdesk.audit import service as audit


class ToolDenied(Exception):
    """The gate refused a call; the agent sees the message, the audit trail keeps the row."""


@dataclass
class Gate:
    session_factory: sessionmaker[Session]
    ticket_id: int
    run_id: int
    permissions: dict[str, frozenset[str]]
    max_calls_per_ticket: int = 25
    _calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def idempotency_key(self, tool: str, arguments: dict) -> str:
        """Stable per ticket, tool and arguments: a retried or resumed ticket repeats the same key."""
        blob = json.dumps(arguments, sort_keys=True, default=str)
        return hashlib.sha256(f"{self.ticket_id}:{tool}:{blob}".encode()).hexdigest()[:32]

    def check(self, *, role: str, tool: str, arguments: dict) -> str:
        """Raise ToolDenied or return the idempotency key for this call."""
        reason = None
        if tool not in self.permissions.get(role, frozenset()):
            reason = f"role '{role}' is not allowed to use tool '{tool}'"
        else:
            with self._lock:
                self._calls += 1
                if self._calls > self.max_calls_per_ticket:
                    reason = f"tool call limit reached ({self.max_calls_per_ticket} per ticket)"
        if reason is not None:
            self._audit(kind="gate", name=f"denied:{tool}", actor=role, arguments=arguments, error=reason)
            raise ToolDenied(reason)
        return self.idempotency_key(tool, arguments)

    def _audit(self, **fields: object) -> None:
        with self.session_factory() as db, db.begin():
            audit.record(db=db, ticket_id=self.ticket_id, run_id=self.run_id, **fields)  # type: ignore[arg-type]
