"""One ticket's known intents carried out as a CrewAI Flow with typed state: identify the customer, read their orders,
decide which items each request applies to, check the store's policy, act through the gate, and answer with the facts."""

from __future__ import annotations

import re
from typing import ClassVar

from crewai.flow.flow import Flow, listen, router, start
from pydantic import PrivateAttr

from crewdesk.connectors.base import StoreError
from crewdesk.errors import ModelOutputError
from crewdesk.llm.base import CrewdeskLLM
from crews.procedures import address, check, conditions, decide, extract, facts, nearest, payment, policy, price, reading, variants, wording
from crews.procedures.answers import Answered, key
from crews.procedures.replies import compose
from crews.procedures.spec import Procedures, ProcedureSpec
from crews.procedures.state import Action, Customer, Item, Order, Outcome, ProcedureState
from tools.gate import Gate, ToolDenied

MAX_FALLBACK_DEPTH = 4
# The writes on an order's items: the store takes one of them per order.
ITEM_WRITES = frozenset({"cancel_pending_order", "modify_pending_order_items", "return_delivered_order_items", "exchange_delivered_order_items"})
# The outcomes that keep a ticket from "resolved" (conclude): something was not done, or the customer is asked.
NOT_DONE = frozenset({"failed", "not_found", "ambiguous", "unclear", "confirm", "propose", "refused", "handed_over"})
# Of those, the ones that are a question to the customer: a ticket whose every open point is one waits on their answer.
ASKING = frozenset({"not_found", "ambiguous", "unclear", "confirm", "propose"})
# Open points that hand the ticket to a person at once, even with writes stated for the customer's yes.
WAIT_NOT = frozenset({"handed_over", "failed"})
# Cancelling, returning, exchanging and changing items are one family: each item's order status decides which applies.
ORDER_FAMILY_ORDER = decide.ORDER_OF
ORDER_FAMILY = frozenset(ORDER_FAMILY_ORDER)
# Lines of a ticket: an entry of a list, or a sentence.
_LINES = re.compile(r"\n|;|(?<=[.!?])\s+")


def _names_order(line: str, order: Order) -> bool:
    """The line names the order by its number (an entry of a list of orders; a product named on a line of a story
    says nothing of which reason is whose)."""
    return order.order_id.lstrip("#") in line


def _plan_key(chosen: dict[str, list[Item]]) -> frozenset[tuple[str, str, str]]:
    return frozenset((intent, i.order_id, i.item_id) for intent, items in chosen.items() for i in items)


def _only(customer: Customer, items: list[Item]) -> Customer:
    """The customer with only these of their items in their orders (a fallback's scope, the items an answer named)."""
    keep = {key(i) for i in items}
    return customer.model_copy(update={"orders": [o.model_copy(update={"items": [i for i in o.items if key(i) in keep]}) for o in customer.orders]})


def _resolves(kinds: set[str]) -> bool:
    """Outcomes that conclude() calls `resolved`: nothing waits for a person's approval and nothing is left undone."""
    return "pending_approval" not in kinds and not kinds & NOT_DONE


def _why(o: Outcome) -> str:
    """One open point of a ticket, for its status reason."""
    return (
        f"{o.intent}: {o.kind}"
        + (f" ({o.rule})" if o.rule else "")
        + (f" ({o.detail['error']})" if "error" in o.detail else "")
        + (f" ({', '.join(i.label() + ' ' + i.order_id for i in o.items)})" if o.kind == "ambiguous" else "")
        + (f" ({o.detail['said'][:80]!r})" if o.kind == "unclear" else "")
        + (f" ({o.action.tool} {o.action.order_id})" if o.kind == "propose" and o.action is not None else "")
    )


class ProcedureFlow(Flow[ProcedureState]):
    """Built per ticket with its gate (governance, PII vault, audit) and one LLM for its decisions."""

    _gate: Gate = PrivateAttr()
    _llm: CrewdeskLLM = PrivateAttr()
    _procedures: Procedures = PrivateAttr()
    _raw_text: str = PrivateAttr(default="")
    _about: dict = PrivateAttr(default_factory=dict)  # item -> the clauses that ask about it (reading.ItemReading.about)
    _arbiter: str = PrivateAttr(default="reader")  # where the two readings differ: reader | model | ask
    _unresolved: list = PrivateAttr(default_factory=list)  # clauses the reader found a request but no item in
    _model_choices: str = PrivateAttr(default="confirm")  # confirm | act: what is done with items the model chose
    _ties: dict = PrivateAttr(default_factory=dict)  # order -> variant choices the customer's words leave open
    _nearest: dict = PrivateAttr(default_factory=dict)  # order -> (item, variants.Nearest): changes the customer did not ask for
    _answer: Answered | None = PrivateAttr(default=None)  # a resumed ticket: what the customer's answer settled
    _withdrawn: list = PrivateAttr(default_factory=list)  # proposals the customer said no to: left as they are
    _confirm_writes: bool = PrivateAttr(default=False)  # the procedures marked confirm: each write is stated and waits for a yes
    _write_check: str = PrivateAttr(default="off")  # model | audit | off: the model's yes/no per item of a write made unasked (check.py)
    _min_yes: float = PrivateAttr(default=0.3)  # an item of a write below it is doubted
    _order_min_yes: float = PrivateAttr(default=0.5)  # a named open order at or above it was asked about
    _checks_left: int = PrivateAttr(default=check.MAX_CHECKED)
    _model_reading: str = PrivateAttr(default="off")  # cross | audit | off: the model's typed reading against the planned writes (extract.py)

    @classmethod
    def build(
        cls,
        *,
        gate: Gate,
        llm: CrewdeskLLM,
        procedures: Procedures,
        raw_text: str,
        arbiter: str = "reader",
        model_choices: str = "confirm",
        answer: Answered | None = None,
        confirm_writes: bool = False,
        write_check: str = "off",
        model_reading: str = "off",
        min_yes: float = 0.3,
        order_min_yes: float = 0.5,
    ) -> ProcedureFlow:
        """answer: the ticket is resumed; the customer answered the question its last run asked (crews/procedures/answers.py)."""
        flow = cls(suppress_flow_events=True)  # the audit records decisions, tool calls and outcomes, not flow lifecycle noise
        flow._gate, flow._llm, flow._procedures, flow._raw_text, flow._arbiter = gate, llm, procedures, raw_text, arbiter
        flow._model_choices, flow._answer, flow._confirm_writes = model_choices, answer, confirm_writes
        flow._write_check, flow._min_yes, flow._order_min_yes = write_check, min_yes, order_min_yes
        flow._model_reading = model_reading
        return flow

    def _stated_first(self, intent: str) -> bool:
        """This procedure's writes are stated to the customer and made only on their yes (its `confirm:` policy)."""
        spec = self._procedures.by_intent.get(intent)
        return self._confirm_writes and spec is not None and spec.confirm

    def _confirm_reading(self, intents: list[str]) -> bool:
        """Items the model chose are put to the customer before anything is planned (model_choices=confirm), unless every
        write they lead to is stated whole and confirmed anyway: one question, with the whole write, not two."""
        return self._model_choices == "confirm" and not (intents and all(self._stated_first(i) for i in intents))

    def _confirmed(self, items: list[Item]) -> bool:
        """The customer said yes to these items (a resumed ticket's answer to our confirmation)."""
        return self._answer is not None and bool(items) and all(key(i) in self._answer.yes for i in items)

    def _declined(self, intent: str, items: list[Item], tool: str) -> bool:
        """The customer said no to this proposal: it is left as it is, said so in the reply, and not asked again."""
        if self._answer is None or not items or not all(key(i) in self._answer.no for i in items):
            return False
        self._gate.audit(kind="decision", name="customer_declined", actor="procedure", arguments={"tool": tool, "items": [i.label() for i in items]})
        self._withdrawn.append(Outcome(intent=intent, kind="withdrawn", items=items, detail={"tool": tool}))
        return True

    def _specs(self) -> list[ProcedureSpec]:
        return [self._procedures.by_intent[intent] for intent in self.state.intents]

    @start()
    def identify(self) -> None:
        specs = self._specs()
        reader = next((s for s in specs if s.choose != "none"), specs[0])  # a role that may read the store (not the hand-over's)
        lookup = facts.Lookup(self._gate, reader.role)
        # A resumed ticket proves the customer again, from the same request (each run's gate binds only what it proved);
        # someone else than the customer the question was put to is nobody this conversation knows.
        found = facts.identify(lookup, text=self.state.text, raw_text=self._raw_text, channel_customer=self.state.channel_customer)
        if found is not None and self._answer is not None and self._answer.user_id and found[0] != self._answer.user_id:
            self._gate.audit(kind="decision", name="customer_changed", actor="procedure", arguments={"asked": self._answer.user_id, "found": found[0]})
            found = None
        if found is not None:
            customer = facts.load_customer(lookup, user_id=found[0], how=found[1])
            if self._answer is not None and self._answer.written:  # an order this ticket already wrote is settled: not planned again
                customer = customer.model_copy(update={"orders": [o for o in customer.orders if o.order_id not in self._answer.written]})
            self.state.customer = customer

    @router(identify)
    def known(self) -> str:
        return "identified" if self.state.customer is not None else "unknown"

    @listen("identified")
    def act(self) -> None:
        """Plan every requested write first, apply the customer's fallbacks to what cannot be done, then write: the store
        allows one exchange or change per order, so an order's write must be whole before it is made."""
        decide.LANGUAGE.set(self.state.language)  # the catalogue's words are searched in the ticket's language and English
        specs = self._specs()
        item_specs = [s for s in specs if s.choose == "items"]
        plan = self._plan_addresses([s for s in specs if s.choose == "address"])  # first: the store changes the address only of an untouched order
        plan += self._plan_payments([s for s in specs if s.choose == "payment"])  # before items: an item change adds a payment
        request = self.state.text
        if item_specs:
            reading = conditions.read(self.state.text)
            request = reading.request
            items_plan = self._plan(item_specs, text=reading.request)
            if plan and all(o.kind == "not_found" and not o.items for o in items_plan):
                items_plan = []  # an address request beside it, and no item named: the items were never meant
            plan += self._apply_fallbacks(items_plan, reading, [f for f in reading.fallbacks if f.anchor not in {g.index for g in reading.fallbacks}], depth=0)
        plan = self._hold_for_conditions(self._hold_conflicts(self._hold_unsettled_orders(self._apply_price_conditions(plan))))
        plan = self._cross_read(plan)
        for outcome in [self._write_checked(o) for planned in plan for o in self._stated(planned, text=request)]:
            if outcome.kind == "planned" and outcome.action is not None:
                self.state.actions.append(outcome.action)
                self.state.outcomes.append(self._write(outcome.action))
            elif outcome.kind == "handoff_wanted":
                self._hand_over(self._procedures.by_intent.get("human_handoff") or specs[0], outcome.detail["summary"])
            else:
                self.state.outcomes.append(outcome)
        written = address.written(self._raw_text)
        if written is not None and not any(s.choose == "address" for s in specs):  # an address no request was read for: ask
            self.state.outcomes.append(Outcome(intent=specs[0].intent, kind="unclear", detail={"said": address.label(written)}))
        for spec in specs:
            if spec.intent == "order_status":
                self._answer_status(spec)
            elif spec.tool == "transfer_to_human_agents" and not any(o.kind == "handed_over" for o in self.state.outcomes):
                self._hand_over(spec, "The customer asked for a person.")
        self.state.outcomes.extend(self._withdrawn)
        self.state.outcomes.extend(self._uncovered(specs))
        self.state.outcomes.extend(self._unacted_orders(specs))

    # Which procedures carry out each kind of request the reader finds in a clause.
    COVERS: ClassVar[dict[str, set[str]]] = {
        "cancel": {"cancel_order"},
        "return": {"return_items"},
        "change": {"exchange_items", "modify_order"},
        "address_orders": {"change_order_address"},
        "address_default": {"change_default_address"},
        "payment": {"change_order_payment"},
    }

    def _uncovered(self, specs: list[ProcedureSpec]) -> list[Outcome]:
        """Verify before "resolved": every request the customer's words make (in the vocabulary's words, clause by
        clause, not hedged, conditional or denied) must have an outcome of a procedure that carries it out: done,
        refused, asked or handed over. A request nothing was done about is quoted back as a question, so a ticket whose
        other requests were done is never called resolved with one forgotten."""
        vocabulary, language = self._procedures.vocabulary, self.state.language
        touched = {o.intent for o in self.state.outcomes}
        intent = specs[0].intent if specs else ""
        missing: list[Outcome] = []
        asked, said = address.asks(self._raw_text, vocabulary, language), address.mentioned(self._raw_text, vocabulary, language)
        for kind, wanted in (("address_orders", asked.orders or said.orders), ("address_default", asked.default or said.default)):
            if wanted and not touched & self.COVERS[kind]:
                missing.append(Outcome(intent=intent, kind="unclear", detail={"said": "", "why": "uncovered", "what": "address"}))
        read = conditions.read(self.state.text)
        body = self._request_body()
        if payment.wants_change(body, vocabulary, language) and not touched & self.COVERS["payment"]:
            missing.append(Outcome(intent=intent, kind="unclear", detail={"said": "", "why": "uncovered", "what": "payment"}))
        # the customer's own alternatives ("if that is not possible, cancel the whole order") may carry a request out
        # with another procedure of the order family
        alternatives = bool(read.fallbacks or price.read(body, vocabulary, language))
        # the customer is already asked about their items (which ones, or to confirm): the item requests are in that question
        asking = any(o.intent in ORDER_FAMILY and o.kind in ("not_found", "unclear", "ambiguous", "confirm") for o in self.state.outcomes)
        alternatives = alternatives or asking
        everything = [i for o in self.state.customer.orders for i in o.items] if self.state.customer else []
        for clause in reading.request_clauses(body, vocabulary, language):
            if payment.asks_payment(clause.text, vocabulary, language):
                continue
            kinds = [k for k in reading.REQUESTS if k in clause.kinds]
            covers = [ORDER_FAMILY if alternatives else self.COVERS[k] for k in kinds]
            named = {i.order_id for i in decide.mentioned_items(everything, clause.text)} | (
                decide.named_orders(clause.text) & {o.order_id for o in self.state.customer.orders} if self.state.customer else set()
            )
            # a request that names items is carried out (or answered) on their orders, by a procedure of its kind
            if kinds and not any(touched & c and (not named or named & self._reached(c)) for c in covers):
                missing.append(Outcome(intent=intent, kind="unclear", detail={"said": clause.text, "why": "uncovered"}))
        if missing:
            self._gate.audit(
                kind="decision", name="uncovered_requests", actor="procedure", arguments={"said": [o.detail["said"][:120] or o.detail["what"] for o in missing]}
            )
        return missing

    def _unacted_orders(self, specs: list[ProcedureSpec]) -> list[Outcome]:
        """Verify before "resolved": an open order the customer's words name (by its items or its number) that nothing
        was done about is put to the model as one yes/no question (check.py): does the customer ask for a change to it?
        A yes keeps the ticket from `resolved` and asks the customer what they want for that order. Only asked when the
        ticket would otherwise be resolved (anything else already answers the customer with a question or a person)."""
        if self._write_check == "off" or self.state.customer is None or not _resolves({o.kind for o in self.state.outcomes}):
            return []
        body = self._request_body()
        reached = {i.order_id for o in self.state.outcomes for i in o.items} | {o.action.order_id for o in self.state.outcomes if o.action}
        reached |= {str(o.detail.get("order", "")) for o in self.state.outcomes}
        orders = self.state.customer.orders
        named = {i.order_id for i in decide.mentioned_items([i for o in orders for i in o.items], body)} | decide.named_orders(body)
        open_orders = [o for o in orders if o.order_id in named and o.order_id not in reached and o.status in check.OPEN]
        missing: list[Outcome] = []
        for order in open_orders[: check.MAX_ORDERS]:
            p = check.order_verdict(self._llm, text=self.state.text, order=order)
            arguments = {"order_id": order.order_id, "p_yes": round(p, 3), "min_yes": self._order_min_yes, "mode": self._write_check}
            self._gate.audit(kind="decision", name="order_checked", actor="procedure", arguments=arguments)
            if p >= self._order_min_yes and self._write_check == "model":
                items = ", ".join(i.name for i in order.items)
                detail = {"said": "", "why": "uncovered", "what": "order", "order": order.order_id, "items": items}
                missing.append(Outcome(intent=specs[0].intent if specs else "", kind="unclear", detail=detail))
        return missing

    def _reached(self, intents: set[str] | frozenset[str]) -> set[str]:
        """The orders an outcome of these procedures is about (done, refused, asked or handed over)."""
        outcomes = [o for o in self.state.outcomes if o.intent in intents]
        return {i.order_id for o in outcomes for i in o.items} | {o.action.order_id for o in outcomes if o.action}

    # -- planning -------------------------------------------------------------------------------------------------------

    def _request_body(self) -> str:
        """The ticket's body without the customer's fallbacks ("if that is not possible, ..."): what asks first."""
        return reading.split_ticket(conditions.read(self.state.text).request)[1] or self._raw_text

    def _hold_for_conditions(self, plan: list[Outcome]) -> list[Outcome]:
        """A request made under a condition nothing here can check ("if you ask me to confirm, only exchange the
        lamp", "if the tablet is returned, also cancel the charger") may change what the customer wants: nothing is
        written; the planned writes are put to the customer to confirm, beside their condition quoted back. Fallbacks,
        price conditions, courtesies and conditions the policy checks itself are read elsewhere and hold nothing."""
        vocabulary, language = self._procedures.vocabulary, self.state.language
        body = self._request_body()
        priced = [c.text for c in price.read(body, vocabulary, language)]
        held = [s for s in reading.conditional_requests(body, vocabulary, language) if not any(p in s for p in priced)]
        if not held:
            return plan
        planned = [i for o in plan if o.kind == "planned" and o.action is not None for i in o.action.items]
        if self._confirmed(planned):  # asked under that condition, the customer said yes: it is written
            return plan
        if planned and all(
            self._declined(o.intent, o.action.items, o.action.tool) for o in plan if o.kind == "planned" and o.action is not None
        ):  # and they said no: nothing is written
            return [o for o in plan if o.kind != "planned"]
        self._gate.audit(kind="decision", name="unchecked_condition", actor="procedure", arguments={"said": [s[:120] for s in held]})
        intent = plan[0].intent if plan else ""
        out = [Outcome(intent=intent, kind="unclear", detail={"said": s, "why": "condition"}) for s in held]
        for outcome in plan:
            action = outcome.action
            if outcome.kind == "planned" and action is not None:
                out.append(Outcome(intent=outcome.intent, kind="confirm", items=action.items, action=action, detail={"tool": action.tool}))
            else:
                out.append(outcome)
        return out

    def _plan_addresses(self, specs: list[ProcedureSpec]) -> list[Outcome]:
        if not specs:
            return []
        customer, raw = self.state.customer, self._raw_text
        asked = address.asks(raw, self._procedures.vocabulary, self.state.language)
        found = address.target(raw, customer, to_account=asked.to_account)
        if found is None:
            found = address.target(self.state.text, customer, to_account=asked.to_account)
        if found is None:
            return [Outcome(intent=specs[0].intent, kind="not_found", detail={"what": "address"})]
        new, source = self._gate.vault.conceal(found[0]), found[1]  # the store's addresses come back tokenised, as this one now is
        plan: list[Outcome] = []
        for spec in specs:
            if spec.tool == "modify_pending_order_address":
                orders, by_model = address.orders_to_change(llm=self._llm, text=raw, customer=customer, new=new, source=source)
                if by_model and any(self._declined(spec.intent, list(o.items), spec.tool) for o in orders):
                    continue
                if by_model and self._confirm_reading([spec.intent]) and orders and not self._confirmed([i for o in orders for i in o.items]):
                    # the customer's words did not say which pending order: the model's reading is put to them, as for items
                    self._gate.audit(kind="decision", name="model_choice_confirm", actor="procedure", arguments={"orders": [o.order_id for o in orders]})
                    plan.extend(Outcome(intent=spec.intent, kind="confirm", items=list(o.items), detail={"tool": spec.tool}) for o in orders)
                    continue
                for order in orders:
                    action = Action(
                        intent=spec.intent,
                        tool=spec.tool,
                        role=spec.role,
                        order_id=order.order_id,
                        items=order.items,
                        arguments={"order_id": order.order_id, **{f: new.get(f, "") for f in address.FIELDS}},
                        address=new,
                    )
                    plan.append(self._checked(spec, action, order, items=order.items))
            elif spec.tool == "modify_user_address" and (asked.default or address.wants_default(raw)) and customer.address != new:
                action = Action(
                    intent=spec.intent,
                    tool=spec.tool,
                    role=spec.role,
                    arguments={"user_id": customer.user_id, **{f: new.get(f, "") for f in address.FIELDS}},
                    address=new,
                )
                plan.append(Outcome(intent=spec.intent, kind="planned", action=action))
        return plan

    def _apply_price_conditions(self, plan: list[Outcome]) -> list[Outcome]:
        """A change the customer made conditional on its price ("if it costs more than $20 extra, just take it back") is
        checked against the difference it makes: met, their alternative is done instead (a return, or nothing); not met,
        the change goes ahead. A condition that says no alternative leaves the change to the customer's answer."""
        said = reading.split_ticket(self.state.text)[1]
        found = price.read(said, self._procedures.vocabulary, self.state.language)
        changes = [o for o in plan if o.kind == "planned" and o.action is not None and o.action.new_items]
        if not found or not changes:
            return plan
        out: list[Outcome] = []
        for outcome in plan:
            action = outcome.action
            if outcome not in changes or action is None:
                out.append(outcome)
                continue
            mine = [c for c in found if len(changes) == 1 or decide.mentioned_items(action.items, c.text)]
            if not mine:
                out.append(outcome)
                continue
            blocking = [c for c in mine if not c.wants_change(self._compared(c, action))]  # every comparison said about it must allow it
            condition = next((c for c in blocking if c.then), blocking[0]) if blocking else mine[0]
            then = condition.then or next((c.then for c in mine if c.then), "")
            compared = self._compared(condition, action)
            self._gate.audit(
                kind="decision",
                name="price_condition",
                actor="procedure",
                arguments={"condition": condition.text, "only": condition.only},
                result={"change": not blocking, "then": then, "difference": action.amount, "compared": compared},
            )
            if not blocking:
                out.append(outcome)
                continue
            detail = {
                "threshold": f"${condition.threshold:.2f}",
                "difference": f"${action.amount:.2f}",
                "price": f"${compared:.2f}",
                "of_price": condition.of_price,  # the reply says what was compared: the new item's price or the difference
                "above": compared >= condition.threshold,  # the reply says which side of their amount it fell on
            }
            order = next(o for o in self.state.customer.orders if o.order_id == action.order_id) if self.state.customer else None
            spec = self._procedures.by_intent.get("return_items")
            if then == "return" and spec is not None and order is not None and order.status == "delivered":
                ret, _ = self._action(spec, order, list(action.items), text=condition.text, prefer="")
                if ret is not None:
                    out.append(self._checked(spec, ret, order, items=ret.items))
                    continue
            if then == "nothing":
                out.append(outcome.model_copy(update={"kind": "declined", "rule": "price_condition", "detail": detail}))
                continue
            out.append(Outcome(intent=outcome.intent, kind="unclear", detail={"said": condition.text}))
        return out

    @staticmethod
    def _compared(condition: price.PriceCondition, action: Action) -> float:
        """What the customer's amount is compared with: what the new items cost ("if it is less than 200 bucks"), those the
        condition names where it names some, or the difference the change makes ("if it is more than $20 extra")."""
        if not condition.of_price or not action.new_items:
            return action.amount
        named = decide.mentioned_items(action.items, condition.text)
        pairs = [(old, new) for old, new in zip(action.items, action.new_items, strict=False) if not named or old in named]
        return round(sum(new.price for _, new in pairs), 2)

    def _plan_payments(self, specs: list[ProcedureSpec]) -> list[Outcome]:
        """A pending order paid with another of the customer's methods (crews/procedures/payment.py)."""
        if not specs or self.state.customer is None:
            return []
        spec, customer = specs[0], self.state.customer
        request = payment.read(
            reading.split_ticket(conditions.read(self.state.text).request)[1] or self._raw_text, customer, self._procedures.vocabulary, self.state.language
        )
        if request.order is None or request.method is None:  # the subject may be where it is asked ("Zahlungsart ändern #W…")
            with_subject = payment.read(conditions.read(self.state.text).request, customer, self._procedures.vocabulary, self.state.language)
            request = with_subject if with_subject.order is not None and with_subject.method is not None else request
        if request.order is None or request.method is None:
            named = ", ".join(m.label for m in request.named) or ", ".join(m.label for m in customer.payment_methods.values())
            self._gate.audit(kind="decision", name="payment_unclear", actor="procedure", arguments={"named": [m.method_id for m in request.named]})
            return [Outcome(intent=spec.intent, kind="not_found", detail={"what": "payment", "methods": named})]
        order = request.order
        action = Action(
            intent=spec.intent,
            tool="modify_pending_order_payment",
            role=spec.role,
            order_id=order.order_id,
            items=order.items,
            arguments={"order_id": order.order_id, "payment_method_id": request.method.method_id},
            amount=round(sum(i.price for i in order.items), 2),
            method_id=request.method.method_id,
        )
        return [self._checked(spec, action, order, items=order.items)]

    def _plan(self, specs: list[ProcedureSpec], *, text: str, prefer: str = "", scope: list[Item] | None = None) -> list[Outcome]:
        """Outcomes of kind planned (an action that passed the policy), refused or not_found, one per order and request.
        prefer: a fallback's own words, which win over the request's (its payment method, its option values)."""
        customer = self.state.customer
        if scope is not None:
            customer = _only(customer, scope)
        plan: list[Outcome] = []
        chosen: dict[str, list[Item]] = {}
        if scope is None:
            chosen, plan = self._read_items(specs, text=text, customer=customer)
            if any(chosen.values()) or plan:  # beside what was read, a clause that named nothing the lexicon knows
                plan += self._met_by_meaning(specs, customer)
        if not any(chosen.values()) and not plan and scope is None:
            chosen = self._answered_items(specs, text=text, customer=customer)
        if not any(chosen.values()) and not plan:  # nothing read: the rules of decide.py, and the model for what they leave
            said = f"{prefer} {text}".strip()
            chosen = decide.assign(llm=self._llm, text=said, customer=customer, procedures=specs, scoped=scope is not None, prefer=prefer)
            for intent, items in chosen.items():  # the ones the customer said no to when asked are left out, and said so
                declined = [i for i in items if self._answer is not None and key(i) in self._answer.no]
                if declined and self._declined(intent, declined, self._procedures.by_intent[intent].tool or ""):
                    chosen[intent] = [i for i in items if i not in declined]
            if (
                self._confirm_reading([intent for intent, items in chosen.items() if items])
                and not self._confirmed([i for v in chosen.values() for i in v])
                and _plan_key(chosen)
                != _plan_key(decide.assign(llm=decide.RulesOnly(), text=said, customer=customer, procedures=specs, scoped=scope is not None, prefer=prefer))
            ):
                # the model read items the customer described: its reading is put to the customer, not written
                self._gate.audit(kind="decision", name="model_choice_confirm", actor="procedure", arguments={"chosen": sorted(map(str, _plan_key(chosen)))})
                return [
                    Outcome(intent=intent, kind="confirm", items=items, detail={"tool": self._procedures.by_intent[intent].tool})
                    for intent, items in chosen.items()
                    if items
                ]
        elif scope is None:  # what the reader could not place, quoted back as a question
            plan += [Outcome(intent=specs[0].intent, kind="unclear", detail={"said": said}) for said in self._unresolved]
        if not any(chosen.values()):
            if self._withdrawn and scope is None:  # the customer said no to what was proposed: nothing is left to find
                return plan
            return plan or [Outcome(intent=specs[0].intent, kind="not_found", detail={"what": "items"}, items=list(scope or []))]
        for spec in specs:
            plan.extend(self._plan_items(spec, chosen.get(spec.intent, []), text=text, prefer=prefer))
        return plan

    def _answered_items(self, specs: list[ProcedureSpec], *, text: str, customer: Customer) -> dict[str, list[Item]]:
        """Asked which items the request is about, the customer's answer names them ("the dumbbell set from #W…"): the
        request's own words say what to do with them. Only the customer's items the answer names (in the orders it
        names, if any) are candidates."""
        if self._answer is None or not self._answer.items_asked:
            return {}
        everything = [i for o in customer.orders for i in o.items]
        orders = decide.named_orders(self._answer.text)
        named = [i for i in decide.mentioned_items(everything, self._answer.text) if not orders or i.order_id in orders]
        if not named:
            return {}
        chosen = decide.assign(llm=decide.RulesOnly(), text=text, customer=_only(customer, named), procedures=specs, scoped=True)
        self._gate.audit(kind="decision", name="answer_names_items", actor="procedure", arguments={"items": [i.label() for i in named]})
        if any(chosen.values()):
            self._unresolved = []  # the clauses that named no item are what the answer completed
        return chosen

    def _met_by_meaning(self, specs: list[ProcedureSpec], customer: Customer) -> list[Outcome]:
        """The clauses that ask for something and name no product the catalogue's words know, met with the customer's
        products by meaning (crews/procedures/nearest.py: "the hoover" is their Vacuum Cleaner). Each one found is put
        to the customer to confirm, never written; the rest stay unresolved."""
        vocabulary, language = self._procedures.vocabulary, self.state.language
        offered = {s.intent: s for s in specs}
        status = {o.order_id: o.status for o in customer.orders}
        met, left = [], []
        for said in self._unresolved:
            asked = {k for c in reading.request_clauses(said, vocabulary, language) for k in c.kinds}
            kinds = [k for k in reading.REQUESTS if k in asked]
            kinds = kinds if len(kinds) == 1 else []  # one kind of request, or the customer says which
            items = nearest.nearest(said, [i for o in customer.orders for i in o.items], language=language) if kinds else []
            intents = {reading.INTENT.get((kinds[0], status[i.order_id])) for i in items} if items else set()
            intent = next(iter(intents)) if len(intents) == 1 else None
            if intent is None or intent not in offered:
                left.append(said)
                continue
            self._gate.audit(kind="decision", name="named_by_meaning", actor="procedure", arguments={"said": said[:120], "items": [i.label() for i in items]})
            if self._confirmed(items) or not self._confirm_reading([intent]):  # said yes on an earlier turn, or the write is stated whole
                met.extend(self._plan_items(offered[intent], items, text=said, prefer=""))
                continue
            if self._declined(intent, items, offered[intent].tool or ""):
                continue
            met.append(Outcome(intent=intent, kind="confirm", items=items, detail={"tool": offered[intent].tool}))
        self._unresolved = left
        return met

    def _read_items(self, specs: list[ProcedureSpec], *, text: str, customer: Customer) -> tuple[dict[str, list[Item]], list[Outcome]]:
        """Two readings of which items each request is about: the clause reader's (crews/procedures/reading.py: the
        catalogue's words, the vocabulary) and decide.py's rules alone (no model). Where both read the same, or only one
        reads anything, that reading stands; where they differ, the model chooses between the two (or neither: then the
        customer is asked). Items the reader found ambiguous are asked about, never guessed."""
        read = reading.read(text=text, customer=customer, procedures=specs, vocabulary=self._procedures.vocabulary, language=self.state.language)
        self._about.update(read.about)
        asked = []
        self._unresolved = list(read.unresolved)  # clauses that ask, with no item found: asked about if nothing else reads them
        answered: list[Item] = []
        for items in read.ambiguous:
            mine = [i for i in items if self._answer is not None and key(i) in self._answer.picked]
            if mine:  # asked which on an earlier turn: the customer's answer says
                self._gate.audit(
                    kind="decision",
                    name="ambiguous",
                    actor="procedure",
                    arguments={"items": [i.label() for i in items]},
                    result={"picked": [i.label() for i in mine]},
                )
                answered.extend(mine)
                continue
            self._gate.audit(kind="decision", name="ambiguous", actor="procedure", arguments={"items": [i.label() for i in items]}, result={"asked": True})
            asked.append(Outcome(intent=specs[0].intent, kind="ambiguous", items=items))
        if answered:
            for intent, items in decide.assign(llm=decide.RulesOnly(), text=text, customer=_only(customer, answered), procedures=specs, scoped=True).items():
                read.chosen.setdefault(intent, []).extend(i for i in items if key(i) not in {key(j) for j in read.chosen.get(intent, [])})
        rules = decide.assign(llm=decide.RulesOnly(), text=text, customer=customer, procedures=specs)
        clauses, by_rules = _plan_key(read.chosen), _plan_key(rules)
        if clauses == by_rules or not by_rules:
            return read.chosen, asked
        if not clauses:
            return (rules, []) if not asked else (read.chosen, asked)
        if self._arbiter == "reader":  # the clause reader's reading stands; the difference is on the record
            self._gate.audit(
                kind="decision",
                name="readings_differ",
                actor="procedure",
                arguments={"clauses": sorted(map(str, clauses)), "rules": sorted(map(str, by_rules))},
                result={"chosen": "clauses"},
            )
            return read.chosen, asked
        picked = decide.arbitrate(llm=self._llm, text=text, customer=customer, readings=[read.chosen, rules]) if self._arbiter == "model" else None
        self._gate.audit(
            kind="decision",
            name="readings_differ",
            actor="procedure",
            arguments={"clauses": sorted(map(str, clauses)), "rules": sorted(map(str, by_rules))},
            result={"chosen": ["clauses", "rules", "neither"][picked if picked is not None else 2]},
        )
        if picked is None:
            items = sorted({i.item_id: i for chosen in (read.chosen, rules) for v in chosen.values() for i in v}.values(), key=lambda i: i.order_id)
            return {}, [*asked, Outcome(intent=specs[0].intent, kind="ambiguous", items=items, detail={"why": "readings differ"})]
        return ([read.chosen, rules][picked], asked if picked == 0 else [])

    def _checked(self, spec: ProcedureSpec, action: Action, order: Order, *, items: list[Item]) -> Outcome:
        """The action planned, or refused by the first policy rule it breaks (audited under the rule's name); asked
        about when the customer named several of their methods for its money and did not say which."""
        if action.method_id and action.method_id.startswith(payment.AMBIGUOUS):
            ids = action.method_id[len(payment.AMBIGUOUS) :].split(",")
            self._gate.audit(kind="decision", name="payment_unclear", actor="procedure", arguments={"named": ids, "order_id": order.order_id})
            labels = ", ".join(policy.method_label(i, self.state.customer) for i in ids)
            return Outcome(intent=spec.intent, kind="not_found", items=items, detail={"what": "method", "methods": labels, "order": order.order_id})
        refusal = policy.first_refusal(spec.policy, action, order, self.state.customer)
        if refusal is None:
            return Outcome(intent=spec.intent, kind="planned", action=action)
        rule, details = refusal
        self._gate.audit(kind="policy", name=f"refused:{rule}", arguments=action.arguments, result=details, actor=spec.role)
        return Outcome(intent=spec.intent, kind="refused", action=action, rule=rule, detail=details, items=items)

    def _plan_items(self, spec: ProcedureSpec, items: list[Item], *, text: str, prefer: str) -> list[Outcome]:
        orders = {o.order_id: o for o in self.state.customer.orders}
        plan: list[Outcome] = []
        for order_id in dict.fromkeys(item.order_id for item in items):
            order = orders[order_id]
            mine = [item for item in items if item.order_id == order_id]
            action, missing = self._action(spec, order, mine, text=text, prefer=prefer)
            ties = self._ties.pop(order_id, [])
            if missing:
                plan.append(
                    Outcome(
                        intent=spec.intent,
                        kind="not_found",
                        items=missing,
                        detail={"what": "variant", "names": ", ".join(i.name for i in missing)},
                    )
                )
            for variants_left in ties:  # the customer's words fit several variants: asked which, never guessed
                self._gate.audit(kind="decision", name="ambiguous_variant", actor="procedure", arguments={"variants": [v.label() for v in variants_left]})
                plan.append(Outcome(intent=spec.intent, kind="ambiguous", items=variants_left))
            for old, proposal in self._nearest.pop(order_id, []):  # it would change more than they asked: put to them, not written
                self._gate.audit(
                    kind="decision",
                    name="variant_changes_unasked",
                    actor="procedure",
                    arguments={"item": old.label(), "nearest": proposal.item.label(), "changes": list(proposal.changes)},
                )
                plan.append(
                    Outcome(
                        intent=spec.intent,
                        kind="confirm",
                        items=[proposal.item],
                        detail={"tool": spec.tool, "from": old.label(), "changes": list(proposal.changes)},
                    )
                )
            if action is None:
                continue
            plan.append(self._checked(spec, action, order, items=action.items))
        return plan

    @staticmethod
    def _hold_unsettled_orders(plan: list[Outcome]) -> list[Outcome]:
        """One write per order (the store allows one exchange or change): an order's write waits while another item of
        it is still unsettled after the customer's fallbacks (no fitting variant, several that fit), so the customer's
        answer can still complete it."""
        unsettled = {i.order_id for o in plan if o.kind in ("not_found", "ambiguous", "confirm") for i in o.items}
        out = []
        for outcome in plan:
            action = outcome.action
            if outcome.kind == "planned" and action is not None and action.tool in ITEM_WRITES and action.order_id in unsettled:
                out.append(Outcome(intent=outcome.intent, kind="not_found", items=action.items, detail={"what": "rest"}))
            else:
                out.append(outcome)
        return out

    def _hold_conflicts(self, plan: list[Outcome]) -> list[Outcome]:
        """Two writes on one order's items (a return and an exchange, a cancel and a change, the same item twice) cannot
        both be what the customer wants, and the store allows only one: neither is written; both are put to the
        customer to confirm which."""
        orders: dict[str, int] = {}
        for outcome in plan:
            if outcome.kind == "planned" and outcome.action is not None and outcome.action.tool in ITEM_WRITES:
                orders[outcome.action.order_id] = orders.get(outcome.action.order_id, 0) + 1
        clash = {order_id for order_id, n in orders.items() if n > 1}
        if not clash:
            return plan
        self._gate.audit(kind="decision", name="conflicting_writes", actor="procedure", arguments={"orders": sorted(clash)})
        intent = plan[0].intent
        return [Outcome(intent=intent, kind="unclear", detail={"said": order_id, "why": "conflict"}) for order_id in sorted(clash)] + [
            Outcome(intent=o.intent, kind="confirm", items=o.action.items, detail={"tool": o.action.tool})
            if o.kind == "planned" and o.action is not None and o.action.tool in ITEM_WRITES and o.action.order_id in clash
            else o
            for o in plan
        ]

    def _action(self, spec: ProcedureSpec, order: Order, items: list[Item], *, text: str, prefer: str) -> tuple[Action | None, list[Item]]:
        """The write for one order, and the items no fitting variant was found for."""
        if spec.tool == "cancel_pending_order":
            return Action(
                intent=spec.intent,
                tool=spec.tool,
                role=spec.role,
                order_id=order.order_id,
                items=order.items if len(items) == len(order.items) else items,
                arguments={"order_id": order.order_id, "reason": self._cancel_reason(prefer, text, order)},
                amount=round(sum(i.price for i in order.items), 2),
                # a fallback that asks for the money elsewhere ("cancel it and refund to my gift card") is checked by the policy
                method_id=policy.named_method(prefer, order, self.state.customer) if prefer and policy.names_method(prefer) else order.paid_with,
            ), []
        vocabulary, language = self._procedures.vocabulary, self.state.language
        assert self.state.customer is not None
        entry = payment.entry_of(self.state.text, items, self.state.customer, vocabulary, language)  # a list's own entry
        said = prefer if prefer and policy.names_method(prefer) else entry or text
        if prefer and not policy.names_method(said):  # a fallback's redo ("if 8 bar is not possible, I want 9 bar") pays as the request said
            said = self._request_body()
        said = payment.without_payment_clauses(said, vocabulary, language)  # "and charge the other order to my Visa": not this money
        method_id = payment.money_method(said, order, self.state.customer, vocabulary, language) or policy.named_method(said, order, self.state.customer)
        if spec.tool == "return_delivered_order_items":
            return Action(
                intent=spec.intent,
                tool=spec.tool,
                role=spec.role,
                order_id=order.order_id,
                items=items,
                arguments={"order_id": order.order_id, "item_ids": [i.item_id for i in items], "payment_method_id": method_id},
                amount=round(sum(i.price for i in items), 2),
                method_id=method_id,
            ), []
        lookup = facts.Lookup(self._gate, spec.role)
        pairs, missing = [], []
        for item in items:
            said = self._about.get(reading.key(item), text)  # the clauses about this item, when the reader found them
            said = variants.as_other(said, item, self.state.customer.orders)  # "the same type as the one I already have"
            new = variants.choose(
                llm=self._llm,
                text=said,
                prefer=prefer,
                item=item,
                product=lookup("get_product_details", product_id=item.product_id),
                vocabulary=self._procedures.vocabulary,
                ticket=text,
            )
            if isinstance(new, list) and self._answer is not None and len(mine := [v for v in new if key(v) in self._answer.picked]) == 1:
                pairs.append((item, mine[0]))  # the variant the customer chose when asked which
            elif isinstance(new, list):
                self._ties.setdefault(order.order_id, []).append(new)
            elif isinstance(new, variants.Nearest) and self._confirmed([new.item]):
                pairs.append((item, new.item))  # the nearest variant, put to the customer, and they said yes
            elif isinstance(new, variants.Nearest) and self._declined(spec.intent, [new.item], spec.tool or ""):
                continue
            elif isinstance(new, variants.Nearest):
                self._nearest.setdefault(order.order_id, []).append((item, new))
            elif new is None:
                missing.append(item)
            else:
                pairs.append((item, new))
        if not pairs:
            return None, missing
        return self._exchange(spec, order, pairs, method_id), missing

    def _cancel_reason(self, prefer: str, text: str, order: Order | None = None) -> str:
        """One of the two reasons the store accepts, from the customer's words (the vocabulary's, in any of the four
        languages, then the old English cues); "" when they gave none: the customer is asked, no reason is invented.
        Where the ticket gives both, each order gets the one on the line that names its number ("W965… (camera) -
        ordered by mistake / W668… (kettle) - don't need it anymore")."""
        vocabulary, language = self._procedures.vocabulary, self.state.language
        own = [line for line in _LINES.split(self.state.text) if order is not None and _names_order(line, order)]
        for said in (prefer, text, *own, self.state.text):
            if not said:
                continue
            found = [r for r in ("mistake", "no_longer") if vocabulary.reasons[r].found(wording.words(said), language)]
            if len(found) == 1:
                return {"mistake": "ordered by mistake", "no_longer": "no longer needed"}[found[0]]
        return policy.cancel_reason(next((t for t in (prefer, text) if t and policy.names_reason(t)), self.state.text))

    @staticmethod
    def _exchange(spec: ProcedureSpec, order: Order, pairs: list[tuple[Item, Item]], method_id: str) -> Action:
        if spec.tool is None:  # only the exchange procedure gets here, and it names its tool
            raise ValueError(f"procedure {spec.key!r} has no tool to exchange items with")
        position = {item.item_id: n for n, item in enumerate(order.items)}
        pairs = sorted(pairs, key=lambda pair: position.get(pair[0].item_id, len(position)))
        arguments = {
            "order_id": order.order_id,
            "item_ids": [i.item_id for i, _ in pairs],
            "new_item_ids": [n.item_id for _, n in pairs],
            "payment_method_id": method_id,
        }
        return Action(
            intent=spec.intent,
            tool=spec.tool,
            role=spec.role,
            order_id=order.order_id,
            items=[i for i, _ in pairs],
            new_items=[n for _, n in pairs],
            arguments=arguments,
            amount=round(sum(n.price - i.price for i, n in pairs), 2),
            method_id=method_id,
        )

    # -- fallbacks ------------------------------------------------------------------------------------------------------

    def _apply_fallbacks(self, plan: list[Outcome], reading: conditions.Reading, candidates: list[conditions.Fallback], depth: int) -> list[Outcome]:
        """Each refused or not-found part of the plan, with a fallback the customer tied to it, is replaced by what that
        fallback asks (which may fail in turn and have its own fallback)."""
        if not candidates or depth >= MAX_FALLBACK_DEPTH:
            return plan
        everything = [i for o in self.state.customer.orders for i in o.items]
        for failure in [o for o in plan if o.kind in ("not_found", "refused")]:
            fallback = self._fallback_for(failure, reading, candidates, everything)
            if fallback is None:
                continue
            self._gate.audit(
                kind="decision",
                name="fallback",
                actor="procedure",
                arguments={"condition": fallback.condition, "then": fallback.then},
                result={"kind": fallback.kind, "instead_of": failure.kind, "rule": failure.rule},
            )
            plan.remove(failure)
            if fallback.kind == "nothing":
                plan.append(failure.model_copy(update={"kind": "declined" if failure.kind == "refused" else failure.kind}))
            elif fallback.kind == "handoff":
                plan.append(failure)
                plan.append(
                    Outcome(
                        intent="human_handoff",
                        kind="handoff_wanted",
                        detail={"summary": f"{failure.intent} could not be done ({failure.rule or failure.kind}); the customer asked for a person."},
                    )
                )
            else:
                plan = self._redo(plan, failure, fallback, reading, everything, depth)
        return plan

    @staticmethod
    def _fallback_for(
        failure: Outcome, reading: conditions.Reading, candidates: list[conditions.Fallback], everything: list[Item]
    ) -> conditions.Fallback | None:
        about = {(i.order_id, i.item_id) for i in failure.items}
        for fallback in candidates:
            said = f"{reading.anchor_text(fallback)} {fallback.condition} {fallback.then}"
            if any((i.order_id, i.item_id) in about for i in decide.mentioned_items(everything, said)):
                return fallback
        return candidates[0] if len(candidates) == 1 else None

    def _redo(
        self, plan: list[Outcome], failure: Outcome, fallback: conditions.Fallback, reading: conditions.Reading, everything: list[Item], depth: int
    ) -> list[Outcome]:
        then = fallback.then
        named = decide.mentioned_items(everything, then)
        failed_orders = {i.order_id for i in failure.items}
        if named:
            scope = named
        elif conditions.WHOLE.search(then):
            scope = [i for o in self.state.customer.orders if o.order_id in failed_orders for i in o.items]
        else:
            scope = list(failure.items)
        intents = [intent for intent in decide.said_intents(then) if intent in self._procedures.by_intent] or [failure.intent]
        if set(intents) & ORDER_FAMILY:
            intents = [i for i in ORDER_FAMILY_ORDER if i in self._procedures.by_intent]
        specs = [self._procedures.by_intent[i] for i in intents if self._procedures.by_intent[i].choose == "items"]
        if not specs or not scope:
            plan.append(failure)
            return plan
        again = self._plan(specs, text=reading.anchor_text(fallback), prefer=then, scope=scope)
        again = self._apply_fallbacks(again, reading, reading.after(fallback.index), depth + 1)
        for outcome in again:
            plan = self._merge(plan, outcome)
        return plan

    def _merge(self, plan: list[Outcome], outcome: Outcome) -> list[Outcome]:
        """A fallback's planned write for an order that already has one of the same kind joins it (one write per order)."""
        if outcome.kind != "planned" or outcome.action is None:
            return [*plan, outcome]
        new = outcome.action
        for n, existing in enumerate(plan):
            old = existing.action
            if existing.kind == "planned" and old is not None and old.order_id == new.order_id and old.tool == new.tool:
                if not new.new_items:
                    return [*plan[:n], outcome, *plan[n + 1 :]]
                pairs = {i.item_id: (i, v) for i, v in zip(old.items, old.new_items, strict=False)} | {
                    i.item_id: (i, v) for i, v in zip(new.items, new.new_items, strict=False)
                }
                order = next(o for o in self.state.customer.orders if o.order_id == new.order_id)
                spec = self._procedures.by_intent[new.intent]
                merged = self._exchange(spec, order, list(pairs.values()), new.method_id or old.method_id or order.paid_with)
                return [*plan[:n], Outcome(intent=new.intent, kind="planned", action=merged), *plan[n + 1 :]]
        return [*plan, outcome]

    def _stated(self, outcome: Outcome, *, text: str) -> list[Outcome]:
        """A planned write of a procedure with `confirm: true` is made only when the customer said yes to exactly this
        write (its fingerprint: tool and arguments). Otherwise it is proposed: the reply states it whole and the ticket
        waits. A no leaves it as it is (withdrawn); a no to some of its items re-plans it without them, and the new
        write is stated again (its amount and items differ from what the customer saw)."""
        action = outcome.action
        if outcome.kind != "planned" or action is None or not self._stated_first(action.intent):
            return [outcome]
        fingerprint, answer = action.fingerprint(), self._answer
        items = list(action.items)
        if answer is not None and fingerprint in answer.approved:
            self._gate.audit(kind="decision", name="write_confirmed", actor="procedure", arguments={"tool": action.tool, "order_id": action.order_id})
            return [outcome]
        if answer is not None and fingerprint in answer.refused:
            self._gate.audit(kind="decision", name="customer_declined", actor="procedure", arguments={"tool": action.tool, "order_id": action.order_id})
            return [Outcome(intent=action.intent, kind="withdrawn", items=items, detail={"tool": action.tool, "order": action.order_id})]
        dropped = [i for i in items if answer is not None and key(i) in answer.no] if action.tool in ITEM_WRITES else []
        if dropped:
            self._gate.audit(
                kind="decision", name="customer_declined", actor="procedure", arguments={"tool": action.tool, "items": [i.label() for i in dropped]}
            )
            withdrawn = Outcome(intent=action.intent, kind="withdrawn", items=dropped, detail={"tool": action.tool, "order": action.order_id})
            rest = [i for i in items if i not in dropped]
            spec = self._procedures.by_intent[action.intent]
            replanned = self._plan_items(spec, rest, text=text, prefer="") if rest else []
            return [withdrawn, *(o for planned in replanned for o in self._stated(planned, text=text))]  # approved already, or stated
        return [self._propose(outcome)]

    def _cross_read(self, plan: list[Outcome]) -> list[Outcome]:
        """The model's own typed reading of the ticket (extract.py), decoded against a schema of this customer's open orders
        and their items, compared with the rules' planned writes before any is made: a write the model's reading does not
        hold (the same kind of request on the same order and, for item writes, the same items) is stated to the customer
        for a yes instead (cross). Nothing is ever written on the model's reading alone, so the worst a wrong reading does
        is ask. Writes the customer already confirmed are not read again; a reading the model cannot give holds the writes
        it would have checked. One call per ticket with writes to make."""
        if self._model_reading == "off" or self.state.customer is None:
            return plan
        unconfirmed = {id(o): extract.of_action(o.action) for o in plan if o.kind == "planned" and o.action is not None and not self._approved(o.action)}
        if not unconfirmed:
            return plan
        built = extract.prompt(self.state.text, self.state.customer)
        try:
            read: list[extract.Request] | None = extract.parse(self._llm.decide(built.messages, built.schema, name="read_request", actor="procedure"), built)
        except ModelOutputError as exc:
            self._gate.audit(kind="decision", name="model_reading", actor="procedure", arguments={"mode": self._model_reading}, error=str(exc)[:300])
            read = None
        doubted = {n: planned for n, planned in unconfirmed.items() if read is None or planned not in read}
        arguments = {
            "mode": self._model_reading,
            "read": [r.__dict__ for r in read or []],
            "planned": [r.__dict__ for r in unconfirmed.values()],
            "doubted": [r.__dict__ for r in doubted.values()],
        }
        self._gate.audit(kind="decision", name="model_reading", actor="procedure", arguments=arguments)
        if self._model_reading != "cross" or not doubted:
            return plan
        return [self._propose(o) if id(o) in doubted else o for o in plan]

    def _approved(self, action: Action) -> bool:
        """The customer said yes to this write (its fingerprint) or to its items: no model reads it again."""
        return self._answer is not None and (action.fingerprint() in self._answer.approved or self._confirmed(list(action.items)))

    def _write_checked(self, outcome: Outcome) -> Outcome:
        """A write about to be made without the customer's yes is checked item by item against their words by the model
        (check.py); one item it doubts holds the whole write as a proposal for the customer's yes. Writes the customer
        confirmed, and items the model itself chose (already put to the customer), are not asked about again."""
        action = outcome.action
        if self._write_check == "off" or outcome.kind != "planned" or action is None or action.tool not in ITEM_WRITES:
            return outcome
        if self._approved(action):
            return outcome
        statuses = {o.order_id: o.status for o in self.state.customer.orders} if self.state.customer else {}
        found = check.verdicts(self._llm, text=self.state.text, action=action, status=statuses.get(action.order_id, ""), limit=self._checks_left)
        asked = len(check.asked_about(action))
        self._checks_left -= len(found)
        doubted = [v for v in found if v.p_yes < self._min_yes]
        arguments = check.record(action, found, min_yes=self._min_yes, unchecked=asked - len(found))
        self._gate.audit(kind="decision", name="write_checked", actor="procedure", arguments={**arguments, "mode": self._write_check})
        if not doubted or self._write_check != "model":
            return outcome
        self._gate.audit(kind="decision", name="write_doubted", actor="procedure", arguments={**arguments, "doubted": [v.item.label() for v in doubted]})
        return self._propose(outcome)

    def _propose(self, outcome: Outcome) -> Outcome:
        """The write stated for the customer's yes; its detail is what their answer is read against (crews/procedures/answers.py)."""
        action = outcome.action
        assert action is not None
        fingerprint = action.fingerprint()
        self._gate.audit(
            kind="decision", name="write_proposed", actor="procedure", arguments={"tool": action.tool, "order_id": action.order_id, "fingerprint": fingerprint}
        )
        detail = {"tool": action.tool, "fingerprint": fingerprint, "order": action.order_id}
        return Outcome(intent=action.intent, kind="propose", action=action, items=list(action.items), detail=detail)

    def _write(self, action: Action) -> Outcome:
        try:
            result = facts.Lookup(self._gate, action.role)(action.tool, **action.arguments)
        except (StoreError, ToolDenied) as exc:
            return Outcome(intent=action.intent, kind="failed", action=action, detail={"error": str(exc)})
        if isinstance(result, str) and result.startswith("PENDING APPROVAL"):
            return Outcome(intent=action.intent, kind="pending_approval", action=action)
        if isinstance(result, str) and result.startswith("REJECTED"):
            return Outcome(intent=action.intent, kind="failed", action=action, detail={"error": result})
        return Outcome(intent=action.intent, kind="done", action=action)

    def _answer_status(self, spec: ProcedureSpec) -> None:
        named = decide.named_orders(self.state.text)
        about = {item.order_id for item in decide.mentioned_items([i for o in self.state.customer.orders for i in o.items], self.state.text)}
        orders = (
            [o for o in self.state.customer.orders if o.order_id in named]
            or [o for o in self.state.customer.orders if o.order_id in about]
            or self.state.customer.orders
        )
        for order in orders:
            self.state.outcomes.append(
                Outcome(
                    intent=spec.intent,
                    kind="answered",
                    detail={"order": order.order_id, "items": ", ".join(i.name for i in order.items), "status": order.status, "tracking_ids": order.tracking},
                )
            )

    def _hand_over(self, spec: ProcedureSpec, summary: str) -> None:
        try:
            facts.Lookup(self._gate, spec.role)("transfer_to_human_agents", summary=summary)
        except (StoreError, ToolDenied) as exc:
            self.state.outcomes.append(Outcome(intent=spec.intent, kind="failed", detail={"error": str(exc)}))
            return
        self.state.outcomes.append(Outcome(intent=spec.intent, kind="handed_over"))

    @listen("unknown")
    def ask_who(self) -> None:
        """Nothing in the ticket identifies a customer of the store: the reply asks for the account's e-mail, or name and
        zip, and the ticket waits; the answer is read beside the request and the customer proven from it, as from any
        ticket's text (nothing is read or written before that)."""
        self.state.status, self.state.reason = (
            "waiting_on_customer",
            "customer not identified from the ticket (no e-mail, or name and zip, that the store knows)",
        )
        self.state.questions = [Outcome(intent=self.state.intents[0] if self.state.intents else "", kind="not_found", detail={"what": "customer"})]

    @listen(act)
    def conclude(self) -> None:
        """resolved only when every request was carried out or answered: a ticket whose requests found nothing to do is
        never resolved with a greeting and a signature."""
        if not self.state.outcomes:
            self.state.outcomes.append(Outcome(intent=self.state.intents[0] if self.state.intents else "", kind="not_found", detail={"what": "request"}))
        kinds = {o.kind for o in self.state.outcomes}
        if "pending_approval" in kinds:
            self.state.status, self.state.reason = "awaiting_approval", "a write waits for a person's approval"
        elif kinds & NOT_DONE and (kinds & NOT_DONE <= ASKING or ("propose" in kinds and not kinds & WAIT_NOT)):
            # every open point is a question to the customer, or writes are stated for their yes beside what could not be
            # done (a refusal, explained in the reply): wait for the answer; what stays undone goes to a person after it
            self.state.status, self.state.reason = "waiting_on_customer", "; ".join(_why(o) for o in self.state.outcomes if o.kind in NOT_DONE)
            # a proposed write is recorded by what the answer needs (its detail and items), not its arguments
            self.state.questions = [o.model_copy(update={"action": None}) for o in self.state.outcomes if o.kind in ASKING]
        elif kinds & NOT_DONE:
            self.state.status, self.state.reason = "escalated", "; ".join(_why(o) for o in self.state.outcomes if o.kind in NOT_DONE)
        else:
            self.state.status = "resolved"

    def reply(self) -> str:
        return compose(
            replies=self._procedures.replies,
            language=self.state.language,
            outcomes=self.state.outcomes,
            customer=self.state.customer,
            identified=self.state.customer is not None,
        )
