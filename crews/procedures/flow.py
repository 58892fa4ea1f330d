"""One ticket's known intents carried out as a CrewAI Flow with typed state: identify the customer, read their orders,
decide which items each request applies to, check the store's policy, act through the gate, and answer with the facts."""

from __future__ import annotations

from typing import Any

from crewai.flow.flow import Flow, listen, router, start
from pydantic import PrivateAttr

from crewdesk.connectors.base import StoreError
from crewdesk.llm.base import CrewdeskLLM
from crews.procedures import decide, facts, policy, variants
from crews.procedures.replies import compose
from crews.procedures.spec import Procedures, ProcedureSpec
from crews.procedures.state import Action, Item, Order, Outcome, ProcedureState
from tools.gate import Gate, ToolDenied

class ProcedureFlow(Flow[ProcedureState]):
    """Built per ticket with its gate (governance, PII vault, audit) and one LLM for its decisions."""

    _gate: Gate = PrivateAttr()
    _llm: CrewdeskLLM = PrivateAttr()
    _procedures: Procedures = PrivateAttr()
    _raw_text: str = PrivateAttr(default="")

    @classmethod
    def build(cls, *, gate: Gate, llm: CrewdeskLLM, procedures: Procedures, raw_text: str) -> "ProcedureFlow":
        flow = cls(suppress_flow_events=True)  # the audit records decisions, tool calls and outcomes, not flow lifecycle noise
        flow._gate, flow._llm, flow._procedures, flow._raw_text = gate, llm, procedures, raw_text
        return flow

    def _specs(self) -> list[ProcedureSpec]:
        return [self._procedures.by_intent[intent] for intent in self.state.intents]

    @start()
    def identify(self) -> None:
        lookup = facts.Lookup(self._gate, self._specs()[0].role)
        found = facts.identify(lookup, text=self.state.text, raw_text=self._raw_text, channel_customer=self.state.channel_customer)
        if found is not None:
            self.state.customer = facts.load_customer(lookup, user_id=found[0], how=found[1])

    @router(identify)
    def known(self) -> str:
        return "identified" if self.state.customer is not None else "unknown"

    @listen("identified")
    def act(self) -> None:
        specs = self._specs()
        item_specs = [s for s in specs if s.choose == "items"]
        if item_specs:
            chosen = decide.assign(llm=self._llm, text=self.state.text, customer=self.state.customer, procedures=item_specs)
            if not any(chosen.values()):
                self.state.outcomes.append(Outcome(intent=item_specs[0].intent, kind="not_found", detail={"what": "the items you mean"}))
            for spec in item_specs:
                self._act_on_items(spec, chosen.get(spec.intent, []))
        for spec in specs:
            if spec.intent == "order_status":
                self._answer_status(spec)
            elif spec.tool == "transfer_to_human_agents":
                self._hand_over(spec)

    def _act_on_items(self, spec: ProcedureSpec, items: list[Item]) -> None:
        """One write per order (the store allows one exchange or change per order), after the policy checks."""
        orders = {o.order_id: o for o in self.state.customer.orders}
        for order_id in dict.fromkeys(item.order_id for item in items):
            order = orders[order_id]
            mine = [item for item in items if item.order_id == order_id]
            action = self._action(spec, order, mine)
            if action is None:
                self.state.outcomes.append(Outcome(intent=spec.intent, kind="not_found", detail={"what": "a variant that fits your request for " + ", ".join(i.name for i in mine)}))
                continue
            refusal = policy.first_refusal(spec.policy, action, order, self.state.customer)
            if refusal is not None:
                rule, details = refusal
                self._gate.audit(kind="policy", name=f"refused:{rule}", arguments=action.arguments, result=details, actor=spec.role)
                self.state.outcomes.append(Outcome(intent=spec.intent, kind="refused", action=action, rule=rule, detail=details))
                continue
            self.state.actions.append(action)
            self.state.outcomes.append(self._write(action))

    def _action(self, spec: ProcedureSpec, order: Order, items: list[Item]) -> Action | None:
        text = self.state.text
        if spec.tool == "cancel_pending_order":
            return Action(intent=spec.intent, tool=spec.tool, role=spec.role, order_id=order.order_id, items=order.items if len(items) == len(order.items) else items,
                          arguments={"order_id": order.order_id, "reason": policy.cancel_reason(text)}, amount=round(sum(i.price for i in order.items), 2),
                          method_id=order.paid_with)
        method_id = policy.named_method(text, order, self.state.customer)
        if spec.tool == "return_delivered_order_items":
            return Action(intent=spec.intent, tool=spec.tool, role=spec.role, order_id=order.order_id, items=items,
                          arguments={"order_id": order.order_id, "item_ids": [i.item_id for i in items], "payment_method_id": method_id},
                          amount=round(sum(i.price for i in items), 2), method_id=method_id)
        lookup = facts.Lookup(self._gate, spec.role)
        pairs = []
        for item in items:
            new = variants.choose(llm=self._llm, text=text, item=item, product=lookup("get_product_details", product_id=item.product_id))
            if new is not None:
                pairs.append((item, new))
        if not pairs:
            return None
        arguments = {"order_id": order.order_id, "item_ids": [i.item_id for i, _ in pairs], "new_item_ids": [n.item_id for _, n in pairs], "payment_method_id": method_id}
        return Action(intent=spec.intent, tool=spec.tool, role=spec.role, order_id=order.order_id, items=[i for i, _ in pairs], new_items=[n for _, n in pairs],
                      arguments=arguments, amount=round(sum(n.price - i.price for i, n in pairs), 2), method_id=method_id)

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
        orders = [o for o in self.state.customer.orders if o.order_id in named] or \
                 [o for o in self.state.customer.orders if o.order_id in about] or self.state.customer.orders
        for order in orders:
            self.state.outcomes.append(Outcome(intent=spec.intent, kind="answered", detail={
                "order": order.order_id, "items": ", ".join(i.name for i in order.items), "status": order.status, "tracking_ids": order.tracking}))

    def _hand_over(self, spec: ProcedureSpec) -> None:
        try:
            facts.Lookup(self._gate, spec.role)("transfer_to_human_agents", summary="The customer asked for a person.")
        except (StoreError, ToolDenied) as exc:
            self.state.outcomes.append(Outcome(intent=spec.intent, kind="failed", detail={"error": str(exc)}))
            return
        self.state.outcomes.append(Outcome(intent=spec.intent, kind="handed_over"))

    @listen("unknown")
    def ask_who(self) -> None:
        self.state.status, self.state.reason = "escalated", "customer not identified from the ticket (no e-mail, or name and zip, that the store knows)"

    @listen(act)
    def conclude(self) -> None:
        kinds = {o.kind for o in self.state.outcomes}
        if "pending_approval" in kinds:
            self.state.status, self.state.reason = "awaiting_approval", "a write waits for a person's approval"
        elif kinds & {"failed", "not_found", "refused", "handed_over"}:
            why = [f"{o.intent}: {o.kind}" + (f" ({o.rule})" if o.rule else "") + (f" ({o.detail['error']})" if "error" in o.detail else "")
                   for o in self.state.outcomes if o.kind in {"failed", "not_found", "refused", "handed_over"}]
            self.state.status, self.state.reason = "escalated", "; ".join(why)
        else:
            self.state.status = "resolved"

    def reply(self) -> str:
        return compose(replies=self._procedures.replies, language=self.state.language, outcomes=self.state.outcomes, customer=self.state.customer,
                       identified=self.state.customer is not None)
