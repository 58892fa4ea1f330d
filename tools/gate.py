"""The one governance gate every tool call passes, in this order:

1. permission: the role's allow-list from agents/*.yaml (refusals are audited);
2. rate limit: at most N tool calls per ticket run, so a runaway agent stops;
3. idempotency: each write has a key (ticket, tool, arguments); a write already done returns its recorded
   result instead of running again, so a retried or resumed ticket never refunds twice;
4. approval: a write that would give back more money than the threshold waits for a person;
5. the write itself and its effect record commit in one transaction, then an audit row.
Tokens standing for personal data are resolved here, at the tool boundary, and results are tokenised
again before the model sees them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from crewdesk.approvals import service as approvals
from crewdesk.audit import service as audit
from crewdesk.connectors.base import RetailStore
from crewdesk.db import transaction
from crewdesk.effects import service as effects
from crewdesk.pii import Vault
from crewdesk.store.operations import Operation, as_jsonable


class ToolDenied(Exception):
    """The gate refused a call; the agent sees the message, the audit trail keeps the row."""


class PlainVault:
    """No redaction (CREWDESK_PII_REDACTION=false, or direct use in tests); the pipeline passes crewdesk.pii.Vault."""

    def reveal(self, value: Any) -> Any:
        return value

    def conceal(self, value: Any) -> Any:
        return value


@dataclass
class Gate:
    session_factory: sessionmaker[Session]
    ticket_id: int
    run_id: int | None
    permissions: dict[str, frozenset[str]]
    store_factory: Callable[[Session], RetailStore] | None = None
    approval_threshold: float | None = None
    max_calls_per_ticket: int = 25
    vault: Vault | PlainVault = field(default_factory=PlainVault)
    _calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def idempotency_key(self, tool: str, arguments: dict) -> str:
        """Stable per ticket, tool and arguments: a retried or resumed ticket repeats the same key."""
        blob = json.dumps(arguments, sort_keys=True, default=str)
        return hashlib.sha256(f"{self.ticket_id}:{tool}:{blob}".encode()).hexdigest()[:32]

    def check(self, *, role: str, tool: str, arguments: dict) -> str:
        """Permission and rate limit; raise ToolDenied or return the call's idempotency key."""
        reason = None
        if tool not in self.permissions.get(role, frozenset()):
            reason = f"role '{role}' is not allowed to use tool '{tool}'"
        else:
            with self._lock:
                self._calls += 1
                if self._calls > self.max_calls_per_ticket:
                    reason = f"tool call limit reached ({self.max_calls_per_ticket} per ticket)"
        if reason is not None:
            self.audit(kind="gate", name=f"denied:{tool}", actor=role, arguments=arguments, error=reason)
            raise ToolDenied(reason)
        return self.idempotency_key(tool, arguments)

    def run(self, *, role: str, operation: Operation, arguments: dict[str, Any], approved: bool = False) -> Any:
        """Run one operation for `role` and return what the model may see (tokenised)."""
        key = self.check(role=role, tool=operation.name, arguments=arguments)
        real_args = self.vault.reveal(arguments)
        if operation.kind != "write":
            with self.session_factory() as db:
                store = self.store_factory(db) if self.store_factory else None
                return self.vault.conceal(as_jsonable(operation.run(store, real_args)))
        return self.vault.conceal(self._write(role=role, operation=operation, key=key, arguments=arguments, real_args=real_args, approved=approved))

    def _write(self, *, role: str, operation: Operation, key: str, arguments: dict, real_args: dict, approved: bool) -> Any:
        with transaction(self.session_factory) as db:
            done = effects.find(db=db, idempotency_key=key)
            if done is not None:
                audit.record(db=db, ticket_id=self.ticket_id, run_id=self.run_id, kind="gate", name=f"replayed:{operation.name}", actor=role,
                             arguments=arguments, result={"effect_id": done.id, "idempotency_key": key})
                return done.result
            store = self.store_factory(db) if self.store_factory else None
            amount = store.refund_amount(operation.name, real_args) if store is not None else 0.0
            if self.approval_threshold is not None and amount > self.approval_threshold and not approved:
                request = approvals.by_key(db=db, idempotency_key=key)
                if request is None:
                    request = approvals.request(db=db, ticket_id=self.ticket_id, run_id=self.run_id, action=operation.name, arguments=arguments,
                                                idempotency_key=key, requested_by=role, reason=f"refund of ${amount:.2f} is above the ${self.approval_threshold:.2f} approval threshold")
                    audit.record(db=db, ticket_id=self.ticket_id, run_id=self.run_id, kind="gate", name=f"approval_requested:{operation.name}", actor=role,
                                 arguments=arguments, result={"approval_id": request.id, "amount": amount})
                if request.status == "pending":
                    return (f"PENDING APPROVAL #{request.id}: {operation.name} would refund ${amount:.2f}, above the ${self.approval_threshold:.2f} limit. "
                            "It was NOT done. Tell the customer a team member must approve it and that they will hear back.")
                if request.status == "rejected":
                    return f"REJECTED: a team member declined {operation.name} (approval #{request.id}: {request.reason}). It was NOT done."
            result = as_jsonable(operation.run(store, real_args))
            effects.record(db=db, idempotency_key=key, ticket_id=self.ticket_id, run_id=self.run_id, tool=operation.name, arguments=arguments, result=result)
            audit.record(db=db, ticket_id=self.ticket_id, run_id=self.run_id, kind="effect", name=operation.name, actor=role, arguments=arguments,
                         result={"idempotency_key": key, "refund": amount})
            return result

    def audit(self, **fields: object) -> None:
        """One audit row for this ticket's run, in its own transaction."""
        with transaction(self.session_factory) as db:
            audit.record(db=db, ticket_id=self.ticket_id, run_id=self.run_id, **fields)  # type: ignore[arg-type]

