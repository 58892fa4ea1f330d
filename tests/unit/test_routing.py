"""Routing: the Bitext mapping, the embedding router on the real all-MiniLM-L6-v2 (offline; built on a subset of the
examples to stay fast), the one-call model router and the hybrid. No model server here: a small stand-in object with
the `decide(messages, schema, *, name)` method of crewdesk's LLM classes plays the model and records what it is sent.
The phrasings routed below are ours, written for this test: none is in Bitext or in the seed examples."""

from __future__ import annotations

import json
from collections import defaultdict
from importlib.resources import files

import pytest

from crewdesk.errors import ModelOutputError
from crewdesk.memory.embeddings import Embedder, local_embedder
from crewdesk.routing.cues import priority, sentiment
from crewdesk.routing.embedding import EmbeddingRouter, segments
from crewdesk.routing.examples import bitext_examples, seed_examples
from crewdesk.routing.mapping import BITEXT_TO_INTENT
from crewdesk.routing.model import SYSTEM_PROMPT, HybridRouter, LLMRouter
from crewdesk.routing.schemas import CATEGORY_OF, Category, Intent, Priority, Route, Sentiment

PER_LABEL = 40  # Bitext rows per intent in the test router (of ~135); all 238 seed rows


class CountingEmbedder(Embedder):
    """The real MiniLM, counting the texts it embeds."""

    name, dimension = "all-MiniLM-L6-v2", 384

    def __init__(self) -> None:
        self.texts = 0

    def embed_documents(self, texts):
        self.texts += len(texts)
        return local_embedder().embed_documents(texts)


@pytest.fixture(scope="module")
def examples():
    kept: dict[str, int] = defaultdict(int)
    subset = []
    for example in bitext_examples():
        kept[example.label] += 1
        if kept[example.label] <= PER_LABEL:
            subset.append(example)
    return subset + seed_examples()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("routing-cache")


@pytest.fixture(scope="module")
def router(examples, cache_dir):
    return EmbeddingRouter(examples, cache_dir=cache_dir)


class StandInModel:
    """Stands in for a crewdesk LLM's decide(): answers from a script and records every call."""

    def __init__(self, answer=None) -> None:
        self.answer = answer
        self.calls: list[tuple[list[dict[str, str]], dict, str]] = []

    def decide(self, messages: list[dict[str, str]], schema: dict, *, name: str) -> dict:
        self.calls.append((messages, schema, name))
        return self.answer(schema) if callable(self.answer) else self.answer


def test_every_bitext_intent_in_the_file_is_mapped_and_every_intent_has_a_category():
    rows = [json.loads(line) for line in files("crewdesk.routing").joinpath("bitext/train.jsonl").read_text().splitlines()]
    assert len(rows) == 3612 and {r["intent"] for r in rows} == set(BITEXT_TO_INTENT) and len(BITEXT_TO_INTENT) == 27
    assert set(CATEGORY_OF) == set(Intent)
    assert CATEGORY_OF[Intent.return_items] is Category.billing and CATEGORY_OF[Intent.change_default_address] is Category.account
    seeds = seed_examples()
    assert {s.intent for s in seeds} == set(Intent) and len(seeds) == 238  # every intent has seed rows, DE, ES and FR included
    for missing_in_bitext in (Intent.return_items, Intent.exchange_items, Intent.product_info, Intent.technical_issue):
        assert sum(s.intent is missing_in_bitext and s.label == missing_in_bitext.value for s in seeds) >= 15


def test_route_model_validates():
    route = Route(
        intents=[Intent.return_items, Intent.return_items, Intent.complaint],
        category=Category.billing,
        priority=Priority.normal,
        sentiment=Sentiment.neutral,
        confidence=0.7,
        method="embedding",
    )
    assert route.intents == [Intent.return_items, Intent.complaint] and route.intent is Intent.return_items
    with pytest.raises(ValueError):
        Route(intents=[], category=Category.other, priority=Priority.low, sentiment=Sentiment.neutral, confidence=0.5, method="model")


def test_segments_split_sentences_and_second_requests():
    assert segments("I want to return the lamp and also change my default address") == ["I want to return the lamp", "change my default address"]
    assert segments("Hi. My parcel never came!\nAlso I was billed twice for it.") == ["Hi. My parcel never came!", "I was billed twice for it."]
    assert segments("Where is my order?") == ["Where is my order?"]


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Could I get the sweater in a medium instead of the large you sent?", Intent.exchange_items),
        ("Can I still add a phone case to order 881 before it ships?", Intent.modify_order),
        ("where is my parcel, it should have arrived by now", Intent.order_status),
        ("I need to talk to a real person please", Intent.human_handoff),
        ("After updating, the app shows an error and closes", Intent.technical_issue),
        ("Kann ich bitte mit einem Mitarbeiter telefonieren?", Intent.human_handoff),
        ("¿Me pueden decir cuándo me llega el pedido 5512?", Intent.order_status),
    ],
)
def test_fresh_phrasings_are_routed(router, text, intent):
    route = router.route(text)
    assert route.intent is intent and route.category is CATEGORY_OF[intent] and route.method == "embedding", route


def test_a_ticket_asking_two_things_gets_both_intents(router):
    route = router.route("I want to return the lamp and also change my default address")
    assert set(route.intents) == {Intent.return_items, Intent.change_default_address}, route


def test_priority_and_sentiment_cues():
    route_text = "You charged my card twice for the same order, this is unacceptable!!!"
    assert sentiment(route_text) is Sentiment.angry and priority(route_text, [Intent.billing_question], Sentiment.angry) is Priority.high
    assert priority("Someone hacked my account and ordered things", [Intent.account_help], Sentiment.neutral) is Priority.urgent
    assert sentiment("Ich bin sehr enttäuscht") is Sentiment.negative and sentiment("Great shoes, I love them") is Sentiment.positive
    assert priority("Do you have it in red?", [Intent.product_info], Sentiment.neutral) is Priority.low


def test_example_vectors_are_cached_by_data_and_embedder(examples, cache_dir, router):
    counting = CountingEmbedder()
    again = EmbeddingRouter(examples, embedder=counting, cache_dir=cache_dir)
    assert counting.texts == 0 and again.cache_path(cache_dir).exists() and (again.vectors == router.vectors).all()
    fewer = EmbeddingRouter(examples[:-1], embedder=counting, cache_dir=cache_dir)  # other data: another key, embedded afresh
    assert counting.texts == len(examples) - 1 and fewer.cache_path(cache_dir) != again.cache_path(cache_dir)


def test_llm_router_sends_one_call_constrained_to_our_enums_and_parses_it():
    model = StandInModel({"intents": ["return_items", "change_default_address"], "category": "billing", "priority": "normal", "sentiment": "negative"})
    route = LLMRouter(model).route("The lamp arrived broken. I want to send it back, and my address changed too.")
    [(messages, schema, name)] = model.calls
    assert name == "route" and schema["additionalProperties"] is False
    props = schema["properties"]
    assert list(props) == ["intents", "category", "priority", "sentiment"] and set(schema["required"]) == set(props)
    assert props["intents"]["items"]["enum"] == [i.value for i in Intent] and (props["intents"]["minItems"], props["intents"]["maxItems"]) == (1, 3)
    assert props["category"]["enum"] == [c.value for c in Category]
    assert props["priority"]["enum"] == [p.value for p in Priority] and props["sentiment"]["enum"] == [s.value for s in Sentiment]
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}  # the same prefix for every ticket
    assert messages[-1]["content"].endswith("my address changed too.")  # the ticket last
    assert route == Route(
        intents=[Intent.return_items, Intent.change_default_address],
        category=Category.billing,
        priority=Priority.normal,
        sentiment=Sentiment.negative,
        confidence=0.5,
        method="model",
    )
    other = LLMRouter(StandInModel({"intents": ["other"], "category": "technical", "priority": "low", "sentiment": "neutral"})).route("hm")
    assert other.category is Category.technical  # `other` spans categories: the model's own category counts
    with pytest.raises(ModelOutputError):
        LLMRouter(StandInModel({"intents": ["refund_please"], "category": "billing", "priority": "normal", "sentiment": "neutral"})).route("x")


def test_hybrid_asks_the_model_only_below_the_margin_and_only_among_the_top_three(router):
    text = "The blender I got on Tuesday is not what I expected, how can I send it back for my money?"
    whole = router.analyse(text).whole
    top3 = [i.value for i in whole.ranking[:3]]
    sure = StandInModel()
    assert HybridRouter(router, LLMRouter(sure), margin_below=whole.margin).route(text).method == "embedding" and sure.calls == []

    unsure = StandInModel(lambda schema: {"intent": schema["properties"]["intent"]["enum"][1]})  # picks the embedding's runner-up
    route = HybridRouter(router, LLMRouter(unsure), margin_below=whole.margin + 0.01).route(text)
    [(messages, schema, name)] = unsure.calls
    assert name == "route_tiebreak" and schema["properties"]["intent"]["enum"] == top3
    assert messages[0]["content"] == SYSTEM_PROMPT and messages[-1]["content"].endswith(text)
    assert route.method == "embedding+model" and route.intent.value == top3[1] and route.category is CATEGORY_OF[route.intent]


def test_build_router_defaults_to_the_embedding_design_and_needs_an_llm_for_the_others():
    from crewdesk.routing.router import DEFAULT_DESIGN, build_router

    assert DEFAULT_DESIGN == "embedding"
    with pytest.raises(ValueError, match="needs an LLM"):
        build_router(cache_dir=None, design="hybrid")
    assert isinstance(build_router(cache_dir=None, llm=StandInModel(), design="model"), LLMRouter)
