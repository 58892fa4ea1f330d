"""The model design: ONE call to the model, its answer constrained by a JSON schema to our enums (no free text), and
the hybrid: the embedding router first, the model only breaking a tie among the embedding's top 3 intents.

The prompt is stable: instructions and every enum's definition in the system message, which never changes, and the
ticket text last, so a local model's KV cache of the prefix is reused from one ticket to the next."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from crewdesk.errors import ModelOutputError
from crewdesk.routing import cues
from crewdesk.routing.embedding import EmbeddingRouter
from crewdesk.routing.schemas import CATEGORY_OF, INTENT_DEFINITIONS, Category, Intent, Priority, Route, Sentiment

MAX_TICKET_CHARS = 4000
MAX_INTENTS = 3
# A constrained answer states no probability; this constant marks a route as the model's unscored word.
MODEL_CONFIDENCE = 0.5


class Decider(Protocol):
    """What the router needs of an LLM: crewdesk's LLM classes provide this `decide` (constrained JSON output)."""

    def decide(self, messages: list[dict[str, str]], schema: dict, *, name: str) -> dict: ...


def _enum(values: Sequence[Any]) -> dict:
    return {"type": "string", "enum": [str(v) for v in values]}


def route_schema() -> dict:
    """intents first: a model constrained in property order commits to what the ticket is about before the rest."""
    return {
        "type": "object",
        "properties": {
            "intents": {"type": "array", "items": _enum(list(Intent)), "minItems": 1, "maxItems": MAX_INTENTS},
            "category": _enum(list(Category)),
            "priority": _enum(list(Priority)),
            "sentiment": _enum(list(Sentiment)),
        },
        "required": ["intents", "category", "priority", "sentiment"],
        "additionalProperties": False,
    }


def tiebreak_schema(choices: Sequence[Intent]) -> dict:
    return {"type": "object", "properties": {"intent": _enum(list(choices))}, "required": ["intent"], "additionalProperties": False}


SYSTEM_PROMPT = "\n".join(
    [
        "You route customer-support tickets. Answer only with the JSON the schema asks for.",
        "intents: what the customer asks for, the main request first, from this list:",
        *(f"- {intent.value}: {definition}" for intent, definition in INTENT_DEFINITIONS.items()),
        "category: billing (orders, returns, exchanges, order status, billing questions), account (account help, default address), "
        "technical (technical issues), other (the rest).",
        "priority: urgent (outage, security, fraud, legal threat, or the customer says urgent), high (money taken wrongly, "
        "repeated contact, angry), normal, low (a question with no problem).",
        "sentiment: positive, neutral, negative, angry.",
    ]
)


def _ticket(text: str) -> str:
    return "Ticket:\n" + text.strip()[:MAX_TICKET_CHARS]


class LLMRouter:
    def __init__(self, llm: Decider) -> None:
        self.llm = llm

    def messages(self, text: str, *, choices: Sequence[Intent] | None = None) -> list[dict[str, str]]:
        prefix = f"Choose the one intent among: {', '.join(c.value for c in choices)}.\n" if choices else ""
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prefix + _ticket(text)}]

    def route(self, text: str) -> Route:
        answer = self.llm.decide(self.messages(text), route_schema(), name="route")
        if not isinstance(answer, dict):
            raise ModelOutputError(f"route: expected a JSON object, got {type(answer).__name__}")
        try:
            intents = [Intent(v) for v in answer["intents"]][:MAX_INTENTS]
            model_category = Category(answer["category"])
            priority, sentiment = Priority(answer["priority"]), Sentiment(answer["sentiment"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelOutputError(f"route: answer outside the schema: {answer!r}") from exc
        if not intents:
            raise ModelOutputError("route: no intent in the answer")
        # The category follows from the primary intent; the model's own category counts only for `other`, which
        # spans every category.
        category = model_category if intents[0] is Intent.other else CATEGORY_OF[intents[0]]
        return Route(intents=intents, category=category, priority=priority, sentiment=sentiment, confidence=MODEL_CONFIDENCE, method="model")

    def choose(self, text: str, choices: Sequence[Intent]) -> Intent:
        """The one intent among `choices` (the schema allows nothing else)."""
        choices = [Intent(c) for c in choices]
        answer = self.llm.decide(self.messages(text, choices=choices), tiebreak_schema(choices), name="route_tiebreak")
        try:
            chosen = Intent(answer["intent"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelOutputError(f"route_tiebreak: answer outside the schema: {answer!r}") from exc
        if chosen not in choices:
            raise ModelOutputError(f"route_tiebreak: {chosen} is not among {[c.value for c in choices]}")
        return chosen


class HybridRouter:
    """Embedding first. When its margin is below `margin_below` (or nothing it knows is near: then the choices are its
    top 2 and `other`), the model picks the primary intent among the embedding's top 3. Priority and sentiment are
    the embedding design's cues; confidence is the embedding's score for the intent finally chosen."""

    def __init__(self, embedding: EmbeddingRouter, model: LLMRouter, *, margin_below: float = 0.3) -> None:
        self.embedding, self.model, self.margin_below = embedding, model, margin_below

    def route(self, text: str) -> Route:
        analysis = self.embedding.analyse(text)
        route = self.embedding.route_analysis(text, analysis)
        whole = analysis.whole
        unknown = whole.similarity < self.embedding.other_below
        if not unknown and whole.margin >= self.margin_below:
            return route
        ranked = [*whole.ranking[:2], Intent.other, *whole.ranking[2:]] if unknown else list(whole.ranking)
        choices = list(dict.fromkeys(ranked))[:3]
        chosen = self.model.choose(text, choices)
        intents = [chosen, *(i for i in route.intents if i is not chosen and i is not Intent.other)][:MAX_INTENTS]
        return route.model_copy(
            update={
                "intents": intents,
                "category": CATEGORY_OF[chosen],
                "priority": cues.priority(text, intents, route.sentiment),
                "confidence": round(whole.intent_scores[chosen], 4),
                "method": "embedding+model",
            }
        )
