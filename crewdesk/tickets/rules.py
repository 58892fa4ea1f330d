"""Deterministic escalation rules. Small models miss these, so they never depend on the model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crewdesk.db import utcnow
from crewdesk.tickets.models import Ticket
from crewdesk.tickets.schemas import Triage

_RULES: dict[str, re.Pattern[str]] = {
    "legal_threat": re.compile(
        r"\b(lawyers?|attorneys?|solicitors?|lawsuit|sue|suing|legal action|small claims|court|litigation|"
        r"consumer protection|ombudsman|anwalt|klage|avocat)\b",
        re.I,
    ),
    "data_loss": re.compile(
        r"\b(data loss|lost (all )?(my |our )?(data|files|work|photos|records)|(data|files|records) (were|was|got|have been) "
        r"(deleted|wiped|erased|lost)|wiped (out )?(my|our|all)|disappeared|corrupt(ed)? (database|data|files))\b",
        re.I,
    ),
    "security": re.compile(
        r"\b(hack(ed|er)?|breach(ed)?|unauthori[sz]ed (access|login|charge|transaction)s?|compromised|phishing|"
        r"stolen (account|card|credentials|password)|someone (else )?(logged|signed) in|account takeover|fraud(ulent)?|"
        r"vulnerabilit(y|ies)|exploit)\b",
        re.I,
    ),
    # An outage that blocks the customer now goes to a person at once, whatever the crew could say.
    "urgent_outage": re.compile(
        r"\b((is|are|went|goes) down|outage|(returns?|returning|throws?|giving) (an? )?(http )?5\d\d|5\d\d (errors?|responses?)|"
        r"service unavailable|production (is )?(down|broken|blocked)|(integration|production|checkout|site|service) (is )?blocked|"
        r"ausfall|ist ausgefallen|caída del servicio|panne)\b",
        re.I,
    ),
}
_REPEAT_WORDS = re.compile(r"\b(again|third time|3rd time|second time|still (not|no)|already (told|contacted|wrote)|keep (having|getting))\b", re.I)


@dataclass(frozen=True)
class RuleHit:
    rule: str
    evidence: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.evidence!r}"


def scan_text(text: str) -> list[RuleHit]:
    hits = []
    for rule, pattern in _RULES.items():
        match = pattern.search(text)
        if match:
            hits.append(RuleHit(rule, match.group(0)))
    return hits


def prior_contacts(*, db: Session, ticket: Ticket, days: int) -> int:
    if not ticket.customer:
        return 0
    since = utcnow() - timedelta(days=days)
    return db.execute(
        select(func.count()).select_from(Ticket).where(Ticket.customer == ticket.customer, Ticket.id != ticket.id, Ticket.created_at >= since)
    ).scalar_one()


def escalation_hits(*, db: Session, ticket: Ticket, triage: Triage | None, repeat_days: int, repeat_threshold: int) -> list[RuleHit]:
    """Rules that force a human, whatever the model said."""
    hits = scan_text(f"{ticket.subject}\n{ticket.body}")
    angry = (triage is not None and triage.sentiment in ("angry", "negative")) or bool(
        re.search(r"!{2,}|\b(unacceptable|furious|ridiculous|outraged)\b", ticket.body, re.I)
    )
    if angry:
        earlier = prior_contacts(db=db, ticket=ticket, days=repeat_days)
        says_repeat = _REPEAT_WORDS.search(ticket.body)
        if earlier >= repeat_threshold or (earlier >= 1 and says_repeat):
            hits.append(RuleHit("angry_repeat_contact", f"{earlier} earlier tickets in {repeat_days} days"))
    return hits
