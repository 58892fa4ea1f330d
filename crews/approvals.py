"""A person decides an approval: an approved write runs once, through the same gate, and the ticket resumes.

Deciding needs a ticket's gate, not a crew: `gate_factory(settings, session_factory)` reads the crew config's
permissions once and builds gates as the pipeline does (a face builds it at start and keeps it). A Pipeline has the
same `gate` and `session_factory`, so a caller that already holds one may pass it instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.orm import Session, sessionmaker

from crewdesk.approvals import service as approvals
from crewdesk.approvals.models import Approval
from crewdesk.audit import service as audit
from crewdesk.connectors.builtin_store import SqlRetailStore
from crewdesk.db import transaction
from crewdesk.settings import Settings
from crewdesk.store.operations import operations
from crews.config import CrewConfig, load_config
from tools.gate import Gate, GateFactory

if TYPE_CHECKING:
    from crews.pipeline import Pipeline


class Gates(Protocol):
    """Where a decided approval's write gets its gate: a GateFactory, or a Pipeline."""

    @property
    def session_factory(self) -> sessionmaker[Session]: ...

    def gate(self, *, ticket_id: int, run_id: int | None) -> Gate: ...


def gate_factory(settings: Settings, session_factory: sessionmaker[Session], *, config: CrewConfig | None = None) -> GateFactory:
    """Gates for deciding approvals, built as the pipeline's are (tools.gate.GateFactory), without the crew: no LLMs,
    router or memory. Reads agents/ and tasks/ once (or takes the crew `config` already read)."""
    config = config or load_config(settings.agents_dir, settings.tasks_dir)
    return GateFactory(settings=settings, session_factory=session_factory, permissions=config.permissions, store_factory=SqlRetailStore)


def decide(
    *,
    gates: Gates | None = None,
    pipeline: Pipeline | None = None,
    approval_id: int,
    approve: bool,
    by: str,
    reason: str | None,
    resume: Callable[[int], object],
) -> tuple[Approval, object]:
    """Record the decision; run the approved write with its original idempotency key; resume the ticket
    once nothing else is pending. Returns the approval and the write's result (or None).

    `gates` (e.g. gate_factory(...)) gives the write its gate; `pipeline=` is the same for a caller that holds a
    Pipeline. Pass exactly one."""
    source: Gates | None = gates if pipeline is None else pipeline if gates is None else None
    if source is None:
        raise TypeError("decide() takes exactly one of gates= or pipeline=")
    with transaction(source.session_factory) as db:
        approval = approvals.decide(db=db, approval_id=approval_id, approve=approve, by=by, reason=reason)
        audit.record(
            db=db,
            ticket_id=approval.ticket_id,
            run_id=approval.run_id,
            kind="approval",
            name="approved" if approve else "rejected",
            actor=by,
            arguments={"approval_id": approval.id, "action": approval.action},
            result={"reason": reason} if reason else None,
        )
    result = None
    if approve:
        gate = source.gate(ticket_id=approval.ticket_id, run_id=approval.run_id)
        result = gate.run(role=approval.requested_by, operation=operations()[approval.action], arguments=approval.arguments, approved=True)
    with source.session_factory() as db:
        still_pending = approvals.pending_for(db=db, ticket_id=approval.ticket_id)
    if not still_pending:
        resume(approval.ticket_id)
    return approval, result
