"""Process one ticket: triage, deterministic rules, a specialist or escalation, then persist run and result.

Safe to call twice for the same ticket (duplicate delivery, redelivery after a crash): a finished ticket is
returned as is, a ticket held by another worker is left to it, and a run cut short by a dead worker is
marked interrupted and started again.

Pipeline runs a ticket: the per-ticket lock, the run's audit context, memory before and after, and what a failure
means. What the run decides is in crews/phases.py, the run's rows in crews/run_record.py, and how a failure is told
apart in crews/failures.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.audit import service as audit
from crewdesk.connectors.builtin_store import SqlRetailStore
from crewdesk.db import transaction
from crewdesk.effects import service as effects
from crewdesk.errors import AuditWriteFailed, TransientError
from crewdesk.llm.base import CallBudget
from crewdesk.llm.factory import LLMFactory
from crewdesk.logging import bind, get_logger, unbind
from crewdesk.memory import service as memory
from crewdesk.memory.base import MemoryBackend, MemoryBackendError
from crewdesk.runs.models import RunStatus
from crewdesk.settings import Settings
from crewdesk.tickets import rules
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import Ticket, TicketStatus
from crewdesk.tickets.schemas import TicketOutcome, Triage
from crews import audit_listener
from crews.builder import CrewBuilder, Work
from crews.config import CrewConfig, load_config
from crews.failures import classify_error
from crews.phases import TicketPhases
from crews.procedures.policy import RULES as POLICY_RULES
from crews.procedures.spec import Procedures, load_procedures, load_replies
from crews.run_record import begin_run, finish_run
from tools.gate import Gate, GateFactory

log = get_logger(__name__)

_LOCK_NAMESPACE = 0x6372_6577_0000  # "crew" in the high bits keeps our advisory locks apart from others'


def build_router(settings: Settings, llm_factory: LLMFactory):
    """The intent router the settings ask for (crewdesk/routing): MiniLM over labelled examples, optionally with the model."""
    from crewdesk.routing.router import build_router as build

    llm = llm_factory.build(tier="cheap") if settings.router != "embedding" else None
    return build(cache_dir=settings.routing_cache, llm=llm, design=settings.router)


def build_risk(settings: Settings) -> rules.RiskCheck:
    """The combined risk check: the escalation regexes, then the risk classifier (loaded with the first ticket)."""
    from crewdesk.routing.risk import RiskClassifier

    return rules.risk_check(RiskClassifier(cache_dir=settings.routing_cache))


class TicketBusy(Exception):
    """Another worker holds this ticket."""


class Pipeline(TicketPhases):
    def __init__(
        self,
        *,
        settings: Settings,
        session_factory: sessionmaker[Session],
        llm_factory: LLMFactory,
        config: CrewConfig | None = None,
        router=None,
        risk: rules.RiskCheck | None = None,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.config = config or load_config(settings.agents_dir, settings.tasks_dir)
        self.gates = GateFactory(settings=settings, session_factory=session_factory, permissions=self.config.permissions, store_factory=SqlRetailStore)
        self.replies = load_replies(settings.tasks_dir / "procedures")
        self.procedures: Procedures | None = None
        if settings.procedures:
            self.procedures = load_procedures(settings.tasks_dir / "procedures", policy_rules=set(POLICY_RULES), roles=set(self.config.roles))
        self.router = router if router is not None or not settings.procedures else build_router(settings, llm_factory)
        # Risk (legal, security, data loss, self-harm, threats) beside the intents: the regexes as a fast first pass, the
        # MiniLM classifier over the same embedder for plain wording (crewdesk/tickets/rules.py). With the router it
        # builds; a caller that brings its own router brings its own risk check, or gets the regexes alone.
        self.risk = risk if risk is not None or router is not None or not settings.procedures else build_risk(settings)
        if self.risk is not None and risk is None:
            # Its exemplars' vectors now, as the router's above (read from the cache under CREWDESK_HOME, or embedded
            # once: about a minute on one thread for 1,600 exemplars). Left to the first ticket, that minute was spent
            # inside the ticket's run budget (CREWDESK_RUN_MAX_SECONDS) and it went to a person before any model call.
            self.risk("warm up")
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

    def gate(self, *, ticket_id: int, run_id: int | None, customer: str | None = None) -> Gate:
        """The ticket's gate; `customer` is the identity its channel gave (the sender's address), which binds it."""
        return self.gates.gate(ticket_id=ticket_id, run_id=run_id, customer=customer)

    def give_up(self, ticket_id: int, *, reason: str) -> None:
        """Retries are exhausted: record the ticket as failed rather than leave it queued."""
        with transaction(self.session_factory) as db:
            ticket = tickets.get(db=db, ticket_id=ticket_id, lock=True)
            if tickets.is_terminal(ticket):
                return
            if ticket.status != TicketStatus.failed:
                tickets.transition(ticket=ticket, to=TicketStatus.failed, reason=reason)
            audit.record(db=db, ticket_id=ticket.id, kind="status", name="failed", actor="worker", error=reason)

    def _process_locked(self, ticket_id: int, *, celery_task_id: str | None, started: float) -> TicketOutcome:
        work = begin_run(self.session_factory, ticket_id, celery_task_id, gate=self.gate)
        if isinstance(work, TicketOutcome):
            return work
        ticket = work.ticket
        work.budget = CallBudget(max_calls=self.settings.run_max_model_calls, seconds=self.settings.run_max_seconds)
        bind(ticket_id=ticket.id, run_id=work.run_id)
        audit_listener.take_failures(work.run_id)  # a new run starts with none (a stale entry under a reused id is not its own)
        token = audit_listener.current_run.set(audit_listener.RunContext(ticket.id, work.run_id))
        try:
            work.recalled = self._recall(ticket)
            decided = self._crew(work)
            self._audited(work)
            reply, note = work.gate.vault.reveal(decided.reply), work.gate.vault.reveal(decided.note)  # the customer and the team see real data
            outcome = finish_run(
                self.session_factory, work, started, status=decided.status, reason=decided.reason, reply=reply, note=note, triage=decided.triage
            )
            log.info("ticket.processed", status=outcome.status, category=outcome.category, seconds=round(outcome.seconds, 2))
            self._remember(ticket, outcome.status, triage=decided.triage, reply=reply)  # after the outcome is committed: best effort
            return outcome
        except Exception as exc:
            kind = classify_error(exc)
            if kind is TransientError:
                log.warning("ticket.transient_error", error=str(exc))
                try:
                    finish_run(
                        self.session_factory, work, started, status=TicketStatus.queued, reason=f"retrying: {exc}", run_status=RunStatus.error, error=str(exc)
                    )
                except Exception as finish_exc:  # noqa: BLE001 - the database is still away: the run stays `running` and the retry interrupts it
                    log.warning("ticket.finish_failed", error=f"{type(finish_exc).__name__}: {finish_exc}")
                raise TransientError(str(exc)) from exc
            log.exception("ticket.failed")
            return finish_run(
                self.session_factory,
                work,
                started,
                status=TicketStatus.failed,
                reason=f"{type(exc).__name__}: {exc}",
                run_status=RunStatus.error,
                error=f"{type(exc).__name__}: {exc}",
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

    @staticmethod
    def _open_memory(settings: Settings) -> MemoryBackend | None:
        try:
            return memory.open_backend(settings=settings)
        except MemoryBackendError as exc:  # a misconfigured memory must not stop tickets
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
                backend=self.memory, settings=self.settings, customer=ticket.customer, query=f"{ticket.subject}\n{ticket.body}", exclude_ticket_id=ticket.id
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
                backend=self.memory,
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
