"""What a run decides for its ticket: the intent router and the procedures take the requests they know; otherwise
the routing model triages, the escalation rules check the triage, and a specialist crew (or a manager delegating
to one) resolves it, or the ticket is escalated to a person with a holding reply. Pipeline (crews/pipeline.py) runs
these phases inside a run it begins and finishes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from crewdesk import language
from crewdesk.approvals import service as approvals
from crewdesk.audit import service as audit
from crewdesk.db import transaction
from crewdesk.effects import service as effects
from crewdesk.errors import ModelOutputError, TransientError
from crewdesk.logging import get_logger
from crewdesk.routing.schemas import Route
from crewdesk.runs.models import CrewRun
from crewdesk.settings import Settings
from crewdesk.store.operations import operations
from crewdesk.tickets import rules
from crewdesk.tickets import service as tickets
from crewdesk.tickets.models import TicketStatus
from crewdesk.tickets.schemas import Resolution, Triage
from crews.builder import CrewBuilder, Work
from crews.config import SPECIALIST_BY_CATEGORY
from crews.failures import classify_error
from crews.handoff import hand_over
from crews.procedures import address, answers, conditions, payment
from crews.procedures.conditions import HANDOFF
from crews.procedures.decide import VERBS as ORDER_VERBS
from crews.procedures.flow import ITEM_WRITES, ORDER_FAMILY, ORDER_FAMILY_ORDER, ProcedureFlow
from crews.procedures.reading import asks_items
from crews.procedures.replies import holding_reply
from crews.procedures.spec import Procedures
from crews.procedures.state import Outcome

if TYPE_CHECKING:
    from crewdesk.routing.router import Router

log = get_logger(__name__)


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


class TicketPhases:
    """The deciding half of Pipeline, which sets the attributes below: _crew chooses the phases for a ticket, and the
    run finishes with the Decision they return."""

    settings: Settings
    session_factory: sessionmaker[Session]
    builder: CrewBuilder
    procedures: Procedures | None
    router: Router | None  # the intent router; None when the procedures are off
    risk: rules.RiskCheck | None  # the escalation regexes with the risk classifier beside the router; None: the regexes alone
    replies: dict[str, Any]

    def _crew(self, work: Work):
        ticket = work.ticket
        if ticket.status == TicketStatus.in_progress and ticket.triage:  # a run starts in_progress only when resuming after approvals
            return self._specialist(work, Triage.model_validate(ticket.triage), history=self._history(ticket.id))
        resumed = self._answered(work)
        if resumed is not None:
            return resumed
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
        hits = self._record_triage(work, triage)
        if hits:
            return self._escalate(work, triage, "; ".join(str(h) for h in hits))
        return self._specialist(work, triage)

    def _risk_hits(self, work: Work, text: str) -> list[rules.RuleHit] | None:
        """The risk check's hits on `text` (None without a risk check: escalation_hits then scans with the regexes alone),
        the ones that rest on the classifier put to the ticket's model first (rules.check_with_model,
        CREWDESK_RISK_MODEL_CHECK): one yes/no each, audited as decision/risk_checked; below the bar a hit is dropped, and
        a model that cannot answer leaves it. Asked before the ticket's row is locked: a model call takes seconds."""
        if self.risk is None:
            return None
        hits = list(self.risk(text))
        if self.settings.risk_model_check != "on" or not any(rules.model_checked(hit) for hit in hits):
            return hits
        llm = self.builder.llm_factory.build(tier="cheap", ticket_id=work.ticket.id, run_id=work.run_id).within(work.budget)
        work.ledger.llms.append(llm)
        work.ledger.models.setdefault("risk_check", llm.model)
        min_yes = self.settings.risk_model_min_yes
        kept, asked = rules.check_with_model(hits, work.gate.vault.conceal(text), llm, min_yes=min_yes)
        with transaction(self.session_factory) as db:
            for answer in asked:
                audit.record(
                    db=db, ticket_id=work.ticket.id, run_id=work.run_id, kind="decision", name="risk_checked", actor="pipeline", result=answer.record(min_yes)
                )
        return kept

    def _record_triage(self, work: Work, triage: Triage, confidence_floor: float | None = None) -> list[rules.RuleHit]:
        """Store the triage; the deterministic escalation rules decide whether the ticket goes on or to a person. The
        router's confidence has its own scale, hence its own floor."""
        ticket, run_id = work.ticket, work.run_id
        floor = self.settings.escalation_confidence if confidence_floor is None else confidence_floor
        found = self._risk_hits(work, rules.ticket_text(ticket))
        with transaction(self.session_factory) as db:
            row = tickets.get(db=db, ticket_id=ticket.id, lock=True)
            row.category, row.priority, row.triage = triage.category, triage.priority, triage.model_dump(mode="json")
            hits = rules.escalation_hits(
                db=db,
                ticket=row,
                triage=triage,
                repeat_days=self.settings.repeat_contact_days,
                repeat_threshold=self.settings.repeat_contact_threshold,
                risk=None if found is None else (lambda _text: found),
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
        vocabulary, spoken = self.procedures.vocabulary, language.detect(text)
        addresses = address.asks(text, vocabulary, spoken)
        moves = [
            i
            for i, wanted in (
                ("change_order_address", addresses.orders or address.wants_orders(text)),
                ("change_default_address", addresses.default or address.wants_default(text)),
                ("change_order_payment", payment.wants_change(f"{ticket.subject or ''}\n{text}", vocabulary, spoken)),
            )
            if wanted
        ]
        if moves:  # an address or payment change: the family of item requests stays only if the rest of the ticket asks for one
            intents = [i for i in intents if i not in ORDER_FAMILY and i != "change_default_address"] + moves
            text = address.without_address_sentences(text)
            if "change_order_payment" in moves:
                text = payment.without_payment_clauses(text, vocabulary, spoken)
        # the customer's own words name a request: the old English cues, or the vocabulary's in the ticket's language
        cued = any(ORDER_VERBS[intent].search(text) for intent in ("cancel_order", "return_items", "exchange_items")) or asks_items(text, vocabulary, spoken)
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
        hits = self._record_triage(work, triage, confidence_floor=0.0 if routed.cued else self.settings.router_confidence)
        if hits:
            return self._escalate(work, triage, "; ".join(str(h) for h in hits))
        return self._run_flow(work, triage, intents, request=work.gate.vault.conceal(work.block()), raw=raw)

    def _run_flow(
        self, work: Work, triage: Triage, intents: list[str], *, request: str, raw: str, answer: answers.Answered | None = None, turn: int = 0
    ) -> Decision:
        """The procedure flow over the request (with the customer's answer, when resumed), with the run's one LLM for its
        decisions, then its decision: resolved, a question the ticket waits on (recorded with what the flow established,
        so the answer resumes it), or a person."""
        ticket, gate = work.ticket, work.gate
        if self.procedures is None:  # _routed routes nothing to the procedures without them
            raise RuntimeError("procedures are off: no ticket is routed to them")
        llm = self.builder.llm_factory.build(tier="cheap", ticket_id=ticket.id, run_id=work.run_id).within(work.budget)
        work.ledger.llms.append(llm)
        work.ledger.models["procedure"] = llm.model
        with transaction(self.session_factory) as db:
            db.execute(update(CrewRun).where(CrewRun.id == work.run_id).values(process="procedure"))
        flow = ProcedureFlow.build(
            gate=gate,
            llm=llm,
            procedures=self.procedures,
            raw_text=raw,
            arbiter=self.settings.reading_arbiter,
            model_choices=self.settings.model_choices,
            answer=answer,
            confirm_writes=self.settings.confirm_writes == "policy",
            write_check=self.settings.write_check,
            model_reading=self.settings.model_reading,
            min_yes=self.settings.write_check_min_yes,
            order_min_yes=self.settings.order_check_min_yes,
        )
        try:
            flow.kickoff(inputs={"text": request, "channel_customer": ticket.customer or "", "language": triage.language, "intents": intents})
        except Exception as exc:  # a decision the model could not give (garbage, the run's calls or time used up): a person decides
            if classify_error(exc) is not ModelOutputError:
                raise
            return self._escalate(work, triage, f"procedure {'+'.join(intents)}: the model gave no valid decision ({exc})")
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
                    "turn": turn,
                    "outcomes": [
                        {"intent": o.intent, "kind": o.kind, "rule": o.rule, "order": o.action.order_id if o.action else None} for o in state.outcomes
                    ],
                },
            )
        note = f"procedure {'+'.join(intents)}: {state.status}" + (f" ({state.reason})" if state.reason else "")
        if state.status != TicketStatus.waiting_on_customer:
            return Decision(TicketStatus(state.status), state.reason or None, flow.reply(), note, triage)
        if turn >= self.settings.conversation_max_questions:  # asked as often as allowed: a person reads the answer to this one
            reason = f"{state.reason} (the customer was asked {turn} time(s) already)" if turn else state.reason
            return Decision(TicketStatus.escalated, reason, flow.reply(), note, triage)
        # recorded with the run's end (crews/run_record.finish_run), in the transaction that sets the ticket waiting
        work.asking = {
            "request": request,
            "intents": intents,
            "triage": triage.model_dump(mode="json"),
            "user_id": state.customer.user_id if state.customer else "",
            "questions": [o.model_dump(mode="json") for o in state.questions],
            "settled": answer.settled() if answer is not None else {},  # what earlier answers settled: not asked again
        }
        return Decision(TicketStatus.waiting_on_customer, state.reason or None, flow.reply(), note, triage)

    def _answered(self, work: Work) -> Decision | None:
        """A ticket waiting on the customer, and they answered: the flow resumes from the question's recorded state with
        the answer read against what was asked (crews/procedures/answers.py). The answer passes the risk check as any
        ticket does. None when there is no open question with an answer (a first run, or a redelivered one)."""
        if self.procedures is None:
            return None
        ticket = work.ticket
        with self.session_factory() as db:
            question = tickets.open_question(db=db, ticket_id=ticket.id)
            said = tickets.answers(db=db, question=question) if question is not None else []
            if question is None or not said:
                return None
            state, turn, question_id = dict(question.state), question.turn, question.id
            written = {str(e.arguments.get("order_id")) for e in effects.for_ticket(db=db, ticket_id=ticket.id) if e.tool in ITEM_WRITES}
            answer_raw = tickets.without_our_words(db=db, ticket_id=ticket.id, text="\n\n".join(m.body for m in said))
        triage = Triage.model_validate(state["triage"])
        checked = self._risk_hits(work, answer_raw)
        hits = checked if checked is not None else rules.scan_text(answer_raw)
        work.answering = (question_id, said[-1].id)  # marked answered when this run ends, with its status
        with transaction(self.session_factory) as db:
            row = tickets.get(db=db, ticket_id=ticket.id, lock=True)
            audit.record(
                db=db,
                ticket_id=ticket.id,
                run_id=work.run_id,
                kind="conversation",
                name="answered",
                actor="pipeline",
                result={"question": question_id, "turn": turn, "messages": len(said), "rules": [str(h) for h in hits]},
            )
            if not hits:
                tickets.transition(ticket=row, to=TicketStatus.in_progress)
        if hits:
            return self._escalate(work, triage, "; ".join(str(h) for h in hits))
        gate = work.gate
        vocabulary, spoken = self.procedures.vocabulary, str(triage.language)
        answer_text = gate.vault.conceal(answer_raw)
        answer = answers.read(
            answer_text,
            [Outcome.model_validate(q) for q in state["questions"]],
            vocabulary,
            spoken,
            user_id=str(state.get("user_id") or ""),
            written=written,
        )
        settled_now = answer.settled_anything  # before what earlier answers settled is added
        answer.carry(state.get("settled") or {})
        with transaction(self.session_factory) as db:
            audit.record(
                db=db,
                ticket_id=ticket.id,
                run_id=work.run_id,
                kind="decision",
                name="answer_read",
                actor="procedure",
                result={"polarity": answer.polarity, **answer.settled()},
            )
        request, raw = state["request"], gate.vault.reveal(state["request"])
        if not settled_now or any(q.get("kind") in ("not_found", "unclear") for q in state["questions"]):
            # a detail the request lacked (an order number, a method, an address), or an answer that settled none of the
            # choices: the next run reads it beside the request. An answer that settled them is not read as a request.
            request = f"{request}\n\n--- The customer's answer to our question ---\n{answer_text}"
            raw = f"{raw}\n\n{answer_raw}"
        return self._run_flow(work, triage, list(state["intents"]), request=request, raw=raw, answer=answer, turn=turn)

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
        """A person takes the ticket: the hand-over summary from a template (crews/handoff.py) with at most one short model
        call, never a crew; the customer gets the holding reply in their language (replies.yaml), which promises nothing
        and admits nothing."""
        spoken = language.detect(work.text)
        llm = None
        if self.settings.handoff_model_summary:
            llm = self.builder.llm_factory.build(tier="cheap", ticket_id=work.ticket.id, run_id=work.run_id).within(work.budget)
            work.ledger.llms.append(llm)
            work.ledger.models.setdefault("handoff", llm.model)
        with self.session_factory() as db:
            done = [f"{e.tool} {e.arguments.get('order_id', '')}".strip() for e in effects.for_ticket(db=db, ticket_id=work.ticket.id)]
        handover = hand_over(
            work=work,
            triage=triage,
            reason=reason,
            llm=llm,
            language=spoken,
            done=[d for d in done if not d.startswith("transfer_to_human")],
            actor=self.builder.config.roles["escalation"].role,
        )
        reply = holding_reply(self.replies, spoken)
        return Decision(TicketStatus.escalated, reason, reply, "\n".join(x for x in (note, handover.note) if x), triage)
