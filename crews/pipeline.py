"""Process one ticket: triage, deterministic rules, a specialist or escalation, then persist run and result.

Safe to call twice for the same ticket (duplicate delivery, redelivery after a crash): a finished ticket is
returned as is, a ticket held by another worker is left to it, and a run cut short by a dead worker is
marked interrupted and started again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import psycopg
from crewai.utilities.converter import ConverterError
from sqlalchemy import CursorResult, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from crewdesk import language
from crewdesk.approvals import service as approvals
from crewdesk.audit import service as audit
from crewdesk.connectors.builtin_store import SqlRetailStore
from crewdesk.db import transaction, utcnow
from crewdesk.effects import service as effects
from crewdesk.errors import AuditWriteFailed, ModelOutputError, TransientError
from crewdesk.llm.factory import LLMFactory, estimate_cost
from crewdesk.logging import bind, get_logger, unbind
from crewdesk.memory import service as memory
from crewdesk.memory.base import MemoryStore, MemoryStoreError
from crewdesk.pii import Vault
from crewdesk.routing.schemas import Route
from crewdesk.runs.models import CrewRun
from crewdesk.settings import Settings
from crewdesk.store.operations import operations
from crewdesk.tickets import rules
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Message, Ticket, TicketStatus
from crewdesk.tickets.schemas import (
    MAX_BODY_CHARS,
    Handoff,
    Resolution,
    TicketOutcome,
    Triage,
)
from crews import audit_listener
from crews.builder import CrewBuilder, Work
from crews.config import SPECIALIST_BY_CATEGORY, CrewConfig, load_config
from crews.procedures import address, conditions
from crews.procedures.conditions import HANDOFF
from crews.procedures.decide import VERBS as ORDER_VERBS
from crews.procedures.flow import ORDER_FAMILY, ORDER_FAMILY_ORDER, ProcedureFlow
from crews.procedures.policy import RULES as POLICY_RULES
from crews.procedures.replies import holding_reply
from crews.procedures.spec import Procedures, load_procedures, load_replies
from tools.binding import CustomerBinding
from tools.gate import Gate, PlainVault

log = get_logger(__name__)

_LOCK_NAMESPACE = 0x6372_6577_0000  # "crew" in the high bits keeps our advisory locks apart from others'


def build_router(settings: Settings, llm_factory: LLMFactory):
    """The intent router the settings ask for (crewdesk/routing): MiniLM over labelled examples, optionally with the model."""
    from crewdesk.routing.router import build_router as build

    llm = llm_factory.build(tier="cheap") if settings.router != "embedding" else None
    return build(cache_dir=settings.home / "cache" / "routing", llm=llm, design=settings.router)


@dataclass(frozen=True)
class Decision:
    """What a run decided for its ticket: the status to move to and why, the reply, the team's note, the triage."""

    status: TicketStatus
    reason: str | None
    reply: str | None
    note: str | None
    triage: Triage | None = None


@dataclass(frozen=True)
class Routed:
    """A ticket the procedures take: the router's answer, the intents to run, and whether the customer's own verbs named them."""

    route: Route
    intents: list[str]
    cued: bool


# Router labels that name no action of their own: beside a request the customer's verbs name, they are dropped.
VAGUE = frozenset({"other", "product_info", "billing_question", "account_help"})


def is_connection_error(exc: BaseException) -> bool:
    """The database went away (restart, failover, a dropped connection): the next try, on a fresh connection, may pass.
    A constraint violation or a bad query is not this: it fails the same way every time."""
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) and not isinstance(exc, psycopg.errors.QueryCanceled)


class TicketBusy(Exception):
    """Another worker holds this ticket."""


def classify_error(exc: BaseException) -> type[Exception] | None:
    """Find a TransientError or a model misbehaving (garbage output, a loop CrewAI stopped) anywhere in the
    chain CrewAI may have wrapped."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TransientError) or is_connection_error(current):
            return TransientError
        if isinstance(current, (ModelOutputError, ConverterError)) or "guardrail validation" in str(current) or "not making progress" in str(current):
            return ModelOutputError
        current = current.__cause__ or current.__context__
    return None


class Pipeline:
    def __init__(
        self, *, settings: Settings, session_factory: sessionmaker[Session], llm_factory: LLMFactory, config: CrewConfig | None = None, router=None
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.config = config or load_config(settings.agents_dir, settings.tasks_dir)
        self.replies = load_replies(settings.tasks_dir / "procedures")
        self.procedures: Procedures | None = None
        if settings.procedures:
            self.procedures = load_procedures(settings.tasks_dir / "procedures", policy_rules=set(POLICY_RULES), roles=set(self.config.roles))
        self.router = router if router is not None or not settings.procedures else build_router(settings, llm_factory)
        audit_listener.install(session_factory)
        self.memory = self._open_memory(settings)
        self.builder = CrewBuilder(
            config=self.config,
            llm_factory=llm_factory,
            session_factory=session_factory,
            tool_dependencies={"kb_search": {"knowledge": self.memory, "k": settings.kb_search_k}},
        )

    @contextmanager
    def _exclusive(self, ticket_id: int) -> Iterator[None]:
        engine = self.session_factory.kw["bind"]
        if engine.dialect.name != "postgresql":
            yield  # SQLite quickstart: one in-process runner, nothing to race
            return
        with engine.connect() as conn:
            key = _LOCK_NAMESPACE + ticket_id
            if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                raise TicketBusy(ticket_id)
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()

    def process(self, ticket_id: int, *, celery_task_id: str | None = None) -> TicketOutcome:
        started = time.perf_counter()
        try:
            with self._exclusive(ticket_id):
                return self._process_locked(ticket_id, celery_task_id=celery_task_id, started=started)
        except TicketBusy:
            log.info("ticket.busy_elsewhere", ticket_id=ticket_id)
            with self.session_factory() as db:
                ticket = tickets.get(db=db, ticket_id=ticket_id)
                return TicketOutcome(ticket_id=ticket_id, run_id=None, status=ticket.status, reused=True)
        except TransientError:
            raise
        except Exception as exc:
            if classify_error(exc) is TransientError:  # the database went away before or after the run: retry, never fail
                log.warning("ticket.transient_error", error=f"{type(exc).__name__}: {exc}")
                raise TransientError(f"{type(exc).__name__}: {exc}") from exc
            raise

    def _begin(self, ticket_id: int, celery_task_id: str | None) -> Work | TicketOutcome:
        """The run's work (its new run row committed, the ticket in triaging or in_progress), or the outcome when there
        is nothing to run (already finished, waiting for approval, or invalid)."""
        with transaction(self.session_factory) as db:
            ticket = tickets.get(db=db, ticket_id=ticket_id, lock=True)
            waiting = ticket.status == TicketStatus.awaiting_approval and approvals.pending_for(db=db, ticket_id=ticket.id)
            if tickets.is_terminal(ticket) or waiting:
                last = (
                    db.execute(select(CrewRun).where(CrewRun.ticket_id == ticket_id, CrewRun.status == "completed").order_by(CrewRun.id.desc()))
                    .scalars()
                    .first()
                )
                return TicketOutcome(
                    ticket_id=ticket.id, run_id=last.id if last else None, status=ticket.status, category=ticket.category, priority=ticket.priority, reused=True
                )
            problem = self._validate(ticket)
            if problem:
                tickets.transition(ticket=ticket, to=TicketStatus.failed, reason=problem)
                audit.record(db=db, ticket_id=ticket.id, kind="status", name="failed", actor="pipeline", error=problem)
                return TicketOutcome(ticket_id=ticket.id, run_id=None, status=ticket.status)
            interrupted = cast(
                CursorResult,
                db.execute(
                    update(CrewRun)
                    .where(CrewRun.ticket_id == ticket_id, CrewRun.status == "running")
                    .values(status="interrupted", finished_at=utcnow(), error="worker stopped before the run finished"),
                ),
            ).rowcount
            if interrupted:
                audit.record(db=db, ticket_id=ticket.id, kind="status", name="run_interrupted", actor="pipeline", result={"runs": interrupted})
            conversation = tickets.conversation(db=db, ticket=ticket)
            read_up_to = tickets.last_inbound_id(db=db, ticket_id=ticket.id)  # what this run has seen of the thread
            run = CrewRun(ticket_id=ticket.id, process="sequential", celery_task_id=celery_task_id)
            db.add(run)
            resuming = ticket.status == TicketStatus.awaiting_approval
            tickets.transition(ticket=ticket, to=TicketStatus.in_progress if resuming else TicketStatus.triaging)
            db.flush()
            audit.record(db=db, ticket_id=ticket.id, run_id=run.id, kind="status", name="resumed" if resuming else "triaging", actor="pipeline")
        return Work(
            ticket=ticket,
            run_id=run.id,
            text=conversation or ticket.body,
            read_up_to=read_up_to,
            gate=self.gate(ticket_id=ticket.id, run_id=run.id, customer=ticket.customer),
        )

    def gate(self, *, ticket_id: int, run_id: int | None, customer: str | None = None) -> Gate:
        """The ticket's gate; `customer` is the identity its channel gave (the sender's address), which binds it."""
        threshold = self.settings.approval_threshold_usd
        vault = Vault(session_factory=self.session_factory, ticket_id=ticket_id) if self.settings.pii_redaction else PlainVault()
        return Gate(
            session_factory=self.session_factory,
            ticket_id=ticket_id,
            run_id=run_id,
            permissions=self.config.permissions,
            store_factory=SqlRetailStore,
            approval_threshold=None if threshold < 0 else threshold,
            max_calls_per_ticket=self.settings.max_tool_calls_per_ticket,
            vault=vault,
            binding=CustomerBinding.for_channel(customer),
        )

    def give_up(self, ticket_id: int, *, reason: str) -> None:
        """Retries are exhausted: record the ticket as failed rather than leave it queued."""
        with transaction(self.session_factory) as db:
            ticket = tickets.get(db=db, ticket_id=ticket_id, lock=True)
            if tickets.is_terminal(ticket):
                return
            if ticket.status != TicketStatus.failed:
                tickets.transition(ticket=ticket, to=TicketStatus.failed, reason=reason)
            audit.record(db=db, ticket_id=ticket.id, kind="status", name="failed", actor="worker", error=reason)

    @staticmethod
    def _validate(ticket: Ticket) -> str | None:
        if not (ticket.body or "").strip():
            return "ticket has no message text"
        if len(ticket.body) > MAX_BODY_CHARS:
            return f"ticket text is {len(ticket.body)} characters; the limit is {MAX_BODY_CHARS}"
        return None

    def _process_locked(self, ticket_id: int, *, celery_task_id: str | None, started: float) -> TicketOutcome:
        work = self._begin(ticket_id, celery_task_id)
        if isinstance(work, TicketOutcome):
            return work
        ticket = work.ticket
        bind(ticket_id=ticket.id, run_id=work.run_id)
        audit_listener.take_failures(work.run_id)  # a new run starts with none (a stale entry under a reused id is not its own)
        token = audit_listener.current_run.set(audit_listener.RunContext(ticket.id, work.run_id))
        try:
            work.recalled = self._recall(ticket)
            decided = self._crew(work)
            self._audited(work)
            reply, note = work.gate.vault.reveal(decided.reply), work.gate.vault.reveal(decided.note)  # the customer and the team see real data
            outcome = self._finish(work, started, status=decided.status, reason=decided.reason, reply=reply, note=note, triage=decided.triage)
            log.info("ticket.processed", status=outcome.status, category=outcome.category, seconds=round(outcome.seconds, 2))
            self._remember(ticket, outcome.status, triage=decided.triage, reply=reply)  # after the outcome is committed: best effort
            return outcome
        except Exception as exc:
            kind = classify_error(exc)
            if kind is TransientError:
                log.warning("ticket.transient_error", error=str(exc))
                try:
                    self._finish(work, started, status=TicketStatus.queued, reason=f"retrying: {exc}", run_status="error", error=str(exc))
                except Exception as finish_exc:  # noqa: BLE001 - the database is still away: the run stays `running` and the retry interrupts it
                    log.warning("ticket.finish_failed", error=f"{type(finish_exc).__name__}: {finish_exc}")
                raise TransientError(str(exc)) from exc
            log.exception("ticket.failed")
            return self._finish(
                work, started, status=TicketStatus.failed, reason=f"{type(exc).__name__}: {exc}", run_status="error", error=f"{type(exc).__name__}: {exc}"
            )
        finally:
            audit_listener.flush()
            audit_listener.current_run.reset(token)
            unbind("ticket_id", "run_id")

    @staticmethod
    def _audited(work: Work) -> None:
        """Every model and tool call of this run has its audit row, or the run does not count: CrewAI's bus writes them
        from its own threads, so a failed write is collected there and raised here, and the ticket retries (the pipeline
        is idempotent: writes already made are replayed from their effect records, never repeated)."""
        if not audit_listener.flush():
            raise AuditWriteFailed(f"run {work.run_id}: audit rows were still being written when the run ended")
        failures = audit_listener.take_failures(work.run_id)
        if failures:
            raise AuditWriteFailed(f"run {work.run_id}: {len(failures)} audit row(s) could not be written ({failures[0]})")

    def _crew(self, work: Work):
        ticket = work.ticket
        if ticket.status == TicketStatus.in_progress and ticket.triage:  # a run starts in_progress only when resuming after approvals
            return self._specialist(work, Triage.model_validate(ticket.triage), history=self._history(ticket.id))
        routed = self._routed(work)
        if routed is not None:
            return self._procedure(work, routed)
        try:
            triage = self.builder.run_phase(task_key="triage", role_key="routing", values={}, work=work)
        except Exception as exc:
            if classify_error(exc) is not ModelOutputError:
                raise
            reason = f"routing model gave no valid triage ({exc})"
            return self._escalate(work, None, reason)
        assert isinstance(triage, Triage)
        # The reply's language is detected from what the customer wrote, not taken from the model's guess.
        triage = triage.model_copy(update={"language": language.detect(work.text, default=triage.language)})
        hits = self._record_triage(ticket, work.run_id, triage)
        if hits:
            return self._escalate(work, triage, "; ".join(str(h) for h in hits))
        return self._specialist(work, triage)

    def _record_triage(self, ticket: Ticket, run_id: int, triage: Triage, confidence_floor: float | None = None) -> list[rules.RuleHit]:
        """Store the triage; the deterministic escalation rules decide whether the ticket goes on or to a person. The
        router's confidence has its own scale, hence its own floor."""
        floor = self.settings.escalation_confidence if confidence_floor is None else confidence_floor
        with transaction(self.session_factory) as db:
            row = tickets.get(db=db, ticket_id=ticket.id, lock=True)
            row.category, row.priority, row.triage = triage.category, triage.priority, triage.model_dump(mode="json")
            hits = rules.escalation_hits(
                db=db, ticket=row, triage=triage, repeat_days=self.settings.repeat_contact_days, repeat_threshold=self.settings.repeat_contact_threshold
            )
            if triage.confidence < floor:
                hits.append(rules.RuleHit("low_confidence", f"{triage.confidence:.2f} < {floor:.2f}"))
            if hits:
                audit.record(db=db, ticket_id=ticket.id, run_id=run_id, kind="rule", name="escalation_rules", actor="pipeline", result=[str(h) for h in hits])
            else:
                tickets.transition(ticket=row, to=TicketStatus.in_progress)
        ticket.category, ticket.priority = triage.category, triage.priority
        return hits

    def _routed(self, work: Work) -> Routed | None:
        """(route, the intents to run) when every intent found has a procedure; otherwise None (the crew takes the ticket).
        Cancelling, returning, exchanging and changing items are one family: customers say "exchange" for a pending order and
        "cancel" for a delivered one, so each item's order status, not the word, decides which of them applies. A billing
        question beside them is answered by the amounts the reply states for each action."""
        if self.procedures is None or self.router is None:
            return None
        ticket, text = work.ticket, work.text
        try:
            routed = self.router.route(f"{ticket.subject or ''}\n{text}".strip())
        except Exception as exc:  # a broken router must not stop tickets: the crew takes them
            if classify_error(exc) is TransientError:
                raise
            log.error("router.failed", error=f"{type(exc).__name__}: {exc}")
            return None
        intents = [str(intent) for intent in routed.intents]
        if "human_handoff" in intents and not HANDOFF.search(conditions.read(text).request):
            intents.remove("human_handoff")  # a person only when the customer asks for one (a fallback's hand-over is the flow's)
        moves = [i for i, wanted in (("change_order_address", address.wants_orders(text)), ("change_default_address", address.wants_default(text))) if wanted]
        if moves:  # an address change: the family of item requests stays only if the rest of the ticket asks for one
            intents = [i for i in intents if i not in ORDER_FAMILY and i != "change_default_address"] + moves
            text = address.without_address_sentences(text)
        cued = any(ORDER_VERBS[intent].search(text) for intent in ("cancel_order", "return_items", "exchange_items"))
        if cued or (moves and ORDER_VERBS["modify_order"].search(text)):
            intents.append("return_items")  # the customer's verbs, a fast first pass beside the router (any member brings the family)
        if set(intents) & ORDER_FAMILY:
            intents = [i for i in intents if i not in ORDER_FAMILY and i != "billing_question"] + [
                i for i in ORDER_FAMILY_ORDER if i in self.procedures.by_intent
            ]
        if cued or moves:  # the customer's own verbs name known requests: the router's vaguer labels beside them add nothing to do
            intents = [i for i in intents if i not in VAGUE] or intents
        return Routed(route=routed, intents=intents, cued=cued or bool(moves)) if self.procedures.covers(intents) else None

    def _procedure(self, work: Work, routed: Routed):
        """Known intents: the procedure flow decides, checks policy, acts through the gate and writes the reply. When the
        customer's own verbs name the request, the router's confidence is not what decides."""
        ticket, raw, route, intents = work.ticket, work.text, routed.route, routed.intents
        triage = Triage.model_validate(
            {
                "category": str(route.category),
                "priority": str(route.priority),
                "language": language.detect(raw),
                "sentiment": str(route.sentiment),
                "summary": f"{', '.join(intents)}: {' '.join((ticket.subject or raw).split())[:120]}",
                "confidence": route.confidence,
            }
        )
        hits = self._record_triage(ticket, work.run_id, triage, confidence_floor=0.0 if routed.cued else self.settings.router_confidence)
        if hits:
            return self._escalate(work, triage, "; ".join(str(h) for h in hits))
        gate, ledger = work.gate, work.ledger
        llm = self.builder.llm_factory.build(tier="cheap", ticket_id=ticket.id, run_id=work.run_id)
        ledger.llms.append(llm)
        ledger.models["procedure"] = llm.model
        with transaction(self.session_factory) as db:
            db.execute(update(CrewRun).where(CrewRun.id == work.run_id).values(process="procedure"))
        if self.procedures is None:  # _routed routes nothing to the procedures without them
            raise RuntimeError("procedures are off: no ticket is routed to them")
        flow = ProcedureFlow.build(gate=gate, llm=llm, procedures=self.procedures, raw_text=raw)
        flow.kickoff(
            inputs={"text": gate.vault.conceal(work.block()), "channel_customer": ticket.customer or "", "language": triage.language, "intents": intents}
        )
        state = flow.state
        with transaction(self.session_factory) as db:
            audit.record(
                db=db,
                ticket_id=ticket.id,
                run_id=work.run_id,
                kind="procedure",
                name="+".join(intents),
                actor="pipeline",
                result={
                    "status": state.status,
                    "reason": state.reason,
                    "customer": state.customer.how if state.customer else None,
                    "outcomes": [
                        {"intent": o.intent, "kind": o.kind, "rule": o.rule, "order": o.action.order_id if o.action else None} for o in state.outcomes
                    ],
                },
            )
        note = f"procedure {'+'.join(intents)}: {state.status}" + (f" ({state.reason})" if state.reason else "")
        return Decision(TicketStatus(state.status), state.reason or None, flow.reply(), note, triage)

    def _history(self, ticket_id: int) -> str:
        """What happened on this ticket before a resumed run: decisions and completed actions."""
        lines = []
        with self.session_factory() as db:
            for approval in approvals.listing(db=db, status=None, ticket_id=ticket_id):
                lines.append(f"- approval #{approval.id} for {approval.action} {approval.arguments}: {approval.status.upper()} by {approval.decided_by}")
            for effect in effects.for_ticket(db=db, ticket_id=ticket_id):
                lines.append(f"- DONE {effect.tool} {effect.arguments}")
        return "\n".join(lines)

    @staticmethod
    def _open_memory(settings: Settings) -> MemoryStore | None:
        try:
            return memory.open_store(settings=settings)
        except MemoryStoreError as exc:  # a misconfigured memory must not stop tickets
            log.error("memory.unavailable", error=str(exc))
            return None

    def _recall(self, ticket: Ticket) -> str:
        """The same customer's earlier tickets, for the crew's context. Memory is best effort: a failure is logged and
        the ticket goes on without it."""
        if self.memory is None or not ticket.customer:
            return ""
        started = time.perf_counter()
        try:
            block = memory.recall_context(
                store=self.memory, settings=self.settings, customer=ticket.customer, query=f"{ticket.subject}\n{ticket.body}", exclude_ticket_id=ticket.id
            )
        except Exception as exc:  # noqa: BLE001 - memory is best-effort: a broken store must not stop tickets
            log.warning("memory.recall_failed", error=f"{type(exc).__name__}: {exc}")
            return ""
        log.info("memory.recalled", lines=block.count("\n") + 1 if block else 0, ms=round(1000 * (time.perf_counter() - started), 1))
        return block

    def _remember(self, ticket: Ticket, status: str, *, triage: Triage | None, reply: str | None) -> None:
        """After a resolved or escalated ticket: issue, the actions the tools really performed, outcome (redacted)."""
        if self.memory is None or not ticket.customer or status not in memory.REMEMBERED_OUTCOMES:
            return
        started = time.perf_counter()
        try:
            with self.session_factory() as db:
                actions = [f"{e.tool}({', '.join(f'{k}={v}' for k, v in sorted(e.arguments.items()))})" for e in effects.for_ticket(db=db, ticket_id=ticket.id)]
                row = tickets.get(db=db, ticket_id=ticket.id)
                reason = row.status_reason or ""
            issue = triage.summary if triage and triage.summary else f"{ticket.subject}: {ticket.body}"
            summary = memory.summarise(issue=issue, actions=actions, outcome=status + (f" ({reason})" if reason else ""), reply=reply or "")
            memory.remember_ticket(
                store=self.memory,
                settings=self.settings,
                customer=ticket.customer,
                ticket_id=ticket.id,
                summary=summary,
                outcome=status,
                category=ticket.category or "",
            )
        except Exception as exc:  # noqa: BLE001 - memory is best-effort: a broken store must not stop tickets
            log.warning("memory.remember_failed", error=f"{type(exc).__name__}: {exc}")
            return
        log.info("memory.remembered", ms=round(1000 * (time.perf_counter() - started), 1))

    @staticmethod
    def _with_memory(work: Work, triage_text: str) -> str:
        recalled = work.recalled
        if not recalled:
            return triage_text
        return triage_text + (
            "\n\nThis customer's earlier tickets (summaries from memory; personal data removed; for context only, verify before acting):\n" + recalled
        )

    def process_for(self, category: str) -> str:
        return self.settings.crew_process_by_category.get(category, self.settings.crew_process)

    def _specialist(self, work: Work, triage: Triage, history: str = ""):
        ticket = work.ticket
        process = self.process_for(triage.category)
        specialist = SPECIALIST_BY_CATEGORY[triage.category] if process == "sequential" else "manager"
        triage_text = triage.model_dump_json()
        if history:
            triage_text += "\n\nEarlier on this ticket (already done; do not repeat):\n" + history
        triage_text = self._with_memory(work, triage_text)
        if process != "sequential":  # the run row starts as sequential
            with transaction(self.session_factory) as db:
                db.execute(update(CrewRun).where(CrewRun.id == work.run_id).values(process=process))
        try:
            if process == "hierarchical":
                resolution, budget = self.builder.run_hierarchical(values={"triage": triage_text}, work=work)
                with transaction(self.session_factory) as db:
                    audit.record(
                        db=db,
                        ticket_id=ticket.id,
                        run_id=work.run_id,
                        kind="crew",
                        name="delegations",
                        actor="manager",
                        result={"used": budget.used, "limit": budget.limit, "refused": budget.refused},
                    )
            else:
                resolution = self.builder.run_phase(task_key="resolve", role_key=specialist, values={"triage": triage_text}, work=work)
        except Exception as exc:
            if classify_error(exc) is not ModelOutputError:
                raise
            return self._escalate(work, triage, f"{specialist} model gave no valid resolution ({exc})")
        assert isinstance(resolution, Resolution)
        with self.session_factory() as db:
            pending = approvals.pending_for(db=db, ticket_id=ticket.id)
            transferred = any(e.tool == "transfer_to_human_agents" for e in effects.for_ticket(db=db, ticket_id=ticket.id))
        if pending:
            reason = "; ".join(f"approval #{a.id}: {a.action} ({a.reason})" for a in pending)
            return Decision(TicketStatus.awaiting_approval, reason, resolution.customer_reply, resolution.internal_note, triage)
        refused = self._refused_for_a_person(work)
        if refused:
            return self._escalate(work, triage, refused, note=resolution.internal_note)
        if resolution.needs_human or transferred:
            reason = resolution.escalation_reason or (f"{specialist} transferred to a human" if transferred else f"{specialist} asked for a human")
            return self._escalate(work, triage, reason, note=resolution.internal_note)
        return Decision(TicketStatus.resolved, None, resolution.customer_reply, resolution.internal_note, triage)

    @staticmethod
    def _refused_for_a_person(work: Work) -> str | None:
        """A run the gate refused a write, or a call on another customer's records, is not resolved on the model's word:
        whatever its reply says, a person looks at it."""
        writes = {name for name, op in operations().items() if op.kind == "write"}
        refused = [r for r in work.gate.refusals if r.hostile or r.tool in writes]
        if not refused:
            return None
        return "the gate refused " + "; ".join(f"{r.tool} ({r.rule})" for r in dict.fromkeys(refused))

    def _escalate(self, work: Work, triage: Triage | None, reason: str, note: str = ""):
        triage_text = self._with_memory(work, triage.model_dump_json() if triage else "(no valid triage)")
        try:
            handoff = self.builder.run_phase(task_key="escalate", role_key="escalation", values={"triage": triage_text, "reason": reason}, work=work)
            assert isinstance(handoff, Handoff)
            summary = f"[{handoff.team}] {handoff.handoff_summary}"
        except Exception as exc:
            if classify_error(exc) is not ModelOutputError:
                raise
            summary = f"[tier2] escalation model gave no valid hand-off ({exc})"
        # The model writes the team's hand-off; the customer gets the holding reply in their language (replies.yaml), which
        # promises nothing and admits nothing, whatever the model would have written.
        reply = holding_reply(self.replies, language.detect(work.text))
        return Decision(TicketStatus.escalated, reason, reply, "\n".join(x for x in (note, summary) if x), triage)

    def _finish(
        self,
        work: Work,
        started: float,
        *,
        status: TicketStatus,
        reason: str | None,
        reply: str | None = None,
        note: str | None = None,
        triage: Triage | None = None,
        run_status: str = "completed",
        error: str | None = None,
    ) -> TicketOutcome:
        seconds = time.perf_counter() - started
        ticket, run_id, ledger = work.ticket, work.run_id, work.ledger
        concealed_reply = work.gate.vault.conceal(reply) if reply else None  # the audit keeps tokens, the message real text
        with transaction(self.session_factory) as db:
            row = tickets.get(db=db, ticket_id=ticket.id, lock=True)
            if TicketStatus(row.status) != status:
                tickets.transition(ticket=row, to=status, reason=reason)
            else:
                row.status_reason = reason
            if reply:
                db.add(Message(ticket_id=row.id, direction="outbound", author="crewdesk", body=reply))
                audit.record(db=db, ticket_id=row.id, run_id=run_id, kind="reply", name="customer_reply", actor="pipeline", result={"body": concealed_reply})
            if note:
                db.add(Message(ticket_id=row.id, direction="internal", author="crewdesk", body=note))
            if reply is not None:
                row.resolution = {"customer_reply": reply, "internal_note": note or "", "status": status.value, "reason": reason}
            costs = sum(estimate_cost(model, t_in, t_out) for model, (t_in, t_out) in ledger.per_model().items())
            db.execute(
                update(CrewRun)
                .where(CrewRun.id == run_id)
                .values(
                    status=run_status,
                    outcome=status.value,
                    error=error,
                    models=ledger.models,
                    tokens_in=ledger.tokens_in,
                    tokens_out=ledger.tokens_out,
                    tokens_cached=ledger.tokens_cached,
                    llm_calls=ledger.calls,
                    llm_seconds=ledger.llm_seconds,
                    cost_usd=costs,
                    latency_s=seconds,
                    finished_at=utcnow(),
                )
            )
            audit.record(
                db=db, ticket_id=row.id, run_id=run_id, kind="status", name=status.value, actor="pipeline", result={"reason": reason} if reason else None
            )
            requeue = False
            if status is TicketStatus.resolved and tickets.last_inbound_id(db=db, ticket_id=row.id) > work.read_up_to:
                # The customer wrote again while the crew worked: answer that too rather than leave it unread.
                tickets.transition(ticket=row, to=TicketStatus.queued, reason="reopened: the customer wrote during the run")
                audit.record(db=db, ticket_id=row.id, run_id=run_id, kind="status", name="reopened", actor="pipeline")
                requeue = True
            audit.seal(db=db, ticket_id=row.id, run_id=run_id)  # the run's chain head into the global seal log
        return TicketOutcome(
            ticket_id=ticket.id,
            run_id=run_id,
            status=status.value,
            category=ticket.category,
            priority=ticket.priority,
            escalation_reason=reason if status is TicketStatus.escalated else None,
            seconds=seconds,
            requeue=requeue,
        )
