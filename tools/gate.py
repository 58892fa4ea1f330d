"""The one governance gate every tool call passes, in this order:

1. permission: the role's allow-list from agents/*.yaml;
2. rate limit: at most N tool calls per ticket run, so a runaway agent stops;
3. customer: the call may touch only the records of the ticket's customer (tools/binding.py), reads as well as writes;
4. idempotency: each write has a key (ticket, tool, arguments); a write already done returns its recorded
   result instead of running again, so a retried or resumed ticket never refunds twice;
5. approval: a write that would bring the money given back on this ticket, or to this customer within a day, above
   the threshold waits for a person (a big refund split into small ones still adds up); so does a write on a
   customer whose identity is only claimed (tools/binding.py: proof), unless the ticket's source accepts claims for
   writes (identity_claimed_writes): rule identity_unverified, a person who can check who they are decides;
   refunds waiting for a person count toward those totals as if made, and above the second-approval amount two
   different people must approve (crewdesk/approvals/service.py); a write made on an approval is made only if a person
   approved exactly it, and is recorded as the customer's it was requested for (rule approval_missing otherwise);
6. the write itself, its effect record and its audit row commit in one transaction: no action without its row.
Every refusal is an audit row that names its rule (role_permission, call_limit, customer_binding, identity_unproven,
identity_switch), as is every approval request (approval_threshold, identity_unverified), and the agent sees the reason.
Tokens standing for personal data are resolved here, at the tool boundary, and results are tokenised
again before the model sees them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.approvals import service as approvals
from crewdesk.approvals.models import ApprovalStatus
from crewdesk.audit import service as audit
from crewdesk.connectors.base import RetailStore
from crewdesk.db import transaction
from crewdesk.effects import service as effects
from crewdesk.pii import Vault
from crewdesk.settings import GateSettings
from crewdesk.store.operations import Operation, as_jsonable
from crewdesk.tickets.models import Message, Ticket
from tools.binding import VOUCHING_SOURCES, CustomerBinding, Refusal

REFUND_WINDOW = timedelta(hours=24)


class ToolDenied(Exception):
    """The gate refused a call; the agent sees the message, the audit trail keeps the row."""


@dataclass(frozen=True)
class Refused:
    tool: str
    rule: str
    reason: str

    @property
    def hostile(self) -> bool:
        """A call on another customer's records, or under another identity: a person should look at this ticket."""
        return self.rule in ("customer_binding", "identity_switch")


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
    second_approval_above: float | None = None  # two approvers when the refund brings the total above this
    max_calls_per_ticket: int = 25
    vault: Vault | PlainVault = field(default_factory=PlainVault)
    binding: CustomerBinding = field(default_factory=CustomerBinding)
    claimed_writes: bool = False  # this ticket's source accepts a claimed identity for writes (identity_claimed_writes)
    refusals: list[Refused] = field(default_factory=list)  # this run's refusals, for the pipeline's verdict
    _calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def idempotency_key(self, tool: str, arguments: dict) -> str:
        """Stable per ticket, tool and arguments: a retried or resumed ticket repeats the same key."""
        blob = json.dumps(arguments, sort_keys=True, default=str)
        return hashlib.sha256(f"{self.ticket_id}:{tool}:{blob}".encode()).hexdigest()[:32]

    def _deny(self, *, role: str, tool: str, arguments: dict, rule: str, reason: str) -> ToolDenied:
        with self._lock:
            self.refusals.append(Refused(tool=tool, rule=rule, reason=reason))
        self.audit(kind="gate", name=f"denied:{tool}", actor=role, arguments=arguments, result={"rule": rule}, error=reason)
        return ToolDenied(reason)

    def check(self, *, role: str, tool: str, arguments: dict) -> str:
        """Permission and rate limit; raise ToolDenied or return the call's idempotency key."""
        if tool not in self.permissions.get(role, frozenset()):
            raise self._deny(role=role, tool=tool, arguments=arguments, rule="role_permission", reason=f"role '{role}' is not allowed to use tool '{tool}'")
        with self._lock:
            self._calls += 1
            over = self._calls > self.max_calls_per_ticket
        if over:
            raise self._deny(
                role=role, tool=tool, arguments=arguments, rule="call_limit", reason=f"tool call limit reached ({self.max_calls_per_ticket} per ticket)"
            )
        return self.idempotency_key(tool, arguments)

    def _bound(self, refusal: Refusal | None, *, role: str, tool: str, arguments: dict) -> None:
        if refusal is not None:
            raise self._deny(role=role, tool=tool, arguments=arguments, rule=refusal.rule, reason=refusal.reason)

    def run(self, *, role: str, operation: Operation, arguments: dict[str, Any], approved: bool = False) -> Any:
        """Run one operation for `role` and return what the model may see (tokenised)."""
        key = self.check(role=role, tool=operation.name, arguments=arguments)
        real_args = self.vault.reveal(arguments)
        if operation.kind != "write":
            with self.session_factory() as db:
                store = self.store_factory(db) if self.store_factory else None
                self._bound(self.binding.check(store, operation.name, real_args), role=role, tool=operation.name, arguments=arguments)
                result = as_jsonable(operation.run(store, real_args))
            self._bound(self.binding.found(operation.name, result), role=role, tool=operation.name, arguments=arguments)
            return self.vault.conceal(result)
        return self.vault.conceal(self._write(role=role, operation=operation, key=key, arguments=arguments, real_args=real_args, approved=approved))

    def _write(self, *, role: str, operation: Operation, key: str, arguments: dict, real_args: dict, approved: bool) -> Any:
        with transaction(self.session_factory) as db:
            done = effects.find(db=db, idempotency_key=key)
            if done is not None:
                audit.record(
                    db=db,
                    ticket_id=self.ticket_id,
                    run_id=self.run_id,
                    kind="gate",
                    name=f"replayed:{operation.name}",
                    actor=role,
                    arguments=arguments,
                    result={"effect_id": done.id, "idempotency_key": key},
                )
                return done.result
            store = self.store_factory(db) if self.store_factory else None
            unverified: str | None = None
            if not approved:  # an approved write passed these checks when it was requested, and a person approved exactly it
                self._bound(self.binding.check(store, operation.name, real_args), role=role, tool=operation.name, arguments=arguments)
                if store is not None and self.binding.scoped(operation.name, real_args) and self.binding.proof != "verified" and not self.claimed_writes:
                    unverified = self.binding.proven_by()
            customer_ref = self.binding.user_id  # bound by the check above, if the channel names a customer the store knows
            if approved:  # made on a person's approval: only one a person gave, and the customer is the one it was asked for
                given = approvals.by_key(db=db, idempotency_key=key)
                if given is None or given.status != ApprovalStatus.approved:
                    raise self._deny(
                        role=role, tool=operation.name, arguments=arguments, rule="approval_missing", reason=f"nobody approved this {operation.name}"
                    )
                customer_ref = given.customer_ref
            amount = store.refund_amount(operation.name, real_args) if store is not None else 0.0
            earlier, pending, over = 0.0, 0.0, False
            if self.approval_threshold is not None and amount > 0 and not approved:
                earlier = effects.refunded(db=db, ticket_id=self.ticket_id, customer_ref=customer_ref, within=REFUND_WINDOW)
                pending = approvals.waiting(db=db, ticket_id=self.ticket_id, customer_ref=customer_ref, within=REFUND_WINDOW, besides=key)
                over = earlier + pending + amount > self.approval_threshold
            asked = not approved and approvals.by_key(db=db, idempotency_key=key) is not None  # a person was asked: their answer stands
            if over or unverified or asked:
                waiting = self._await_approval(
                    db,
                    role=role,
                    operation=operation,
                    key=key,
                    arguments=arguments,
                    amount=amount,
                    earlier=earlier,
                    pending=pending,
                    over=over,
                    unverified=unverified,
                )
                if waiting is not None:
                    return waiting
            result = as_jsonable(operation.run(store, real_args))
            effects.record(
                db=db,
                idempotency_key=key,
                ticket_id=self.ticket_id,
                run_id=self.run_id,
                tool=operation.name,
                arguments=arguments,
                result=result,
                customer_ref=customer_ref,
                refund_usd=amount,
            )
            audit.record(
                db=db,
                ticket_id=self.ticket_id,
                run_id=self.run_id,
                kind="effect",
                name=operation.name,
                actor=role,
                arguments=arguments,
                result={"idempotency_key": key, "refund": amount},
            )
            return result

    def _await_approval(
        self,
        db: Session,
        *,
        role: str,
        operation: Operation,
        key: str,
        arguments: dict,
        amount: float,
        earlier: float,
        pending: float,
        over: bool,
        unverified: str | None,
    ) -> str | None:
        """What the agent is told while the write waits for (or was refused) a person's approval; None once approved.
        `over`: above the refund threshold, with `earlier` refunds made and `pending` ones waiting for approval on this
        ticket or to this customer; `unverified`: how a customer whose identity is only claimed was identified."""
        threshold = self.approval_threshold or 0.0
        total = earlier + pending + amount
        needed = 2 if self.second_approval_above is not None and amount > 0 and total > self.second_approval_above else 1
        rules = [rule for rule, applies in (("identity_unverified", unverified), ("approval_threshold", over)) if applies]
        request = approvals.by_key(db=db, idempotency_key=key)
        if request is None:
            reasons = []
            if unverified:
                reasons.append(
                    f"the customer's identity is not verified: they were identified by {unverified}; a person who can check who they are decides this write"
                )
            if over and (earlier or pending):
                before = " and ".join(([f"${earlier:.2f} already refunded"] if earlier else []) + ([f"${pending:.2f} waiting for approval"] if pending else []))
                reasons.append(
                    f"refund of ${amount:.2f} after {before} on this ticket or to this customer within "
                    f"{int(REFUND_WINDOW.total_seconds() // 3600)} h (${total:.2f} in all) is above the ${threshold:.2f} approval threshold"
                )
            elif over:
                reasons.append(f"refund of ${amount:.2f} is above the ${threshold:.2f} approval threshold")
            if needed > 1:
                reasons.append(f"two different people must approve it: ${total:.2f} is above the ${self.second_approval_above:.2f} second-approval amount")
            reason = "; ".join(reasons)
            request = approvals.request(
                db=db,
                ticket_id=self.ticket_id,
                run_id=self.run_id,
                action=operation.name,
                arguments=arguments,
                idempotency_key=key,
                requested_by=role,
                reason=reason,
                customer_ref=self.binding.user_id,
                amount_usd=amount,
                approvals_needed=needed,
            )
            audit.record(
                db=db,
                ticket_id=self.ticket_id,
                run_id=self.run_id,
                kind="gate",
                name=f"approval_requested:{operation.name}",
                actor=role,
                arguments=arguments,
                result={
                    "approval_id": request.id,
                    "amount": amount,
                    "earlier": earlier,
                    "waiting": pending,
                    "approvals_needed": needed,
                    "rule": rules[0],
                    "rules": rules,
                },
            )
        if request.status == ApprovalStatus.approved:
            return None
        if request.status == ApprovalStatus.rejected:
            return f"REJECTED: a team member declined {operation.name} (approval #{request.id}: {request.reason}). It was NOT done."
        why = []
        if unverified:
            why.append(f"the customer's identity is not verified (identified by {unverified})")
        if over:
            why.append(
                f"it would refund ${amount:.2f}"
                + (f" (${total:.2f} with earlier refunds and those waiting for approval)" if earlier or pending else "")
                + f", above the ${threshold:.2f} limit"
            )
        return (
            f"PENDING APPROVAL #{request.id}: {operation.name} waits for a team member: {'; '.join(why) or request.reason}. It was NOT done. "
            "Tell the customer a team member must approve it and that they will hear back."
        )

    def audit(self, **fields: object) -> None:
        """One audit row for this ticket's run, in its own transaction."""
        with transaction(self.session_factory) as db:
            audit.record(db=db, ticket_id=self.ticket_id, run_id=self.run_id, **fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class GateFactory:
    """Builds each ticket's gate the one way: the crew config's permissions, the built-in system of record, the ticket's
    PII vault, the approval threshold and call limit (GateSettings), and the binding to the customer its channel gave.
    The pipeline and the approvals both take their gates from here."""

    settings: GateSettings
    session_factory: sessionmaker[Session]
    permissions: dict[str, frozenset[str]]
    store_factory: Callable[[Session], RetailStore]

    def gate(self, *, ticket_id: int, run_id: int | None, customer: str | None = None) -> Gate:
        threshold, second = self.settings.approval_threshold_usd, self.settings.second_approval_above_usd
        vault = Vault(session_factory=self.session_factory, ticket_id=ticket_id) if self.settings.pii_redaction else PlainVault()
        with self.session_factory() as db:
            ticket = db.get(Ticket, ticket_id)
            vouched = ticket is not None and channel_vouches(db, ticket)
            claimed_writes = ticket is not None and ticket.source in self.settings.identity_claimed_writes
        return Gate(
            session_factory=self.session_factory,
            ticket_id=ticket_id,
            run_id=run_id,
            permissions=dict(self.permissions),
            store_factory=self.store_factory,
            approval_threshold=None if threshold < 0 else threshold,
            second_approval_above=None if second < 0 else second,
            max_calls_per_ticket=self.settings.max_tool_calls_per_ticket,
            vault=vault,
            binding=CustomerBinding.for_channel(customer, verified=vouched),
            claimed_writes=claimed_writes,
        )


def channel_vouches(db: Session, ticket: Ticket) -> bool:
    """Whether the ticket's channel vouches for its customer's address (tools/binding.py): a source that does, an
    operator's backlog import, or e-mail whose every inbound message carried our MTA's DMARC pass for its From
    (crewdesk.intake.email.authresults, recorded as the message's sender_proof)."""
    if ticket.backlog_id is not None or ticket.source in VOUCHING_SOURCES:
        return True
    if ticket.source != "email":
        return False
    metas = db.execute(select(Message.meta).where(Message.ticket_id == ticket.id, Message.direction == "inbound")).scalars().all()
    return bool(metas) and all(((meta or {}).get("sender_proof") or {}).get("proof") == "verified" for meta in metas)
