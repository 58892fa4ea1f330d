"""Priority and sentiment for the embedding design, from word cues (English, German, Spanish). Bitext labels neither,
so these are rules, not measured: urgency, outage, security and legal words make a ticket urgent; an angry tone or
money taken twice makes it high; a pure product question or an `other` ticket is low; the rest normal. Sentiment:
angry on insults, profanity, shouting or 'unacceptable'-type words; negative on disappointment or something broken;
positive on praise (a bare 'thanks' is politeness, not praise); otherwise neutral."""

from __future__ import annotations

import re
from collections.abc import Sequence

from crewdesk.routing.schemas import Intent, Priority, Sentiment


def _words(*words: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + "|".join(words) + r")(?!\w)", re.I)


URGENT = _words(
    "urgent",
    "urgently",
    "asap",
    "immediately",
    "emergency",
    "right now",
    "outage",
    r"(?:site|system|service|production|everything) is down",
    r"down for (?:everyone|all)",
    "hacked",
    "fraud",
    "fraudulent",
    "unauthori[sz]ed",
    "stolen",
    "data breach",
    "security",
    "phishing",
    "lawyer",
    "attorney",
    "legal action",
    "sue",
    "court",
    "gdpr",
    "chargeback",
    "dringend",
    "sofort",
    "notfall",
    "gehackt",
    "betrug",
    "anwalt",
    "datenleck",  # de
    "urgente",
    "inmediatamente",
    "emergencia",
    "hackeado",
    "fraude",
    "abogado",
    "denuncia",  # es
)
HIGH = _words(
    r"charged twice",
    r"double[- ]charged",
    r"(?:third|3rd|second) time",
    r"still (?:not|no|waiting)",
    "weeks ago",
    "zweimal abgebucht",
    "immer noch",
    "dos veces",
    "todavía no",
)
ANGRY = _words(
    "unacceptable",
    "furious",
    "ridiculous",
    "outrageous",
    "disgrace",
    "disgusting",
    "worst",
    "scam",
    "rip-?off",
    "fed up",
    "pathetic",
    "useless",
    "incompetent",
    "damn",
    "goddamn",
    "bloody",
    r"f\*+k\w*",
    r"fuck\w*",
    "shit",
    "wtf",
    "unverschämt",
    "frechheit",
    "wütend",
    "skandal",  # de
    "inaceptable",
    "harto",
    "harta",
    "vergüenza",
    "estafa",
    "furioso",  # es
)
NEGATIVE = _words(
    "disappointed",
    "disappointing",
    "unhappy",
    "not happy",
    "annoyed",
    "annoying",
    "frustrated",
    "frustrating",
    "upset",
    "broken",
    "damaged",
    "wrong",
    "missing",
    "never arrived",
    "not working",
    "doesn't work",
    "does not work",
    "problem",
    "issue",
    "complaint",
    "complain",
    "poor",
    "bad",
    "terrible",
    "awful",
    "enttäuscht",
    "unzufrieden",
    "kaputt",
    "beschädigt",
    "falsch",
    "problem",
    "beschweren",  # de
    "decepcionado",
    "descontento",
    "roto",
    "dañado",
    "queja",
    "problema",
    "pésimo",  # es
)
POSITIVE = _words(
    "great",
    "love",
    "loved",
    "excellent",
    "awesome",
    "amazing",
    "fantastic",
    "happy with",
    "perfect",
    "wonderful",
    "super",
    "toll",
    "hervorragend",
    "zufrieden",
    "genial",
    "excelente",
    "encanta",
)
SHOUTING = re.compile(r"!{3,}|\b[A-Z]{4,}\b(?:\W+\b[A-Z]{4,}\b){2,}")
LOW_INTENTS = frozenset({Intent.product_info, Intent.other})


def sentiment(text: str) -> Sentiment:
    if ANGRY.search(text) or SHOUTING.search(text):
        return Sentiment.angry
    if NEGATIVE.search(text):
        return Sentiment.negative
    if POSITIVE.search(text):
        return Sentiment.positive
    return Sentiment.neutral


def priority(text: str, intents: Sequence[Intent], mood: Sentiment) -> Priority:
    if URGENT.search(text):
        return Priority.urgent
    if mood is Sentiment.angry or HIGH.search(text):
        return Priority.high
    if intents and all(intent in LOW_INTENTS for intent in intents):
        return Priority.low
    return Priority.normal
