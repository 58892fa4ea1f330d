"""Which of the customer's items each request applies to. Plain cases are settled in code (the customer named the product
and only one request fits it); the rest is one model decision whose answer is an enum per item: the requests that fit
that item's order, or "keep". The model chooses among what the tools returned; it never types an id."""

from __future__ import annotations

import re
from typing import Any, Protocol

from crewdesk.store import lexicon
from crews.procedures.facts import ORDER_ID
from crews.procedures.spec import ProcedureSpec
from crews.procedures.state import Customer, Item
from crews.procedures.wording import LANGUAGE

KEEP = "keep"


class Decider(Protocol):
    """What the reading needs of a model: one constrained decision (crewdesk.llm.base.CrewdeskLLM.decide)."""

    def decide(self, messages: list[dict[str, str]], schema: dict[str, Any], *, name: str, actor: str | None = None) -> dict[str, Any]: ...


MAX_ASKED = 14
_WORD = re.compile(r"[^\W_]+")
UNIVERSAL = re.compile(r"\b(all|every|everything|entire|whole|alle[sn]?|gesamte?|todos?|todas?|tout|toutes?|tous)\b", re.I)

SYSTEM = (
    "You assist the support team of an online store. The customer's message and the numbered items of their orders follow. "
    "For each item, choose what the customer asks to do with it. Choose keep when the customer does not ask to change that "
    "item, says to keep it, or excludes it. Requests:\n"
)


def _norm(word: str) -> str:
    word = word.lower()
    if len(word) > 5 and word.endswith("lves"):  # shelves, wolves
        return word[:-3] + "f"
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _tokens(text: str) -> set[str]:
    return {_norm(w) for w in _WORD.findall(text)}


# Last words that say too little alone ("set" of a dumbbell set or a luggage set): the word before them must be there too.
GENERIC = frozenset({"set", "kit", "machine", "maker", "bag", "case", "pack", "system", "stand", "holder"})


# Words of a product name that say little alone, so they name nothing without the head word ("smart", "wireless").
PLAIN = frozenset(
    {
        "smart",
        "wireless",
        "electric",
        "digital",
        "portable",
        "mechanical",
        "running",
        "hiking",
        "gaming",
        "office",
        "water",
        "desk",
        "action",
        "cycling",
        "garden",
        "patio",
        "pet",
        "yoga",
        "tea",
        "coffee",
        "air",
        "vacuum",
        "bluetooth",
        "fleece",
        "luggage",
        "makeup",
        "noise",
        "cancelling",
        "indoor",
        "outdoor",
        "robotic",
        "canister",
        "upright",
    }
)


def _match(item: Item, tokens: set[str], compact: str) -> tuple[int, str]:
    """(strength, word): 3 the full name (or run together), 2 its last word or a distinctive other word ("jigsaw" of
    "Jigsaw Puzzle"), 1 a word the last one ends with ("watch" in "Wristwatch"); 0 not named."""
    words = [_norm(w) for w in _WORD.findall(item.name)]
    if not words:
        return 0, ""
    head = words[-1]
    if all(w in tokens for w in words) or "".join(words) in compact:
        return 3, head
    distinctive = next((w for w in words[:-1] if len(w) >= 5 and w not in PLAIN and w in tokens), None)
    if head in GENERIC:
        return (2, head) if len(words) > 1 and words[-2] in tokens else (0, "")
    if head in tokens:
        return 2, head
    if distinctive:
        return 2, head
    suffix = next((t for t in tokens if len(t) >= 4 and head.endswith(t)), None)
    return (1, suffix) if suffix else (0, "")


def _lexicon_matches(items: list[Item], text: str) -> dict[str, tuple[int, str]]:
    """Items named by the catalogue's words for their product ("the hoover", "mi aspiradora", "den Saugroboter"): 3 for a
    term that names one product, 2 for one several products share ("the kettle")."""
    found: dict[str, tuple[int, str]] = {}
    names = {item.name for item in items}
    for mention in lexicon.load().products_in(text, language=LANGUAGE.get()):
        if not mention.names & names:
            continue
        strength = 2 if mention.shared else 3
        for item in items:
            if item.name in mention.names and strength > found.get(item.item_id + item.order_id, (0, ""))[0]:
                found[item.item_id + item.order_id] = (strength, "lexicon:" + mention.term)
    return found


def mentioned_items(items: list[Item], text: str) -> list[Item]:
    """The items the customer named, by their product's name or the catalogue's words for it. A weaker match gives way to
    a stronger one on the same word: "smart watch" names the Smart Watch, not the Wristwatch as well."""
    tokens, compact = _tokens(text), "".join(_WORD.findall(text.lower()))
    lexical = _lexicon_matches(items, text)
    matches = {item.item_id + item.order_id: max(_match(item, tokens, compact), lexical.get(item.item_id + item.order_id, (0, ""))) for item in items}
    best: dict[str, int] = {}
    for strength, word in matches.values():
        if strength:
            best[word] = max(best.get(word, 0), strength)
    return [item for item in items if (m := matches[item.item_id + item.order_id])[0] and m[0] == best[m[1]]]


def named_orders(text: str) -> set[str]:
    return {"#" + m.group(0).lstrip("#") for m in ORDER_ID.finditer(text)}


# A fast first pass on the customer's verbs: when only one kind is there, the other request is not offered for an item.
VERBS = {
    "cancel_order": re.compile(r"\bcancel(?:l?ing)?\b|\bremov|storn|cancelar|anular|annul|no longer need|don't need|do not need", re.I),
    "return_items": re.compile(r"return|refund|(send|take) (it |them )?back|zurück|erstatt|devol|reembols|retourn|rembours", re.I),
    "exchange_items": re.compile(r"exchang|swap|replac|switch|upgrade|instead|tausch|cambi|échang|remplac", re.I),
    "modify_order": re.compile(r"exchang|swap|replac|switch|upgrade|instead|modif|chang(?:e|ed|ing)\b|tausch|änder|cambi|échang|remplac", re.I),
}


def said_intents(text: str) -> list[str]:
    return [intent for intent, verbs in VERBS.items() if verbs.search(text)]


# Customers say "modify" for a delivered item and "exchange" for a pending one: the order's status tells which it is.
ONE_REQUEST = {"modify_order": "exchange_items", "exchange_items": "modify_order"}


def options_for(item: Item, customer: Customer, procedures: list[ProcedureSpec], text: str = "") -> list[str]:
    """The requests that fit this item's order status, narrowed to the ones the customer's verbs name (none left: they
    asked for something this order cannot have)."""
    status = next(o.status for o in customer.orders if o.order_id == item.order_id)
    options = [p.intent for p in procedures if status in p.orders]
    said = [intent for intent in said_intents(text) if intent in {p.intent for p in procedures}]
    said += [ONE_REQUEST[i] for i in said if i in ONE_REQUEST and ONE_REQUEST[i] not in said]
    return [intent for intent in said if intent in options] if said else options


def misfit(item: Item, procedures: list[ProcedureSpec], text: str) -> str | None:
    """A request the customer named for an item whose order cannot have it ("return" a pending order): it goes to its
    procedure anyway, whose policy check refuses it with the rule, so the reply can say why (and a fallback can apply)."""
    said = [intent for intent in said_intents(text) if intent in {p.intent for p in procedures}]
    return said[0] if said else None


def assign(*, llm: Decider, text: str, customer: Customer, procedures: list[ProcedureSpec], scoped: bool = False, prefer: str = "") -> dict[str, list[Item]]:
    """intent -> the items it applies to, for the item-level procedures of this ticket. scoped: the customer's orders hold
    only the items a fallback is about, so each of them is meant.
    Meant are the items the customer named (all of an order named by its number with none of its items named, all of
    them when they say "everything" or "all my orders"), less the ones they excepted. Each meant item's request comes from
    the verbs of the sentences that speak of it; only an item with more than one request open goes to the model."""
    if scoped:
        return _assign_scoped(llm=llm, text=prefer if said_intents(prefer) else text, customer=customer, procedures=procedures)
    sentences = [s for s in _SENTENCES.split(text) if s.strip()]
    orders = named_orders(text)
    pending = [o.order_id for o in customer.orders if o.status == "pending"]
    referenced = set(pending) if len(pending) == 1 and _THE_PENDING.search(text) else set()  # "my pending order": the only one
    blanket = _blanket(customer, procedures, sentences)
    every_item = [i for o in customer.orders for i in o.items]
    excepted = {id(i) for i in mentioned_items(every_item, " ".join(m.group(1) for m in _EXCEPT_CLAUSE.finditer(text)))} | {
        id(i) for i in mentioned_items(every_item, " ".join(m.group(1) for m in _KEEP_CLAUSE.finditer(text)))
    }
    named_items = {
        id(item)
        for item in narrow_named(customer, mentioned_items(every_item, _REFERENCE.sub(" ", _KEEP_CLAUSE.sub(" ", _EXCEPT_CLAUSE.sub(" ", text)))), text)
    }
    settled: dict[str, list[Item]] = {p.intent: [] for p in procedures}
    asked: list[tuple[Item, list[str]]] = []
    any_verbs = bool(said_intents(text))
    for order in customer.orders:
        if orders and order.order_id not in orders:
            continue
        whole = order.order_id in orders | referenced and not any(id(item) in named_items for item in order.items)  # "cancel order #W…"
        for item in order.items:
            if id(item) in excepted or not (id(item) in named_items or whole or id(item) in blanket):
                continue
            about = _about(item, sentences, every_item, only_pending=pending == [order.order_id])
            if id(item) in named_items and order.status != "delivered" and _RECEIVED.search(_clause_naming(item, sentences)):
                continue  # "the garden hose I received": not the one still pending
            if id(item) not in named_items and not whole:
                options = sorted(blanket[id(item)], key=ORDER_OF.index)
            elif any_verbs and not said_intents(about) and not whole:
                continue  # named only in a question ("what storage does my tablet have?"): nothing to do to it
            else:
                options = options_for(item, customer, procedures, about or text) or sorted(blanket.get(id(item), ()), key=ORDER_OF.index)
            if len(options) == 1:
                settled[options[0]].append(item)
            elif options:
                asked.append((item, options))
            elif id(item) in named_items and order.status != "cancelled" and (wanted := misfit(item, procedures, about or text)):
                settled[wanted].append(item)
    if not named_items and not orders and not blanket:  # nothing named: the customer described the items; the model reads them all
        asked = [(item, options) for order in customer.orders for item in order.items if (options := options_for(item, customer, procedures, text))]
    if asked:
        for intent, items in _ask(llm, text, customer, procedures, asked[:MAX_ASKED]).items():
            settled[intent].extend(items)
    return settled


_SENTENCES = re.compile(
    r"(?<=[.!?;])\s+|\n+|,\s*(?:and |but )?(?=(?:then |also |finally |lastly )?(?:I |you |we )?(?:also )?(?:want|would like|need|wish)?\s*(?:to )?"
    r"(?:return|exchange|cancel|change|modify|swap|replace|send back|refund)\b)|\s+and\s+(?=(?:I |you )?(?:also )?(?:want to |would like to )?(?:return|exchange|cancel|change|modify|swap|replace)\b)",
    re.I,
)
EVERYTHING = re.compile(
    r"\b(everything|every (?:item|thing|order)|all (?:of )?(?:the |my |your |our |these |those )?(?:\w+ )?(?:items|things|orders|stuff|products)(?!\s+(?:I|you|we|that|which)\b)|"
    r"all (?:of )?(?:it|them)|alles|alle meine|todo|todos mis|todas mis|tout|toutes mes|tous mes)\b",
    re.I,
)
_EXCEPT_CLAUSE = re.compile(r"\b(?:except|other than|apart from|but not|besides|außer|ausser|excepto|salvo|menos|sauf|hormis)\b([^.;!?]*)", re.I)
_ONE_BY_PRICE = re.compile(
    r"\b(?:return|cancel|exchange|refund|send back|keep)\w*\s+the\s+(?P<way>more expensive|pricier|most expensive|less expensive|cheaper|cheapest|least expensive)\s+one\b",
    re.I,
)
_KEEP_CLAUSE = re.compile(r"\b(?:keep|keeping|behalten|conservar|garder)\s+(?:the |my |a |an )?([^.,;()]+)", re.I)
_NEGATED_REQUEST = re.compile(r"\b(?:do not|don't|never|not)\s+(?:want|wish|need)\s+to\b|\bnot to\b", re.I)
_RECEIVED = re.compile(
    r"\b(?:I|you|we) (?:have |just )?(?:received|got delivered)\b|\b(?:the one|ones?) (?:I|you) (?:have |just )?received\b|\breceived\b(?= (?:it|them|the|my))",
    re.I,
)
_POINTS_BACK = re.compile(r"\b(it|them|one|ones|these|those|both|either)\b", re.I)
_THE_PENDING = re.compile(r"\b(?:my|the|your) pending order\b(?!s)", re.I)
_SAME_ORDER = re.compile(r"\b(?:in|from) the same order\b", re.I)
_DIFFERENT_ORDERS = re.compile(r"different orders|other orders?|another order|separate orders|\ball\b|\bboth\b", re.I)
# "the backpack I received with the vacuum cleaner": the vacuum cleaner only says which backpack.
_REFERENCE = re.compile(
    r"\b(?:received|bought|came|ordered|got|purchased|arrived)\s+(?:together\s+)?with\s+(?:the|my|a|an)\s+[^.,;]{1,30}?(?=[.,;]|$|\s+and\b)", re.I
)


ORDER_OF = ("cancel_order", "modify_order", "return_items", "exchange_items")


def _blanket(customer: Customer, procedures: list[ProcedureSpec], sentences: list[str]) -> dict[int, set[str]]:
    """Items meant by "everything" / "all my pending orders" and the requests those sentences make of them ("cancel all
    pending orders" reaches only pending ones; "return everything" only what can be returned)."""
    blanket: dict[int, set[str]] = {}
    for sentence in sentences:
        match, verbs = EVERYTHING.search(sentence), said_intents(sentence)
        if match is None or not verbs or HEDGE.search(sentence) or _NEGATED_REQUEST.search(sentence):
            continue
        wanted = (
            "pending"
            if re.search(r"pending|offen|pendiente|en attente", match.group(0), re.I)
            else "delivered"
            if re.search(r"deliver|receiv|got", sentence, re.I)
            else None
        )
        named = named_orders(sentence)
        for order in customer.orders:
            if (wanted and order.status != wanted) or (named and order.order_id not in named):
                continue
            fits = {p.intent for p in procedures if order.status in p.orders and p.intent in verbs}
            for item in order.items:
                if fits:
                    blanket.setdefault(id(item), set()).update(fits)
    return blanket


def narrow_named(customer: Customer, named: list[Item], text: str) -> list[Item]:
    """ "the more expensive one" of two items of the same product picks one of them; "in the same order" keeps the order
    that holds most of the products named."""
    by_price = _ONE_BY_PRICE.search(text)
    if by_price:
        dearer = not re.search(r"less|cheap", by_price.group("way"), re.I)
        groups: dict[str, list[Item]] = {}
        for item in named:
            groups.setdefault(item.name, []).append(item)
        named = [i for i in named if len(groups[i.name]) == 1] + [(max if dearer else min)(g, key=lambda i: i.price) for g in groups.values() if len(g) > 1]
    named = _told_apart(named, text, {o.order_id: o.status for o in customer.orders})
    kinds = {o.order_id: {i.name for i in named if i.order_id == o.order_id} for o in customer.orders}
    best = max(kinds.values(), key=len, default=set())
    if len(best) > 1 and (_SAME_ORDER.search(text) or (best == {i.name for i in named} and not _DIFFERENT_ORDERS.search(text))):
        keep = next(order_id for order_id, names in kinds.items() if names == best)
        named = [i for i in named if i.order_id == keep or i.name not in best]
    return named


# "check whether I could return the vacuum, but don't process anything": a question, not a request.
HEDGE = re.compile(
    r"\bwhether\b|not sure|at a later time|later on|\bnever\b|consider(?:ing)? |thinking (?:about|of) |do(?:n't| not) (?:process|do|change) (?:it|anything|them)|don't process|just (?:asking|checking)|\bcheck (?:if|whether)",
    re.I,
)


def _clause_naming(item: Item, sentences: list[str]) -> str:
    """The clauses that name this item's product."""
    return " ".join(s for s in sentences if mentioned_items([item], s))


SIZE_WORDS = {"xs": "extra small", "s": "small", "m": "medium", "l": "large", "xl": "extra large", "xxl": "extra extra large"}


def _told_apart(named: list[Item], text: str, statuses: dict[str, str]) -> list[Item]:
    """Several named items of the same product: keep the ones an option value said just before the name ("the small
    t-shirt") or as "the <value> one" ("the robotic one") belongs to, or whose order's status it names ("the pending
    boots"), when the others lack it."""
    lowered = text.lower()
    groups: dict[str, list[Item]] = {}
    for item in named:
        groups.setdefault(item.name, []).append(item)
    keep: list[Item] = []
    for name, group in groups.items():
        if len(group) < 2:
            keep.extend(group)
            continue
        head = re.escape(_WORD.findall(name)[-1].lower()[:5])
        said = {w for m in re.finditer(rf"((?:[\w-]+\s+){{1,2}})[\w-]*{head}", lowered) for w in m.group(1).split()} | {
            m.group(1) for m in re.finditer(r"\bthe ([\w-]+) one\b", lowered)
        }

        def has(item: Item, word: str) -> bool:
            values = (
                {v.lower() for v in item.options.values()} | {SIZE_WORDS.get(v.lower(), "") for v in item.options.values()} | {statuses.get(item.order_id, "")}
            )
            return word in values or any(word in v.split() for v in values if v)

        current = group
        for word in sorted(w for w in said if len(w) > 2):  # each word the customer said narrows, when it tells some apart
            hits = [i for i in current if has(i, word)]
            if hits and len(hits) < len(current):
                current = hits
        keep.extend(current)
    return keep


def _about(item: Item, sentences: list[str], every_item: list[Item], only_pending: bool = False) -> str:
    """The sentences that speak of this item (by its name or its order's number, or "my pending order" when it is the
    only one), and a sentence right after one of them that names no item of its own ("I received two tablets. I want
    to return the more expensive one.")."""
    about, previous = [], False
    for sentence in [s for s in sentences if not HEDGE.search(s)]:
        mine = bool(mentioned_items([item], sentence)) or item.order_id.lstrip("#") in sentence or (only_pending and bool(_THE_PENDING.search(sentence)))
        if mine or (previous and _POINTS_BACK.search(sentence) and not mentioned_items(every_item, sentence) and not ORDER_ID.search(sentence)):
            about.append(sentence)
        previous = mine
    return " ".join(about)


def _assign_scoped(*, llm: Decider, text: str, customer: Customer, procedures: list[ProcedureSpec]) -> dict[str, list[Item]]:
    settled: dict[str, list[Item]] = {p.intent: [] for p in procedures}
    asked: list[tuple[Item, list[str]]] = []
    for order in customer.orders:
        for item in order.items:
            options = options_for(item, customer, procedures, text)
            if len(options) == 1:
                settled[options[0]].append(item)
            elif options:
                asked.append((item, options))
    if asked:
        for intent, items in _ask(llm, text, customer, procedures, asked[:MAX_ASKED]).items():
            settled[intent].extend(items)
    return settled


def _ask(llm: Decider, text: str, customer: Customer, procedures: list[ProcedureSpec], asked: list[tuple[Item, list[str]]]) -> dict[str, list[Item]]:
    statuses = {o.order_id: o.status for o in customer.orders}
    lines = [f"{n}. {item.label()}, order {item.order_id} ({statuses[item.order_id]}), ${item.price:.2f}" for n, (item, _) in enumerate(asked, 1)]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {str(n): {"enum": [*options, KEEP]} for n, (_, options) in enumerate(asked, 1)},
        "required": [str(n) for n in range(1, len(asked) + 1)],
        "additionalProperties": False,
    }
    requests = "\n".join(f"- {p.intent}: {p.description}" for p in procedures)
    messages = [
        {"role": "system", "content": SYSTEM + requests + f"\n- {KEEP}: no change."},
        {"role": "user", "content": f"Customer's message:\n{text}\n\nItems:\n" + "\n".join(lines)},
    ]
    answer = llm.decide(messages, schema, name="assign_items")
    chosen: dict[str, list[Item]] = {}
    for n, (item, _) in enumerate(asked, 1):
        if answer[str(n)] != KEEP:
            chosen.setdefault(answer[str(n)], []).append(item)
    return chosen


class RulesOnly:
    """Stands in for the model where only the rules' own reading is wanted: every item the rules leave open is kept."""

    def decide(self, messages: list[dict[str, str]], schema: dict[str, Any], *, name: str, actor: str | None = None) -> dict[str, Any]:
        return dict.fromkeys(schema.get("properties", {}), KEEP)


ARBITRATE = (
    "You check a support team's reading of a customer's message. Two readings of what the customer asks follow. Choose "
    "the one that is exactly what the customer asks for (the right items, the right request for each), or neither if "
    "neither is."
)


def describe(chosen: dict[str, list[Item]]) -> str:
    words = {"cancel_order": "cancel", "modify_order": "change", "return_items": "return", "exchange_items": "exchange"}
    parts = []
    for intent, items in chosen.items():
        if items:
            parts.append(f"{words.get(intent, intent)}: " + "; ".join(f"{i.label()} (order {i.order_id})" for i in items))
    return " | ".join(parts) or "nothing"


def arbitrate(*, llm: Decider, text: str, customer: Customer, readings: list[dict[str, list[Item]]]) -> int | None:
    """Which of the readings the model takes for what the customer asks (an index), or None for neither: one constrained
    choice among what the readers found, never a reading of its own."""
    letters = [chr(ord("A") + n) for n in range(len(readings))]
    lines = [f"{letter}. {describe(chosen)}" for letter, chosen in zip(letters, readings, strict=True)]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"reading": {"enum": [*letters, "neither"]}},
        "required": ["reading"],
        "additionalProperties": False,
    }
    messages = [
        {"role": "system", "content": ARBITRATE},
        {"role": "user", "content": f"Customer's message:\n{text}\n\nReadings:\n" + "\n".join(lines)},
    ]
    answer = llm.decide(messages, schema, name="arbitrate_reading")["reading"]
    return None if answer == "neither" else letters.index(answer)
