"""Which variant of the same product an item is exchanged or changed to. The candidates are the product's available
variants (from the tool); option values the customer named narrow them in code, "cheapest" or "most expensive" picks by
price, and only a real choice left over goes to the model, as an enum of the remaining candidates (or none)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from crewdesk.llm.base import CrewdeskLLM
from crewdesk.store import lexicon
from crews.procedures.state import Item, Order
from crews.procedures.wording import LANGUAGE, Vocabulary, words

NONE = "none"
MAX_CHOICES = 12
FREE_REACH = 4  # words between an option's name and "doesn't matter" / "egal" / "any" that still speak of it
_CHEAPEST = re.compile(r"cheapest|least expensive|lowest price|günstigste|billigste|más barat|moins cher", re.I)
_PRICIEST = re.compile(r"most expensive|priciest|highest price|teuerste|más car|plus cher", re.I)
_WORD = re.compile(r"[^\W_]+")

SYSTEM = (
    "You assist the support team of an online store. The customer wants to exchange or change an item for another variant "
    "of the same product. Choose the numbered variant that matches what the customer asked for, keeping every option they "
    "did not ask to change where possible. Choose none if no variant fits their request."
)


_UNITS = [(re.compile(r"\b(foot|feet)\b"), "ft"), (re.compile(r"\binches\b"), "inch")] + [
    (re.compile(rf"\b{word}\b"), str(n))
    for n, word in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"))
    if n >= 2
]
# Short option values and the words customers use for them.
SYNONYMS = {"s": "small", "m": "medium", "l": "large", "xs": "extra small", "xl": "extra large", "xxl": "extra extra large"}


_CONTRACTION = re.compile(r"(?<=\w)['\u2019](?:s|t|d|ll|re|m|ve)\b", re.I)


_NUMBER_UNIT = re.compile(r"\b(\d+) (gb|tb|mb|ml|l|mah|ft|inch|mp|w|bar|lbs?|mm|cm|k)\b")  # "32 GB" is the value 32GB


def _phrase(value: str) -> str:
    phrase = " ".join(w.lower() for w in _WORD.findall(_CONTRACTION.sub("", value)))  # "it's" has no size S in it
    for pattern, unit in _UNITS:
        phrase = pattern.sub(unit, phrase)
    return _NUMBER_UNIT.sub(r"\1\2", phrase)


def _named(value: str, text: str) -> bool:
    phrase = _phrase(value)
    return bool(phrase) and re.search(rf"(?<![^\W_]){re.escape(phrase)}(?![^\W_])", text) is not None


def _partly_named(value: str, values: set[str], text: str) -> bool:
    """A distinctive word of a longer value ("Google" of "Google Assistant" in "compatible with Google Home") that no other
    value of the same option has; the customer's word for a short value ("medium" for M); or a word the value starts
    with that no other value does ("soft" for "softshell")."""
    others = {w for other in values - {value} for w in _phrase(other).split()}
    if any(len(word) >= 4 and word not in others and _named(word, text) for word in _phrase(value).split()[:-1] or []):
        return True
    if value.lower() in SYNONYMS and re.search(rf"(?<!\btoo )(?<!\bso )(?<!\bis )(?<!\bare )(?<!\bwas )(?<!\bvery )\b{SYNONYMS[value.lower()]}\b", text):
        return True  # "a medium one" asks for M; "it is too small" only says what is wrong with theirs
    phrase = _phrase(value)
    return any(
        len(word) >= 4 and phrase.startswith(word) and phrase != word and not any(_phrase(o).startswith(word) for o in values - {value})
        for word in set(text.split())
    )


@dataclass(frozen=True)
class Nearest:
    """The variant that comes nearest when none changes only what the customer asked: put to them, never written."""

    item: Item
    changes: tuple[str, ...]  # the options it changes that the customer did not ask to change


def candidates(item: Item, product: dict[str, Any]) -> list[Item]:
    return [
        Item(
            order_id=item.order_id,
            item_id=v["item_id"],
            product_id=item.product_id,
            name=item.name,
            options={k: str(x) for k, x in v["options"].items()},
            price=float(v["price"]),
        )
        for v in product["variants"].values()
        if v.get("available") and v["item_id"] != item.item_id
    ]


def _wanted(key: str, values: set[str], lowered: str) -> list[str]:
    named = [value for value in values if _named(value, lowered)] or [value for value in values if _partly_named(value, values, lowered)]
    if len(named) > 1:  # "medium sized, red, high ventilation": the value said next to the option's name
        word = re.escape(_phrase(key).split()[-1])
        beside = [value for value in named if re.search(rf"\b{re.escape(_phrase(value))}\s+{word}|\b{word}\s+(?:of\s+)?{re.escape(_phrase(value))}\b", lowered)]
        named = beside or named
    if "none" in values and re.search(rf"\b(no|without) {re.escape(_phrase(key))}\b", lowered):  # "no backlight"
        named = ["none"]
    return named


def _without_comparisons(text: str) -> str:
    for pattern, _, _ in (*COMPARATIVES, *SUPERLATIVES):
        text = pattern.sub(" ", text)
    return text


_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")


def kept_same(text: str, vocabulary: Vocabulary | None, item: Item | None = None) -> set[str]:
    """The options the customer says stay as they are, in any of the four languages: "same size", "gleiche Farbe",
    "mismo número y de cuero", "même couleur" (a same-word up to three words before the option's name). A sentence that
    names products speaks only of them: "make sure the new shoe is still the same size" keeps no water bottle's capacity."""
    if vocabulary is None:
        return set()
    language = LANGUAGE.get()
    kept: set[str] = set()
    for sentence in _SENTENCE.split(text):
        said = words(sentence)
        spots = [end for _, end in vocabulary.same.spans(said, language)]
        if not spots:
            continue
        mentions = lexicon.load().products_in(sentence, language=language)
        products = {name for m in mentions for name in m.names}
        if item is not None and products and item.name not in products:
            continue
        excepts = [start for start, _ in vocabulary.except_.spans(said, language)]
        for name in lexicon.load().option_names_in(sentence, language=language):
            # "the same helmet, one size bigger": the same-word is the product's, not the option's; "the same, except
            # for the zoom": the option is the one that changes
            if any(
                0 <= name.start - end <= 3 and not any(end <= m.start < name.start for m in mentions) and not any(end <= x < name.start for x in excepts)
                for end in spots
            ):
                kept |= name.names
    return kept


def narrow(item: Item, pool: list[Item], text: str, prefer: str = "", vocabulary: Vocabulary | None = None) -> tuple[list[Item], set[str]]:
    """Apply each option value the customer named (one per option, different from what they have); a filter that would
    leave nothing is skipped. A fallback's own words (prefer) speak first for an option. Returns the pool, ordered by how
    few options change, and the options the customer spoke of."""
    lowered, preferred = _phrase(text), _phrase(prefer)
    spoken: set[str] = set()
    stays = kept_same(text, vocabulary, item)
    free = left_free(f"{prefer} {text}", vocabulary)  # "do not care about waterproof or not": no current value kept
    for key in item.options:
        values = {value for candidate in pool if (value := candidate.options.get(key)) is not None} - {item.options.get(key)}
        ruled_out = excepted(key, values, f"{prefer} {text}", vocabulary)  # "any colour except purple": purple is no wish
        if ruled_out:
            pool = [candidate for candidate in pool if candidate.options.get(key) not in ruled_out] or pool
            values -= ruled_out
            spoken.add(key)
        named = (_wanted(key, values, preferred) if preferred else []) or _wanted(key, values, lowered)
        if not named:  # the catalogue's words for the values, in the customer's language ("luminosité moyenne", "1,5 Liter")
            language = LANGUAGE.get()
            plain, plain_prefer = _without_comparisons(text), _without_comparisons(prefer)  # "less bright" is no value "bright"
            named = sorted((lexicon.load().values_named(plain_prefer, key, language=language) if prefer else set()) & values) or sorted(
                lexicon.load().values_named(plain, key, language=language) & values
            )
        current = item.options.get(key)
        if (
            not named
            and current
            and len(_phrase(current)) > 2
            and SAME_BUT.search(text) is None
            and (
                _named(current, preferred or lowered)
                or (key not in free and current in lexicon.load().values_named(prefer or text, key, language=LANGUAGE.get()))
            )
            and not _describes(current, item, preferred or lowered)
        ):  # "maple, 34 inch, graphic" with 34 inch what they have: it stays
            kept = [candidate for candidate in pool if candidate.options.get(key) == current]
            pool, named = kept, []
            spoken.add(key)
        if len(named) == 1:
            kept = [candidate for candidate in pool if candidate.options.get(key) == named[0]]
            pool = kept or pool
            spoken.add(key)
        listed = "|".join(re.escape(w) for k in item.options for w in _phrase(k).split()) or "and"
        same = re.search(rf"\bsame\b(?:\s+(?:and|or|{listed})){{0,4}}?\s+{re.escape(_phrase(key))}\b", lowered)  # "same material and color"
        if same or key in stays:
            kept = [candidate for candidate in pool if candidate.options.get(key) == item.options.get(key)]
            pool = kept or pool
    return sorted(pool, key=lambda c: (sum(c.options.get(k) != v for k, v in item.options.items()), c.price)), spoken


EXCEPT_REACH = 3  # words after "except" / "außer" / "sauf" that name what is ruled out


def excepted(key: str, values: set[str], text: str, vocabulary: Vocabulary | None) -> set[str]:
    """The values of one option the customer rules out: "any colour except purple", "alles außer Schwarz", "cualquier
    color salvo el rosa", "n'importe quelle couleur sauf le violet" (a value named within a few words after the except-word,
    by its own words or the catalogue's words in the customer's language)."""
    if vocabulary is None or not values:
        return set()
    language = LANGUAGE.get()
    said = words(text)
    out: set[str] = set()
    for _, end in vocabulary.except_.spans(said, language):
        window = " ".join(said[end : end + EXCEPT_REACH])
        out |= {value for value in values if _named(value, _phrase(window))}
        out |= lexicon.load().values_named(window, key, language=language) & values
    return out


def left_free(text: str, vocabulary: Vocabulary | None) -> set[str]:
    """The options the customer leaves to us: "colour doesn't matter", "die Farbe ist mir egal", "me da igual el color",
    "peu importe la couleur", "any size" (an option's name within a few words of such a term, in one clause)."""
    if vocabulary is None:
        return set()
    language = LANGUAGE.get()
    free: set[str] = set()
    for sentence in re.split(r"[,;:]|" + _SENTENCE.pattern, text):  # "a size up, the colour doesn't matter": colour only
        spans = vocabulary.free.spans(words(sentence), language)
        if not spans:
            continue
        for name in lexicon.load().option_names_in(sentence, language=language):
            if any(name.start - end <= FREE_REACH and start - name.end <= FREE_REACH for start, end in spans):
                free |= name.names
    return free


def spoken_of(item: Item, text: str, vocabulary: Vocabulary | None) -> set[str]:
    """The options of their item the customer speaks of: a current value they name ("my green yoga mat", "vinyle vert"),
    or all of them when they ask for the same product ("exactly the same mat, just in pink", "dieselben Schuhe")."""
    language, lowered = LANGUAGE.get(), _phrase(text)
    said = {
        key
        for key, value in item.options.items()
        if (len(_phrase(value)) > 2 and value.lower() not in ("yes", "no", "none") and _named(value, lowered))
        or value in lexicon.load().values_named(text, key, language=language)
    }
    if vocabulary is not None:
        for sentence in _SENTENCE.split(text):
            ends = [end for _, end in vocabulary.same.spans(words(sentence), language)]
            products = [m for m in lexicon.load().products_in(sentence, language=language) if item.name in m.names]
            if any(0 <= m.start - end <= 1 for m in products for end in ends):
                return set(item.options)
    return said


def unasked(item: Item, new: Item, *, asked: set[str], text: str, vocabulary: Vocabulary | None, only: bool, ticket: str = "") -> list[str]:
    """The options the new variant changes that the customer neither asked to change, nor named the new value of, nor
    left to us ("colour doesn't matter"): a variant that changes them is put to the customer, never written ("a medium
    helmet" when no medium comes in their colour). Only: the new variant is the only one that has what they asked for;
    then an option they never spoke of (a shoe's sole) changes with it, but not one they did speak of (named what their
    item has, or asked for the same product: "exactly the same mat, just in pink", "the space grey one"). A new value
    named anywhere in the ticket counts as asked for ("... but my new place has an induction hob")."""
    lowered, free = _phrase(f"{text} {ticket}"), left_free(text, vocabulary)
    # what the customer said of their item anywhere in the ticket ("a fleece jacket in XL, navy. ... in L, but navy"):
    # the clauses read for the item may not hold it
    spoken = spoken_of(item, text, vocabulary) | (spoken_of(item, ticket, vocabulary) if ticket else set())
    return [
        key
        for key, value in item.options.items()
        if new.options.get(key) != value
        and key not in asked
        and key not in free
        and not _named(new.options.get(key, ""), lowered)
        and (key in spoken or not only)
    ]


def _describes(value: str, item: Item, text: str) -> bool:
    """The value only describes the item they have: "the 1000-piece intermediate jigsaw" (right before its name)."""
    heads = [w[:5] for w in _phrase(item.name).split() if len(w) >= 4]
    return any(re.search(rf"{re.escape(_phrase(value))}(?:\s+\w+){{0,3}}?\s+\w*{re.escape(head)}", text) for head in heads)


# "the same one but with clicky switches", "keep everything else the same": only the options named may change.
SAME_BUT = re.compile(
    r"same (?:one|item|model|product|kind|type|thing)?\s*but\b|everything else (?:the )?same|(?:all )?(?:the )?other "
    r"(?:options|specs|specifications|features|attributes)(?:\s+[\w-]+){0,6}?\s+(?:are |be |stay |remain )?(?:the )?same|"
    r"without changing (?:the |any )?other|exact same\b.*\bexcept|(?:the )?rest (?:stays? |should stay |is |can stay )?(?:the same|identical|unchanged)|"
    r"otherwise (?:the same|identical)|everything else (?:identical|unchanged)|"
    # de, es, fr: "Rest gleich", "sonst identisch", "alles andere bleibt gleich"; "lo demás igual"; "le reste identique"
    r"\brest (?:bleibt |soll )?(?:gleich|identisch|unverändert)|(?:sonst|ansonsten) (?:alles )?(?:gleich|identisch)|alles andere (?:bleibt |soll )?(?:gleich|identisch)|"
    r"(?:lo demás|el resto|todo lo demás|resto) (?:igual|idéntico|idéntica|sin cambios)|por lo demás,? igual|"
    r"le reste (?:pareil|identique|inchangé|ne change pas)|tout le reste (?:pareil|identique)|sinon (?:tout )?(?:pareil|identique)",
    re.I,
)


# Option values that order themselves: numbers with their unit (500ml, 1.5L, 32GB, 1TB, 8), and a few word scales.
_SCALE = {
    "low": 1,
    "medium": 2,
    "high": 3,
    "small": 1,
    "large": 3,
    "xs": 0,
    "s": 1,
    "m": 2,
    "l": 3,
    "xl": 4,
    "xxl": 5,
    "beginner": 1,
    "intermediate": 2,
    "expert": 3,
    "basic": 1,
    "professional": 2,
}
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*(tb|gb|mb|ml|l|liters?|k|mp|mah|ft|inch|inches|cups?|hours|w|x|bar|lbs?|pieces?)?\b", re.I)
_UNIT = {"tb": 1000.0, "l": 1000.0, "liter": 1000.0, "liters": 1000.0, "k": 1000.0}
_SIZE_KEYS = ("capacity", "size", "frame size", "screen size", "room size", "storage", "diameter", "height", "length", "pieces", "piece count")
# (words, direction, the option keys they speak of): "a bigger one", "less bright", "one size smaller", "shorter"
COMPARATIVES = [
    (re.compile(r"less bright|not as bright|dimmer|darker|weniger hell|menos brillante|moins lumineu", re.I), -1, ("brightness",)),
    (re.compile(r"brighter|heller|más brillante|plus lumineu", re.I), 1, ("brightness",)),
    (
        re.compile(
            r"bigger|larger|größer|grösser|más grande|plus grand|\d+ more pieces|more pieces|(?:one|a) size up|size up|eine nummer größer|una talla más", re.I
        ),
        1,
        _SIZE_KEYS,
    ),
    (
        re.compile(
            r"smaller|kleiner|más pequeñ|plus petit|\d+ (fewer|less) pieces|fewer pieces|(?:one|a) size down|size down|eine nummer kleiner|una talla menos",
            re.I,
        ),
        -1,
        _SIZE_KEYS,
    ),
    (re.compile(r"longer", re.I), 1, ("length", "battery life")),
    (re.compile(r"shorter", re.I), -1, ("length",)),
    (re.compile(r"lower resolution", re.I), -1, ("resolution",)),
    (re.compile(r"higher resolution", re.I), 1, ("resolution",)),
]
# Superlatives go as far as the variants allow: "the easiest one with the fewest pieces", "maximum zoom".
SUPERLATIVES = [
    (re.compile(r"fewest pieces|least pieces", re.I), -1, ("pieces", "piece count")),
    (re.compile(r"most pieces", re.I), 1, ("pieces", "piece count")),
    (re.compile(r"easiest|simplest", re.I), -1, ("difficulty", "difficulty level")),
    (re.compile(r"hardest|most difficult|most challenging", re.I), 1, ("difficulty", "difficulty level")),
    (re.compile(r"max(?:imum|imal)? zoom|most zoom|highest zoom|longest zoom", re.I), 1, ("zoom",)),
    (re.compile(r"\b(?:biggest|largest)\b", re.I), 1, _SIZE_KEYS),
    (re.compile(r"\bsmallest\b", re.I), -1, _SIZE_KEYS),
    (re.compile(r"\b(?:longest battery|most battery)\b", re.I), 1, ("battery life",)),
    (re.compile(r"\bbrightest\b", re.I), 1, ("brightness",)),
    (re.compile(r"\b(?:dimmest|least bright)\b", re.I), -1, ("brightness",)),
]
_PREFER = re.compile(r"\bprefer(?:s|red|ably)?\b([^.;()]*(?:\([^)]*\))?[^.;]*)", re.I)


def magnitude(value: str) -> float | None:
    word = value.strip().lower()
    if word in _SCALE:
        return float(_SCALE[word])
    match = _NUMBER.search(word)
    if match is None:
        return None
    return float(match.group(1)) * _UNIT.get((match.group(2) or "").lower(), 1.0)


def compared(item: Item, pool: list[Item], text: str) -> tuple[list[Item], dict[str, float]]:
    """Keep the candidates that go the way the customer compared ("bigger", "less bright"); returns the pool and, per
    option compared, the current value (so the nearest step can be preferred: "a bigger one" is the next size up)."""
    anchors: dict[str, float] = {}
    for pattern, direction, keys in COMPARATIVES:
        if not pattern.search(text):
            continue
        for key in keys:
            current = magnitude(item.options.get(key, ""))
            if current is None:
                continue
            kept = [c for c in pool if (m := magnitude(c.options.get(key, ""))) is not None and (m - current) * direction > 0]
            if kept:
                pool, anchors[key] = kept, current
                break
    for pattern, direction, keys in SUPERLATIVES:  # keep only the extreme value left
        if not pattern.search(text):
            continue
        for key in keys:
            known = [(m, c) for c in pool if (m := magnitude(c.options.get(key, ""))) is not None]
            if known:
                extreme = (max if direction > 0 else min)(m for m, _ in known)
                pool, anchors[key] = [c for m, c in known if m == extreme], extreme
                break
    return pool, anchors


def preference_rank(candidate: Item, text: str) -> int:
    """Position of the candidate's best option value in what the customer said they prefer ("battery > USB > AC",
    "i5 over i7"); unranked candidates come after."""
    best = 99
    for match in _PREFER.finditer(text):
        wishes = [w for w in re.split(r">|,|\bover\b|\bthen\b|\bthan\b|\bor\b|\band\b", match.group(1), flags=re.I) if w.strip()]
        for rank, wish in enumerate(wishes):
            phrase = _phrase(wish)
            if phrase and any(
                _named(value, phrase) or phrase in _phrase(value).split() or _phrase(value) in phrase.split() for value in candidate.options.values()
            ):
                best = min(best, rank)
    return best


# "to the same type as the one I already received", "same size as my other one", "gleiche Größe wie die, die ich schon
# habe", "la misma talla que la que ya tengo", "même taille que celle que j'ai déjà": an option's value is the one of the
# customer's other item of this product
_SAME_AS_OTHER = re.compile(
    r"\b(?:same|gleiche[nrs]?|selbe[nrs]?|mism[oa]s?|m[eê]me)\s+(?P<what>(?:[^\W\d_]+\s+){0,2}?)(?:as|wie|que)\s+(?:"
    r"(?:the|that)\s+(?:\w+\s+){0,2}?(?:I|we)\s+(?:already\s+|just\s+)?(?:have|had|got|received|bought|own|ordered|kept)\b|my other\b|the other one\b|"
    r"(?:der|die|das|den)\s*,?\s*(?:der|die|das|den)?\s*ich\b|(?:mein|meine|meinen)\s+ander|"
    r"(?:el|la|los|las)\s+que\s+(?:ya\s+)?(?:tengo|ten[ií]a|recib|compr)|(?:mi|el|la)\s+otr[oa]|"
    r"(?:celui|celle|ceux|celles)\s+(?:que|qu)\s*j|(?:mon|ma)\s+autre|l'autre)",
    re.I,
)


_WHOLE = {"", "one", "model", "kind", "type", "version", "thing", "modell", "art", "typ", "modelo", "tipo", "modele"}


_HELD = re.compile(r"\b(?:have|had|got|received|bought|own|kept|habe|hatte|tengo|ten[ií]a|recib\w*|compr\w*|j'?ai)\b", re.I)


def as_other(text: str, item: Item, orders: list[Order]) -> str:
    """The text with the option values its "same ... as the one I already have" takes from the customer's other item of
    this product: every option when no option is named ("the same one as my other"), else the named ones. Unchanged
    when the customer has no other such item, or their others differ in the options named (that is asked, not guessed),
    or this item is the one they already have and the other is still on its way: it is what is compared with."""
    status = {o.order_id: o.status for o in orders}
    mine = [i for o in orders for i in o.items if i.product_id == item.product_id and i.item_id != item.item_id]
    if not mine:
        return text
    added: list[str] = []
    for found in _SAME_AS_OTHER.finditer(text):
        if (
            _HELD.search(text[found.start() : found.end() + 25])
            and status.get(item.order_id) == "delivered"
            and any(status.get(i.order_id) == "pending" for i in mine)
        ):
            continue  # "change the grill I just ordered to the same type as the one I received": not the received one
        what = _phrase(found.group("what")).strip()
        named = {key for m in lexicon.load().option_names_in(what, language=LANGUAGE.get()) for key in m.names}
        keys = [k for k in item.options if k in named or (_phrase(k) and _phrase(k) in what.split())]
        if what in _WHOLE:  # "the same one", "the same model", "the same type as the one I received": the other item as it is
            keys = list(item.options)
        for k in keys:
            values = {o.options.get(k, "") for o in mine}
            if len(values) == 1 and (value := values.pop()):
                added.append(f"{k} {value}")
    return f"{text} ({', '.join(added)})" if added else text


def of_item(text: str, item: Item) -> str:
    """The text without its sentences that name other products and not this one: in "the brown shelf in 5 ft. The white
    kettle stays." the white is the kettle's. Sentences that name no product stay; when none would be left, nothing is dropped."""
    language = LANGUAGE.get()
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    kept = []
    for sentence in sentences:
        names = {name for m in lexicon.load().products_in(sentence, language=language) for name in m.names}
        if not names or item.name in names:
            kept.append(sentence)
    return "\n".join(kept) if kept and len(kept) < len(sentences) else text


def choose(
    *,
    llm: CrewdeskLLM,
    text: str,
    item: Item,
    product: dict[str, Any],
    prefer: str = "",
    vocabulary: Vocabulary | None = None,
    ask_on_tie: bool = True,
    ticket: str = "",
) -> Item | list[Item] | Nearest | None:
    """The variant the item becomes, None when none fits, or the variants that fit equally well (a list) when the
    customer's words do not tell them apart: those are asked about, not guessed (ask_on_tie; else the model picks). A
    variant that would also change an option the customer did not speak of comes back as Nearest, to be confirmed.
    prefer: a fallback's words, which speak first; ticket: the whole ticket, where a new item's number may be given."""
    for candidate in candidates(item, product):  # the customer gave the new item's number, anywhere in the ticket
        if re.search(rf"\b{re.escape(candidate.item_id)}\b", f"{prefer} {text} {ticket}"):
            return candidate
    whole = f"{prefer} {text}".strip()  # "upgrade all my items to the most expensive (... the new shoe ...)" speaks of every item
    text = of_item(text, item)  # option values are read only where this product, or none, is named
    pool, spoken = narrow(
        item, candidates(item, product), _PREFER.sub(" ", text), _PREFER.sub(" ", prefer), vocabulary
    )  # what they prefer ranks; what they ask for filters
    text = f"{prefer} {text}".strip()
    pool, anchors = compared(item, pool, text)
    cheapest, priciest = bool(_CHEAPEST.search(whole)), bool(_PRICIEST.search(whole))
    if not spoken and not anchors and not cheapest and not priciest and not _PREFER.search(text):
        return None  # nothing said about the new variant: asking beats guessing
    if SAME_BUT.search(text):
        changed = spoken | set(anchors)
        pool = [c for c in pool if all(c.options.get(k) == v for k, v in item.options.items() if k not in changed)]
    if not pool:
        return None
    if cheapest and not priciest:
        return min(pool, key=lambda c: c.price)
    if priciest and not cheapest:
        return max(pool, key=lambda c: c.price)

    def settled(chosen: Item, *, only: bool) -> Item | Nearest:
        changes = unasked(item, chosen, asked=spoken | set(anchors), text=text, vocabulary=vocabulary, only=only, ticket=ticket)
        return Nearest(chosen, tuple(changes)) if changes else chosen

    def rank(c: Item) -> tuple[float, float, int]:
        step = sum(abs((magnitude(c.options[k]) or 0.0) - v) for k, v in anchors.items())
        return preference_rank(c, text), step, sum(c.options.get(k) != v for k, v in item.options.items())

    pool = sorted(pool, key=rank)
    if len(pool) == 1 or rank(pool[0]) < rank(pool[1]):  # one candidate ranks first: by preference, nearest step, fewest changes
        return settled(pool[0], only=len(pool) == 1)
    pool = pool[:MAX_CHOICES]
    if ask_on_tie:
        return [c for c in pool if rank(c) == rank(pool[0])]
    current = ", ".join(f"{k} {v}" for k, v in item.options.items())
    lines = [f"{n}. " + ", ".join(f"{k} {v}" for k, v in c.options.items()) + f" (${c.price:.2f})" for n, c in enumerate(pool, 1)]
    schema = {
        "type": "object",
        "properties": {"variant": {"enum": [str(n) for n in range(1, len(pool) + 1)] + [NONE]}},
        "required": ["variant"],
        "additionalProperties": False,
    }
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Customer's message:\n{text}\n\nItem: {item.name} ({current}), ${item.price:.2f}\nVariants:\n" + "\n".join(lines)},
    ]
    answer = llm.decide(messages, schema, name="choose_variant")["variant"]
    return None if answer == NONE else settled(pool[int(answer) - 1], only=False)
