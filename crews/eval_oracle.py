"""The evaluation's oracle: a scripted crew (crewdesk.llm.scripted.PlanResponder) that performs a task's reference
actions through the real pipeline, sequential or hierarchical, so the scoring itself can be checked at 100%."""

from __future__ import annotations

import json
from typing import Any

from crewdesk.connectors.builtin_store import SqlRetailStore
from crewdesk.llm.scripted import PlanResponder
from crews.config import COWORKERS, SPECIALIST_BY_CATEGORY, CrewConfig


def role_for(tool: str, config: CrewConfig, preferred: str | None) -> str:
    if preferred and tool in config.roles[preferred].tools:
        return preferred
    for key in COWORKERS:
        if tool in config.roles[key].tools:
            return key
    raise ValueError(f"no role may call {tool}")


def customer_email(session_factory, actions: list[dict[str, Any]]) -> str | None:
    """The e-mail of the customer whose records the reference actions touch (the oracle proves who it acts for)."""
    with session_factory() as db:
        store = SqlRetailStore(db)
        for action in actions:
            args = action["arguments"]
            user_id = args.get("user_id") or (store.order_owner(args["order_id"]) if "order_id" in args else None)
            if user_id:
                return store.get_user_details(user_id)["email"]
    return None


def oracle(task: dict[str, Any], config: CrewConfig, process: str, actions: list[dict[str, Any]] | None = None, email: str | None = None) -> PlanResponder:
    """A scripted crew that performs the task's reference actions (or `actions` instead), after identifying the customer
    by `email` when the actions do not start by identifying them (the gate binds every call to a proven customer)."""
    steps = [(a["name"], a["arguments"]) for a in (actions if actions is not None else task["evaluation_criteria"]["actions"])]
    if email and not (steps and steps[0][0].startswith("find_user_id")):
        steps.insert(0, ("find_user_id_by_email", {"email": email}))
    done = {
        "customer_reply": "Thank you for your patience; your request has been handled as discussed.",
        "internal_note": "oracle",
        "needs_human": False,
        "escalation_reason": "",
    }
    handoff = {"customer_reply": "A colleague will follow up with you shortly.", "handoff_summary": "Customer asked for a person.", "team": "tier2"}
    if process == "hierarchical":
        groups: list[tuple[str, list]] = []
        for tool, args in steps:
            role = role_for(tool, config, groups[-1][0] if groups else None)
            if groups and groups[-1][0] == role:
                groups[-1][1].append((tool, args))
            else:
                groups.append((role, [(tool, args)]))
        plans: dict[str, list] = {
            "manager": [
                ("Delegate work to coworker", {"task": f"Do step {i + 1}", "context": json.dumps(group), "coworker": config.roles[role].role})
                for i, (role, group) in enumerate(groups)
            ]
        }
        for role, group in groups:
            plans.setdefault(role, []).append(group)
        finals: dict[str, Any] = {"manager": done, **{role: "Done." for role, _ in groups}, "escalation": handoff}
        return PlanResponder(triage={"category": "other", "priority": "normal", "summary": "eval", "confidence": 0.9}, plans=plans, finals=finals)
    # sequential: one specialist must hold every tool but the hand-off, which the escalation agent makes
    transfer = [s for s in steps if s[0] == "transfer_to_human_agents"]
    work = [s for s in steps if s[0] != "transfer_to_human_agents"]
    names = {tool for tool, _ in work}
    category = next((c for c, role in SPECIALIST_BY_CATEGORY.items() if names <= set(config.roles[role].tools)), "billing")
    specialist = SPECIALIST_BY_CATEGORY[category]
    final = {**done, "needs_human": True, "escalation_reason": "customer asked for a person"} if transfer else done
    plans = {specialist: work, "escalation": transfer}
    return PlanResponder(
        triage={"category": category, "priority": "normal", "summary": "eval", "confidence": 0.9},
        plans=plans,
        finals={specialist: final, "escalation": handoff},
    )
