"""The request reader: which of the customer's items each request in a ticket is about, read clause by clause.

A ticket is split into clauses. In each, the catalogue's words (crewdesk/store/lexicon.py) find the products named and
the vocabulary (tasks/procedures/vocabulary.yaml, read by crews/procedures/wording.py) finds what is asked: cancel,
return, change (exchange a delivered item, or another variant of a pending one), keep, or a question. Then:

- products named after "with" behind a product or an order ("the tee that came with the garden hose", "the order with
  the boots and the keyboard") only say which item or order is meant;
- a clause that asks without naming a product ("swap them", "devolverla", "can you sort that out?") is about the items
  named last, or the order named last when it says "order";
- a clause that names an option value an item does not have ("an XL would fit me better", "in Größe 9") or compares
  ("one size bigger") asks to change that item;
- items named in a keep clause ("the kettle and the boots are staying with me"), and the rest of the order when a keep
  clause says so ("the rest I'm keeping", "alles andere soll so bleiben"), are left alone;
- money words alone ("refund to my card please") say where the money goes, not what comes back;
- a product that fits several of the customer's items is narrowed by the order status the request needs, the order
  numbers, statuses, places and option values the customer names, and the other products named with it; "both" or
  "all" takes them all. What is still ambiguous is returned as such, to be asked, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from crewdesk.store import lexicon as catalogue
from crews.procedures import decide, nearest, variants
from crews.procedures.facts import ORDER_ID
from crews.procedures.spec import ProcedureSpec
from crews.procedures.state import Customer, Item
from crews.procedures.wording import Vocabulary, words

REQUESTS = ("cancel", "return", "change")
# The procedure each request is, by the status of the item's order; a request the order cannot have goes to the
# procedure named for it anyway, whose policy refuses it with the reason (a return of a pending order is explained).
INTENT = {
    ("cancel", "pending"): "cancel_order",
    ("change", "pending"): "modify_order",
    ("return", "delivered"): "return_items",
    ("change", "delivered"): "exchange_items",
}
MISFIT = {"cancel": "cancel_order", "return": "return_items", "change": "modify_order"}
FITS = {"cancel": ("pending",), "return": ("delivered",), "change": ("pending", "delivered")}
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+|(?<=[.!?])(?=[A-Z¿¡])")
_CONJUNCTION = re.compile(
    r"(?:,\s*|\s+)(?:and|but|also|plus|then|und|aber|sowie|y|e|pero|tambien|también|et|mais|aussi)\s+|\s*[,(;]\s*|\)\s*|\s+[-\u2013\u2014]\s+", re.I
)
_UNITS = re.compile(r"\b(two|2|zwei|dos|deux|three|drei|tres|trois|3)\b")  # how many units of one item, when it came twice
_CONTRAST = re.compile(r"^(?:,\s*|\s+)?(?:but|aber|pero|mais)\s+$", re.I)  # the cut before a piece is a "but"
ORDER_WORDS = re.compile(r"\b(orders?|bestellung\w*|pedidos?|commandes?|box|package|parcel|paket|lieferung|paquete|caja|colis)\b", re.I)
# Words that head a describing phrase: "the order with", "the one with", "the tee that came with".
_HEADS = frozenset(words("order orders box package parcel delivery shipment bestellung paket lieferung pedido paquete caja envio commande colis livraison"))
# right before "with" only: "(the big one with the coffee maker)", "celle avec les lunettes" (not "the same one but with")
_ONE = frozenset(["one", "ones", "celle", "celui", "celles", "ceux"])
_OF = frozenset(["del", "de"])  # the vocabulary's "with" words that mean "of": only behind an order word
# What "all" is about when it asks for every item: "all my items", "alle meine Artikel", "todos mis pedidos".
# an every-word before these counts occasions, not items
_TIMES = frozenset({"time", "times", "mal", "vez", "veces", "fois", "day", "week", "month", "year", "season"})
ITEM_NOUNS = frozenset(
    words(
        "items item things stuff products orders order purchases artikel sachen produkte bestellungen articulos cosas productos pedidos compras articles choses produits commandes achats"
    )
)
_EVERYTHING = frozenset(words("everything alles todo tout"))
_TWO = frozenset(words("both beide beiden ambos ambas"))
MONEY = re.compile(r"\b(refund\w*|money back|erstatt\w*|ruckerstatt\w*|reembols\w*|rembours\w*)\b", re.I)
_ADDRESS = re.compile(r"address|adresse|dirección|direccion|anschrift", re.I)


def key(item: Item) -> tuple[str, str, int]:
    return (item.order_id, item.item_id, id(item))


@dataclass
class Mention:
    items: list[Item]  # the customer's items this product name fits
    start: int
    end: int
    descriptor: bool  # only says which order or item is meant


@dataclass
class Clause:
    text: str
    said: list[str]
    kinds: set[str]
    mentions: list[Mention]
    order_ids: set[str]
    statuses: set[str]
    negated: bool
    hedged: bool
    rest: bool
    every: bool
    excepted: list[Mention] = field(default_factory=list)  # "everything except the coffee machine"
    methods: bool = False  # names a payment method
    price: int = 0  # +1 "the more expensive one", -1 "the cheaper one"
    blanket: bool = False  # "all my items", "everything": every item the request fits, whatever else is named
    near: dict[int, set[str]] = field(default_factory=dict)  # mention start -> the order statuses said beside it

    @property
    def targets(self) -> list[Mention]:
        return [m for m in self.mentions if not m.descriptor]

    @property
    def described(self) -> list[Mention]:
        return [m for m in self.mentions if m.descriptor]

    @property
    def requests(self) -> list[str]:
        return [k for k in REQUESTS if k in self.kinds]


@dataclass
class ItemReading:
    chosen: dict[str, list[Item]] = field(default_factory=dict)  # intent -> items
    ambiguous: list[list[Item]] = field(default_factory=list)  # items a request fits equally: ask which
    kept: list[Item] = field(default_factory=list)
    about: dict[tuple[str, str, int], str] = field(default_factory=dict)  # item -> the clauses that speak of it
    unresolved: list[str] = field(default_factory=list)  # clauses that ask for something no item was found for

    @property
    def empty(self) -> bool:
        return not any(self.chosen.values()) and not self.ambiguous


def _kinds(said: list[str], text: str, vocabulary: Vocabulary, language: str | None) -> tuple[set[str], bool]:
    """The kinds of request a clause makes, without those a negation in front of them denies ("don't want to return",
    "ne change pas"; not "don't need it", which is itself a reason to cancel); and whether one was denied."""
    matched = {k: terms.spans(said, language) for k, terms in vocabulary.requests.items()}
    # where two kinds' words overlap, the longer wins: "changed my mind" is a reason to cancel, not a change
    for kind, spans in matched.items():
        matched[kind] = [
            (s, e) for s, e in spans if not any(k != kind and os <= s and e <= oe and oe - os > e - s for k, others in matched.items() for os, oe in others)
        ]
    kinds = {k for k, spans in matched.items() if spans}
    negations = vocabulary.negations.spans(said, language)
    commas = _comma_positions(text)
    denied = False

    def denies(start: int, n_start: int, n_end: int, inside: set[int]) -> bool:
        gap = said[n_end:start]
        return (
            n_start not in inside
            and n_end <= start
            and len(gap) <= 4
            and all(vocabulary.negation_gap.found([word], language) for word in gap)
            and not any(n_end <= c <= start for c in commas)
        )

    def denies_after(end: int, n_start: int) -> bool:  # "passt leider nicht", "I'm keeping nothing": a keep denied after it
        gap = said[end:n_start]  # "is fine, no issues": a negation after a comma says something else
        return (
            end <= n_start
            and len(gap) <= 2
            and all(vocabulary.negation_gap.found([word], language) for word in gap)
            and not any(end <= c <= n_start for c in commas)
        )

    for kind in [k for k in (*REQUESTS, "keep") if k in kinds]:
        spans = matched[kind]
        inside = {n for s, e in spans for n in range(s, e)}
        if any(denies(start, n_start, n_end, inside) for start, _ in spans for n_start, n_end in negations) or (
            kind == "keep" and any(denies_after(end, n_start) for _, end in spans for n_start, _ in negations)
        ):
            kinds.discard(kind)
            denied = denied or kind != "keep"
    return kinds, denied


def clauses_of(text: str, vocabulary: Vocabulary, language: str | None) -> list[str]:
    """Sentences, each cut at "and"/"but"/commas/parentheses into pieces; a piece that asks or keeps something of its own
    starts a new clause after one that does too ("return the lamp | and exchange the mouse"), any other piece stays with
    the clause before it ("the kettle and the boots are staying"; "cancel the order (toothbrush, kettle)")."""
    out: list[str] = []
    for sentence in _SENTENCE.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        cuts = [(m.start(), m.end()) for m in _CONJUNCTION.finditer(sentence)]
        bounds = [0, *[c for cut in cuts for c in cut], len(sentence)]
        pieces = [(bounds[n], bounds[n + 1]) for n in range(0, len(bounds), 2)]
        current: tuple[int, int] | None = None
        current_asks = current_keeps = False
        for n, (start, end) in enumerate(pieces):
            piece = sentence[start:end]
            kinds = _kinds(words(piece), piece, vocabulary, language)[0]
            asks = bool(kinds - {"question"})
            contrast = n > 0 and bool(_CONTRAST.match(sentence[cuts[n - 1][0] : cuts[n - 1][1]]))  # the cut before this piece
            if current is None:
                current, current_asks, current_keeps = (start, end), asks, "keep" in kinds
            elif (asks and current_asks) or (contrast and current_keeps):
                # "I'm keeping the backpack, it's great, | but the kettle and the mouse can go back": what follows a
                # "but" after a keep clause is not kept
                out.append(sentence[current[0] : current[1]])
                current, current_asks, current_keeps = (start, end), asks, "keep" in kinds
            else:
                current, current_asks, current_keeps = (current[0], end), current_asks or asks, current_keeps or "keep" in kinds
        if current is not None:
            out.append(sentence[current[0] : current[1]])
    return [c.strip(" ,;-\u2013\u2014()") for c in out if c.strip(" ,;-\u2013\u2014()")]


def _mark_positions(text: str) -> dict[str, set[int]]:
    """For each of comma, semicolon, colon, parenthesis and dash: the word indexes that follow it."""
    positions: dict[str, set[int]] = {}
    count = 0
    for piece in re.split(r"([,;:()\u2013\u2014])", catalogue.fold(text)):
        if piece in {",", ";", ":", "(", ")", "\u2013", "\u2014"}:
            positions.setdefault(piece, set()).add(count)
        else:
            count += len(catalogue.tokens(piece))
    return positions


def _comma_positions(text: str) -> set[int]:
    """Word indexes that follow a comma, a parenthesis, a colon or a dash."""
    return set().union(*_mark_positions(text).values())


def _by_name(said: list[str], text: str, items: list[Item], taken: set[int]) -> list[catalogue.Mention]:
    """Products named by their own name's words (decide.py's matching: the head word "cleaner", a distinctive word
    "jigsaw", run together "tshirts"), where the catalogue's words found nothing: at the first of those words."""
    named = decide.mentioned_items(items, text)
    out: dict[str, catalogue.Mention] = {}
    for item in named:
        name_words = [decide._norm(w) for w in words(item.name)]
        compact = "".join(name_words)
        at = next((n for n, w in enumerate(said) if decide._norm(w) in name_words or compact in w), None)
        if at is None or at in taken or item.name in out:
            continue
        out[item.name] = catalogue.Mention(names=frozenset({item.name}), term=said[at], start=at, end=at + 1)
    return list(out.values())


def _mentions(said: list[str], text: str, items: list[Item], vocabulary: Vocabulary, language: str | None) -> list[Mention]:
    names = {item.name for item in items}
    found = [m for m in catalogue.load().products_in(text, language=language) if m.names & names]
    taken = {n for m in found for n in range(m.start, m.end)}
    found += [m for m in _by_name(said, text, items, taken) if not any(m.names <= f.names for f in found)]
    found.sort(key=lambda m: m.start)
    asking = [span for k in (*REQUESTS, "keep") for span in vocabulary.requests[k].spans(said, language)]
    stops = {s for s, _ in vocabulary.boundaries.spans(said, language)} | {s for s, _ in asking}  # a keep ends a describing phrase too
    verbs_end = {e for _, e in asking}  # "me quedo con la lámpara", "je reste avec": the verb's own "with", no description
    marks = _mark_positions(text)
    commas: set[int] = set().union(*marks.values())
    opens, closes = marks.get("(", set()), marks.get(")", set())
    starts = [m.start for m in found]
    markers = [end for _, end in vocabulary.descriptors.spans(said, language)]
    # "from the order I received (kettle, hose, t-shirt), I want to return ...", "del pedido que ya recibí (estantería,
    # perfume, cama) quiero devolver ...": a list in parentheses right after an order word, before any request, describes
    # that order ("return the items of my order (the kettle and the hose)" names them instead)
    # ("de mi pedido pendiente (el que va a San Diego con las pesas)"): the whole parenthesis, its commas too
    parenthesized = {o for o in opens if any(said[n] in _HEADS for n in range(max(0, o - 5), o)) and not any(s < o for s, _ in asking)}
    markers += parenthesized
    for start, end in vocabulary.with_.spans(said, language):
        if start in verbs_end:
            continue
        heads = {said[n] for n in range(max(0, start - 4), start)}
        if said[start] in _OF:  # "el pedido del reloj y las botas": "of" says which order only right behind an order word
            if heads & _HEADS and not any(start <= s < end + 3 for s, _ in asking):
                markers.append(end)
            continue
        if (
            heads & _HEADS or (start > 0 and said[start - 1] in _ONE) or any(0 <= start - m.end <= 2 for m in found)
        ):  # "the order (that hasn't shipped yet) with", "the tee with"
            markers.append(end)
    out = []
    for mention in found:
        opened = [end for end in markers if end <= mention.start]
        descriptor = False
        if opened:
            scope = max(opened)
            # the phrase runs on through a list ("with the boots, the keyboard and the hose") and stops at a request
            # or a first-person verb, or at a comma that no product follows closely
            blocked = any(scope <= p < mention.start for p in stops)
            cut = scope not in parenthesized and any(scope <= c <= mention.start and not any(c <= s <= c + 2 for s in starts) for c in commas)
            # "los auriculares (venían con las mancuernas) y el cepillo": a parenthesis that closes ends what it described
            closed = any(scope <= c <= mention.start for c in closes) and max((o for o in opens if o <= scope), default=-1) > max(
                (c for c in closes if c <= scope), default=-1
            )
            # "the order with the blue wristwatch - the watch and the puzzle": a product named again is what is asked about
            # (and what follows it in the list)
            again = any(scope <= a.start < b.start <= mention.start and a.names & b.names for a in found for b in found)
            descriptor = not blocked and not cut and not closed and not again
        out.append(Mention(items=[i for i in items if i.name in mention.names], start=mention.start, end=mention.end, descriptor=descriptor))
    return out


def returns_beyond_money(text: str, vocabulary: Vocabulary, language: str | None) -> bool:
    """Whether the text asks for a return in words other than the money ones ("refund", "reembolso"): "send it back and
    refund me" does, "refund the difference to my card" does not."""
    return vocabulary.requests["return"].found(words(MONEY.sub(" ", catalogue.fold(text))), language)


def analyse(text: str, items: list[Item], vocabulary: Vocabulary, language: str | None) -> Clause:
    said = words(text)
    kinds, negated = _kinds(said, text, vocabulary, language)
    if "return" in kinds and MONEY.search(catalogue.fold(text)) and not returns_beyond_money(text, vocabulary, language):
        kinds.add("money")  # only money words: a refund's destination, or a return if a product is named with them
    if "return" in kinds and vocabulary.price["difference"].found(said, language):
        kinds.add("money")  # "la diferencia que me la devuelvan a la Visa": the price difference goes back, not an item
    mentions = _mentions(said, text, items, vocabulary, language)
    excepts = [start for start, _ in vocabulary.except_.spans(said, language)]
    excepted = [m for m in mentions if excepts and m.start > min(excepts)]
    if "keep" not in kinds:  # "just the helmet, not the backpack or the puzzle": those two are left out, like an except
        excepted += [m for m in _denied(said, mentions) if m not in excepted]
    price = 1 if vocabulary.dearer.found(said, language) else -1 if vocabulary.cheaper.found(said, language) else 0
    near: dict[int, set[str]] = {}
    for status, terms in vocabulary.orders.items():
        for s_start, s_end in terms.spans(said, language):
            for m in mentions:
                if 0 <= s_start - m.end <= 3 or 0 <= m.start - s_end <= 2:  # "the hose I received", "my pending tshirts"
                    near.setdefault(m.start, set()).add(status)
    every_spans = vocabulary.every.spans(said, language)
    # "all my items", "everything" (not "all the items I want to return": the customer goes on to say which)
    blanket = any(
        (said[s] in _EVERYTHING or any(w in ITEM_NOUNS for w in said[e : e + 3]))
        and not any(vocabulary.requests[k].found(said[e : e + 6], language) for k in REQUESTS)  # "all the items I want to return (are ...)"
        and not any(start <= 2 for start, _ in vocabulary.related.spans(said[e:], language))  # "everything related to gaming"
        and not (e < len(said) and said[e] in _TIMES)  # "every time I order", "jedes Mal", "cada vez", "chaque fois"
        and not any(start <= 1 for start, _ in vocabulary.anaphora.spans(said[e : e + 3], language))  # "both of those items"
        # "both things from that order - the watch and the puzzle": two, and the clause names them
        and not (said[s] in _TWO and any(not m.descriptor for m in mentions))
        for s, e in every_spans
    )
    return Clause(
        blanket=blanket,
        near=near,
        text=text,
        said=said,
        kinds=kinds,
        mentions=[m for m in mentions if m not in excepted],
        excepted=excepted,
        methods=vocabulary.methods.found(said, language),
        price=price,
        order_ids={"#" + m.group(0).lstrip("#") for m in ORDER_ID.finditer(text)},
        statuses={status for status, terms in vocabulary.orders.items() if terms.found(said, language)},
        negated=negated,
        hedged=vocabulary.hedges.found(said, language),
        rest=vocabulary.rest.found(said, language),
        every=vocabulary.every.found(said, language),
    )


_DENY = frozenset(words("not nicht nor ni pas"))
_OR = frozenset(words("or nor oder noch ni o ou and und y et"))
_ARTICLE = frozenset(words("the a an my that this der die das den dem des ein eine einen el la los las le les l un une mon ma mes mi mis"))


def _denied(said: list[str], mentions: list[Mention]) -> list[Mention]:
    """Products named right after a bare "not" ("not the backpack", "nicht den Rucksack", "pas le sac"), and those joined to
    one by "or"/"and" ("not the backpack or puzzle"), when the clause names another product that is not denied: the
    customer says which items the request leaves out. A clause whose every product is denied is a negated request, which
    _kinds reads."""
    denied: list[Mention] = []
    last_end = -1
    for mention in sorted(mentions, key=lambda m: m.start):
        before = [w for w in said[max(0, mention.start - 3) : mention.start] if w not in _ARTICLE]
        joined = bool(denied) and denied[-1].end == last_end and bool(before) and before[-1] in _OR and mention.start - last_end <= 2
        if (before and before[-1] in _DENY) or joined:
            denied.append(mention)
        last_end = mention.end
    return denied if len(denied) < len(mentions) else []


def wishes(text: str, item: Item, language: str | None, vocabulary: Vocabulary | None = None) -> bool:
    """The text wants an option value the item does not have ("an XL would fit me better"), or compares ("bigger",
    "one size up"). With a vocabulary, a named value counts only in a clause that wants something (its wish words)."""
    if vocabulary is not None and not vocabulary.wishes.found(words(text), language):
        return any(p.search(text) for p, _, _ in (*variants.COMPARATIVES, *variants.SUPERLATIVES)) or bool(variants.SAME_BUT.search(text))
    for option, current in item.options.items():
        named = option_values(text, option, language)
        if named - {current}:  # "Brand B instead of Brand A": a value beside the one they have
            return True
    return any(p.search(text) for p, _, _ in (*variants.COMPARATIVES, *variants.SUPERLATIVES)) or bool(variants.SAME_BUT.search(text))


def option_values(text: str, option: str, language: str | None) -> set[str]:
    """The values of `option` the text names (crewdesk/store/lexicon.Lexicon.values_named)."""
    return catalogue.load().values_named(text, option, language=language)


def _keeps_options(clause: Clause, language: str | None) -> bool:
    """ "I want to keep the capacity and type": what stays is options of the item, not the item."""
    return bool(catalogue.load().option_names_in(clause.text, language=language))


def _status(item: Item, customer: Customer) -> str:
    return next(o.status for o in customer.orders if o.order_id == item.order_id)


def _narrow(
    candidates: list[Item],
    clause: Clause,
    kind: str | None,
    customer: Customer,
    others: list[Item],
    language: str | None,
    *,
    near: set[str] | None = None,
    before: str = "",
) -> list[Item]:
    """The candidates the clause's words pick out; each filter applies only when it leaves some. others: the other
    products named with this one (describing or asked about), whose orders say which order is meant; near: the order
    statuses said right beside this product ("the hose I received")."""

    def keep(filtered: list[Item], current: list[Item]) -> list[Item]:
        return filtered if filtered else current

    pool = list(candidates)
    if clause.order_ids:
        pool = keep([i for i in pool if i.order_id in clause.order_ids], pool)
    if near:
        pool = keep([i for i in pool if _status(i, customer) in near], pool)
    if clause.statuses:
        pool = keep([i for i in pool if _status(i, customer) in clause.statuses], pool)
    if kind:
        pool = keep([i for i in pool if _status(i, customer) in FITS[kind]], pool)
    if others:
        pool = keep([i for i in pool if i.order_id in {o.order_id for o in others}], pool)
    if len({i.order_id for i in pool}) > 1:  # "the order going to Jacksonville"
        folded = catalogue.fold(clause.text)
        addresses = {o.order_id: o.address for o in customer.orders}
        pool = keep(
            [i for i in pool if (city := addresses.get(i.order_id, {}).get("city")) and re.search(rf"\b{re.escape(catalogue.fold(city))}\b", folded)], pool
        )
    if len(pool) > 1 and clause.price and len({i.name for i in pool}) == 1:  # "the more expensive one" of two
        pick = max if clause.price > 0 else min
        pool = [pick(pool, key=lambda i: i.price)]
    if len(pool) > 1 and before:  # "all my pending small tshirts": a value right before the name says which, "all" or not
        adjective = [i for i in pool if any(current in option_values(before, option, language) for option, current in i.options.items())]
        pool = keep(adjective, pool)
    if len(pool) > 1 and not clause.every:  # option values the customer names for the item they mean ("the black tee")
        scores = []
        for item in pool:
            scores.append(sum(current in option_values(clause.text, option, language) for option, current in item.options.items()))
        best = max(scores)
        if best and scores.count(best) < len(pool):
            pool = [i for i, s in zip(pool, scores, strict=True) if s == best]
    return pool


_SOURCE = re.compile(r"\b(?:from|in|of|on|out of|aus|von|in|bei|de|del|en|dans|sur)\s+(?:\w+\s+){0,3}?(?:orders?|bestellung\w*|pedidos?|commandes?)\b", re.I)


def _order_is_object(text: str) -> bool:
    """ "cancel the grey backpack order", "cancel the order with ...": the order itself is asked for; "the grill from my
    pending order" names only where the grill is."""
    return bool(ORDER_WORDS.search(_SOURCE.sub(" ", text)))


_LEADING_ORDER = re.compile(r"^\W*(?:\d{1,2}[.)]\s*)?#?\s*W\d{7}\b", re.I)


def _item_is_object(clause: Clause, vocabulary: Vocabulary, language: str | None) -> bool:
    """ "I have order W… on its way and I don't need the laptop after all": every order word comes before the cancel
    word and a product follows it, so the product is what is cancelled, not the order it is in (which the store
    cannot do: the customer is told so). "Cancel order W…, I don't need the lamp", "cancel the lamp order" cancel the
    order."""
    said = clause.said
    verbs = vocabulary.requests["cancel"].spans(said, language)
    heads = [n for n, word in enumerate(said) if word in _HEADS]
    if not verbs or not heads or max(heads) >= verbs[0][0]:
        return False
    # the product is the verb's object: right after it, no comma or dash between ("die Bestellung … brauche ich nicht
    # mehr - die Kamera hab ich woanders gekauft" cancels the order)
    end, part = verbs[0][1], _parts(clause.text)
    return any(end <= m.start <= end + 3 and m.start < len(part) and part[m.start] == part[end - 1] for m in clause.targets)


def _parts(text: str) -> list[int]:
    """For each word of the text, which of its parts it is in: parts are cut at commas, semicolons, colons, parentheses
    and dashes, a hyphen between spaces too ("brauche ich nicht mehr - die Kamera hab ich woanders gekauft")."""
    out: list[int] = []
    for n, piece in enumerate(re.split(r"\s-\s|[,;:()\u2013\u2014]", text)):
        out += [n] * len(words(piece))
    return out


def _before(clause: Clause, mention: Mention) -> str:
    """The three words before a product's name: where an adjective says which one ("the small tshirt")."""
    return " ".join(clause.said[max(0, mention.start - 3) : mention.start])


def _excludes(clause: Clause, vocabulary: Vocabulary, language: str | None) -> bool:
    """A negation that denies no request and no keeping ("the things that are not footwear", "alles außer was nicht
    aus Leder ist"): the items are described by what they are not, which only a reading of the items can settle."""
    said = clause.said
    taken = {n for kind in (*REQUESTS, "keep") for s, e in vocabulary.requests[kind].spans(said, language) for n in range(s, e)}
    return not clause.negated and any(
        not set(range(s, e)) & taken and any(w in _RELATIVE for w in said[max(0, s - 3) : s]) for s, e in vocabulary.negations.spans(said, language)
    )


# the words that open a describing clause ("that are not", "die nicht", "que no", "qui ne")
_RELATIVE = frozenset({"that", "which", "who", "die", "der", "das", "was", "welche", "que", "cual", "cuales", "qui", "lesquels", "lesquelles"})


_ONE_ORDER = re.compile(r"\b(order|bestellung|lieferung|pedido|commande|package|parcel|paket|paquete|colis)\b", re.I)
_ORDERS = re.compile(r"\b(orders|bestellungen|lieferungen|pedidos|commandes|packages|parcels|pakete|paquetes)\b", re.I)


def _one_order(items: list[Item]) -> bool:
    return len({i.order_id for i in items}) == 1


def _distinct(items: list[Item]) -> int:
    return len({(i.order_id, i.item_id) for i in items})


def asks_items(text: str, vocabulary: Vocabulary, language: str | None) -> bool:
    """Some clause asks to cancel, return or change something (in the vocabulary's words, in the ticket's language), or
    names a product of the catalogue and wants something of it ("la même en luminosité moyenne serait parfaite"), or
    wants it right after a heading that names the product ("casque de vélo de la commande W…: il me faut du M")."""
    heading = False
    for clause in clauses_of(text, vocabulary, language):
        if _ADDRESS.search(clause):
            heading = False
            continue
        said = words(clause)
        kinds = _kinds(said, clause, vocabulary, language)[0]
        if kinds & set(REQUESTS):
            return True
        products = catalogue.load().products_in(clause, language=language)
        if "question" not in kinds and (  # "what is the status of my camera order": a question, no wish
            vocabulary.wishes.found(said, language) and (products or heading) and catalogue.load().any_value_in(clause, language=language)
        ):
            return True
        heading = bool(products) and clause.rstrip().endswith(":")
    return False


def request_clauses(text: str, vocabulary: Vocabulary, language: str | None) -> list[Clause]:
    """The clauses that make a request of their own: not about an address (nor the "can you change that?" after one),
    not hedged ("I was thinking of..."), not under a condition (nor the rest of that sentence: "if the M costs more,
    I'd rather return it"), not a heading ("About the cancellation reason:"), not a question about an order's status,
    and not where a refund goes ("I prefer PayPal for any refund")."""
    return [clause for _, clause, conditional in _requesting(text, vocabulary, language) if not conditional]


def conditional_requests(text: str, vocabulary: Vocabulary, language: str | None) -> list[str]:
    """The sentences that make a request under a condition ("if you ask me to confirm, only exchange the lamp", "wenn
    der Preis gleich bleibt, tauschen Sie ihn um"), each once; a courtesy ("if possible, ...") or a condition the
    policy checks itself ("if it has not shipped yet, cancel it") is no condition here."""
    out: list[str] = []
    for sentence, clause, conditional in _requesting(text, vocabulary, language):
        if not conditional or not set(REQUESTS) & clause.kinds or sentence in out:
            continue
        said = words(sentence)
        if vocabulary.courtesy.found(said, language) or vocabulary.status_conditions.found(said, language):
            continue
        out.append(sentence)
    return out


def _beside_addresses(clauses: list[str], vocabulary: Vocabulary, language: str | None) -> list[str]:
    """A clause about an address keeps the request that shares it ("send my laptop order to my new address, and the
    laptop in it changed to the i9"): its pieces that name a product and ask something of their own stand apart."""
    out: list[str] = []
    for text in clauses:
        if not _ADDRESS.search(text):
            out.append(text)
            continue
        pieces = [p.strip() for p in _CONJUNCTION.split(text) if p and p.strip()]
        own = [
            p
            for p in pieces
            if not _ADDRESS.search(p) and catalogue.load().products_in(p, language=language) and _kinds(words(p), p, vocabulary, language)[0] & set(REQUESTS)
        ]
        out.append(text if not own else " ".join(p for p in pieces if p not in own))
        out.extend(own)
    return out


def _requesting(text: str, vocabulary: Vocabulary, language: str | None) -> Iterator[tuple[str, Clause, bool]]:
    """(sentence, clause, under a condition) for each clause that asks for something (see request_clauses)."""
    after_address = False
    for sentence in _SENTENCE.split(text):
        conditional = False
        for text_ in _beside_addresses(clauses_of(sentence, vocabulary, language), vocabulary, language):
            if _ADDRESS.search(text_):
                after_address = True
                continue
            clause = analyse(text_, [], vocabulary, language)
            conditional = conditional or _conditional(clause, vocabulary, language)
            named = catalogue.load().products_in(text_, language=language)
            follows_address, after_address = after_address and not named, False
            if clause.hedged or "question" in clause.kinds or text_.rstrip().endswith(":") or follows_address or (clause.methods and not named):
                continue
            yield sentence.strip(), clause, conditional


_HEADER = re.compile(r"^(?:Ticket #\d+|Customer:.*)$", re.M)
_SUBJECT = re.compile(r"^Subject:\s*(.*)$", re.M)


def split_ticket(text: str) -> tuple[str, str]:
    """(subject, body) of the ticket block the procedures read (crews/builder.ticket_block); plain text is all body."""
    subject = _SUBJECT.search(text)
    if subject is None:
        return "", text
    body = _HEADER.sub("", _SUBJECT.sub("", text, count=1))
    return subject.group(1).strip(), body.strip()


def read(*, text: str, customer: Customer, procedures: list[ProcedureSpec], vocabulary: Vocabulary, language: str | None) -> ItemReading:
    """intent -> items for the item-level procedures, what is ambiguous, what is kept. The subject only says what the
    body is about, unless the body asks nothing itself ("Cancel order #W…" / "Thanks")."""
    subject, body = split_ticket(text)
    reading = _read(subject=subject, body=body, customer=customer, procedures=procedures, vocabulary=vocabulary, language=language, from_subject=False)
    if reading.empty and subject:
        reading = _read(
            subject="", body=f"{subject}\n{body}", customer=customer, procedures=procedures, vocabulary=vocabulary, language=language, from_subject=True
        )
    return reading


def _names_another(text: str, last: list[Item], every_item: list[Item], language: str | None) -> bool:
    """Whether a clause that names no catalogue product still names one of the customer's other products by meaning
    (crews/procedures/nearest.py), so it does not speak of the items named last."""
    found = nearest.nearest(text, every_item, language=language)
    return bool(found) and not {i.name for i in found} & {i.name for i in last}


_REASON_CUT = re.compile(r"\s[-\u2013\u2014]\s|:\s")
_KEEPING = re.compile(r"\b(?:keep\w*|behalt\w*|quedo|quedarme|conserv\w*|garde[rsz]?|gardons)\b", re.I)


def _keep_only_in_reason(clause: Clause, vocabulary: Vocabulary, language: str | None) -> bool:
    """A list entry's keep words are only in what it says after its product ("the sunglasses - they looked great on the
    website"), and none says keeping outright ("the kettle is fine, I keep it" keeps)."""
    head = _REASON_CUT.split(clause.text, maxsplit=1)
    if len(head) < 2 or _KEEPING.search(clause.text):
        return False
    return "keep" not in _kinds(words(head[0]), head[0], vocabulary, language)[0]


_ENTRY_MARK = re.compile(r"^\s*(?:[-\u2013\u2022*]|\(?\d{1,2}[).])?\s*$")


def _opens_line(body: str, clauses: list[str]) -> list[str]:
    """For each clause: "entry" when it opens a list entry ("- the sunglasses ...", "2) ..."), "line" when it starts
    another line, "entry-continues" when it goes on a line that a list entry opened ("- das Hundebett: | unser Hund
    weigert sich ..."), "" otherwise."""
    out: list[str] = []
    cursor, in_entry = 0, False
    for clause in clauses:
        at = body.find(clause[:40], cursor)
        if at < 0:
            out.append("")
            continue
        line_head = body[body.rfind("\n", 0, at) + 1 : at]
        if _ENTRY_MARK.match(line_head):
            in_entry = bool(line_head.strip())
            out.append("entry" if in_entry else "line")
        else:
            out.append("entry-continues" if in_entry else "")
        cursor = at + len(clause[:40])
    return out


def _conditional(clause: Clause, vocabulary: Vocabulary, language: str | None) -> bool:
    """ "If the black pair costs more than $20, just take them back": an alternative under a condition, not the request."""
    return any(start <= 2 for start, _ in vocabulary.conditions.spans(clause.said[:5], language))


def _read(
    *, subject: str, body: str, customer: Customer, procedures: list[ProcedureSpec], vocabulary: Vocabulary, language: str | None, from_subject: bool
) -> ItemReading:
    offered = {p.intent for p in procedures}
    every_item = [i for o in customer.orders for i in o.items]
    reading = ItemReading(chosen={p.intent: [] for p in procedures})
    last: list[Item] = []  # the items named last
    last_order: list[Item] = []  # the order named last (by its number or the products that describe it)
    if subject and not from_subject:  # the subject's products are what the body's "it" may mean
        head = analyse(subject, every_item, vocabulary, language)
        last = [i for m in head.targets for i in _narrow(m.items, head, None, customer, [], language)]
    kept: dict[tuple, Item] = {}
    kept_at: dict[tuple, int] = {}  # where in the ticket an item was said to be kept: a later keep takes back a request
    excluded: dict[tuple, Item] = {}  # "except ...": out of every blanket request in the ticket
    keep_rest = False
    declined: set[str] = set()  # kinds of request the customer says they are not making
    asked: list[tuple[str, list[Item], Clause, int]] = []  # kind, items, the clause and its place in the ticket
    general: list[str] = []  # clauses that name no product: they may say what the items should become ("I'm a 7")
    carry: list[str] = []  # "two things need to go back:" asks about the products the next clause names
    after_address = False
    wished: set[tuple] = set()  # items a change was read for from a wish, with no word asking for one
    worded: set[tuple] = set()  # items a change was asked for in words
    every_clause = clauses_of(body, vocabulary, language)
    opens = _opens_line(body, every_clause)
    for place, text in enumerate(every_clause):
        if _ADDRESS.search(text):
            after_address = True
            continue
        clause = analyse(text, every_item, vocabulary, language)
        follows_address, after_address = after_address, False
        targets = [i for m in clause.targets for i in m.items]
        described = [i for m in clause.described for i in m.items]
        if clause.described:
            orders = set.intersection(*({i.order_id for i in m.items} for m in clause.described))
            if len(orders) == 1:
                last_order = [i for i in every_item if i.order_id in orders]
        if clause.order_ids:
            last_order = [i for i in every_item if i.order_id in clause.order_ids]
        conditional = _conditional(clause, vocabulary, language)
        # an alternative's words say nothing of the first wish, and neither does a keep that names another item by its
        # options ("the linear full size one stays": not a full-size wish for the keyboard being changed)
        kept_other = "keep" in clause.kinds and not clause.requests and not vocabulary.same.found(clause.said, language)
        if not clause.mentions and not conditional and not (kept_other and catalogue.load().any_value_in(clause.text, language=language)):
            general.append(clause.text)
        if clause.hedged or conditional:
            continue
        meant = [i for m in clause.targets for i in _narrow(m.items, clause, None, customer, [], language)]  # the items its words describe
        # an entry of a list whose heading asks ("I'd like to return two things: / - the sunglasses - they looked great on
        # the website, less so on my face"): its product is what the list asks about, whatever its reason says
        listed = bool(carry) and opens[place] == "entry" and bool(clause.targets) and not clause.requests and _keep_only_in_reason(clause, vocabulary, language)
        if "keep" in clause.kinds and not clause.requests and not listed and not _keeps_options(clause, language):
            for item in meant or described:  # "of the order the e-reader came in, I keep the lamp": the lamp only; "the
                # black helmet is fine": not the blue one
                kept[key(item)] = item
                kept_at[key(item)] = place
            keep_rest = keep_rest or clause.rest
            continue
        if clause.excepted:  # "except the boots": left out of every request, and what "it" means next
            for item in (i for m in clause.excepted for i in m.items):
                excluded[key(item)] = item
            if not clause.targets and not clause.blanket:  # "except the boots, but I'd exchange them": "them" is the boots
                last = [i for m in clause.excepted for i in m.items]
        if clause.negated and not clause.requests:
            for item in targets:
                kept[key(item)] = item
            if not targets and not described:  # "Je ne demande pas d'échange pour l'instant": no such request here
                declined.update(k for k in REQUESTS if vocabulary.requests[k].found(clause.said, language))
            keep_rest = keep_rest or clause.rest
            continue
        kinds = clause.requests or ([*carry] if clause.targets else [])
        own = clause.kinds - set(carry) - (set() if clause.methods else {"payment", "money"}) - ({"keep"} if listed else set())
        if own or (not clause.targets and opens[place] != "entry-continues"):
            # "please process returns for:" goes on through a list of products that ask nothing of their own, or only
            # what the list asks ("Please cancel: / W1 (laptop) - don't need it / W2 (camera) - ordered by mistake"),
            # and through what an entry says after its product ("- das Hundebett: unser Hund weigert sich ...")
            carry = []
        if ("payment" in clause.kinds or clause.methods) and kinds == ["change"] and not clause.targets:
            continue  # "Zahlungsart ändern", "charge my PayPal instead": the order's payment, not its items
        if "money" in clause.kinds and kinds == ["return"] and not clause.targets:
            continue  # "refund to my card please": where the money goes
        if not clause.mentions and follows_address and kinds:
            continue  # "can you change that?" after a new address: the address change
        pool = meant or last
        wanting = [i for i in pool if wishes(clause.text, i, language, vocabulary)]
        inferred = False
        if not kinds and "question" not in clause.kinds and wanting:
            kinds, inferred = ["change"], True
        if not kinds:
            last = pool if clause.targets else last
            continue
        if len(kinds) > 1 and "change" in kinds and "money" in clause.kinds:
            kinds = ["change"]  # "exchange it and refund the difference"
        for kind in kinds:
            chosen: list[Item] = []
            if clause.rest and not clause.targets and not clause.order_ids and (kept or last_order):
                # "I'm keeping the headphones; return everything else in that order": the other items of the order the
                # kept items (or the order just described) are in; two such orders are asked about, never all of them
                kept_orders = {i.order_id for i in kept.values()}
                names = {i.name for i in kept.values()}  # the order holding every product kept, where a name fits two
                holding_all = {o for o in kept_orders if names <= {i.name for i in every_item if i.order_id == o}}
                described_orders = {i.order_id for i in last_order}
                focus = (holding_all & described_orders) or (kept_orders & described_orders) or holding_all or kept_orders or described_orders
                if len(focus) != 1:
                    reading.unresolved.append(clause.text)
                    continue
                chosen = [i for i in every_item if i.order_id in focus and key(i) not in kept and _status(i, customer) in FITS[kind]]
            elif clause.blanket and not _excludes(clause, vocabulary, language):  # "cancel all pending orders", "return everything except the mat"
                statuses = clause.statuses or set(FITS[kind])
                left_out = {key(i) for m in clause.excepted for i in m.items}
                chosen = [i for i in every_item if _status(i, customer) in statuses and key(i) not in left_out and _status(i, customer) in FITS[kind]]
                if clause.order_ids:
                    chosen = [i for i in chosen if i.order_id in clause.order_ids]
                its_order = {i.order_id for m in clause.mentions for i in m.items}
                if its_order and _ONE_ORDER.search(clause.text) and not _ORDERS.search(clause.text):
                    # "everything in the order that went to Fort Worth (the puzzle and the perfume)": that one order
                    chosen = [i for i in chosen if i.order_id in its_order]
            elif clause.targets:
                for mention in clause.targets:
                    others = [i for m in clause.mentions if m is not mention for i in m.items]
                    narrowed = _narrow(
                        mention.items, clause, kind, customer, others, language, near=clause.near.get(mention.start), before=_before(clause, mention)
                    )
                    if _distinct(narrowed) > 1 and not clause.every:
                        later = _narrow(narrowed, analyse(body, every_item, vocabulary, language), kind, customer, [], language)
                        if _distinct(later) == 1:  # "About which vacuum cleaner: the robotic one" further on
                            narrowed = later
                    if _distinct(narrowed) > 1 and not clause.every:
                        reading.ambiguous.append(narrowed)
                        continue
                    chosen.extend(narrowed)
                orders = {i.order_id for i in chosen}
                if (
                    kind == "cancel"
                    and len(orders) == 1
                    and (_LEADING_ORDER.match(clause.text) or _order_is_object(clause.text))
                    and not _item_is_object(clause, vocabulary, language)
                ):
                    # "cancel the order (boots, kettle)"; an entry of a list headed by its order's number ("Please cancel:
                    # / W3614011 (camera etc.) - ordered by mistake") cancels that order
                    chosen = [i for i in every_item if i.order_id in orders]
            elif clause.text.rstrip().endswith(":"):  # "two things need to go back:" the list follows
                carry.append(kind)
                continue
            elif not clause.order_ids and _excludes(clause, vocabulary, language):
                reading.unresolved.append(clause.text)  # "the things from my order that are not footwear": described, not named
                continue
            elif clause.order_ids or (_order_is_object(clause.text) and (last_order or _one_order(last))):  # not "cancel them from my order"
                chosen = (
                    [i for i in every_item if i.order_id in clause.order_ids]
                    or list(last_order)
                    or [i for i in every_item if i.order_id in {x.order_id for x in last}]
                )  # "cancel that whole order": the order of the items named last
            elif clause.described:
                orders = set.intersection(*({i.order_id for i in m.items} for m in clause.described))
                fitting = {o for o in orders if any(_status(i, customer) in FITS[kind] for i in every_item if i.order_id == o)} or orders
                if len(fitting) != 1:
                    reading.unresolved.append(clause.text)
                    continue
                chosen = [i for i in every_item if i.order_id in fitting]
            elif (last or last_order) and _names_another(clause.text, last or last_order, every_item, language):
                reading.unresolved.append(clause.text)  # "return the smart watch. And the barbells": not the watch again
                continue
            elif last or last_order:
                chosen = _narrow(last or last_order, clause, kind, customer, [], language)
                if kind == "change" and wanting:
                    chosen = [i for i in chosen if i in wanting] or chosen  # the item the wish is about
            else:
                named = [o for o in customer.orders if o.status in clause.statuses] if clause.statuses else []
                if len(named) == 1 and ORDER_WORDS.search(clause.text):  # "cancel my pending order": the only one
                    chosen = list(named[0].items)
                else:
                    carry.append(kind)
                    reading.unresolved.append(clause.text)
                    continue
            if chosen:
                asked.append((kind, chosen, clause, place))
                last = chosen
                if inferred:
                    wished.update(key(i) for i in chosen)
                elif kind == "change":
                    worded.update(key(i) for i in chosen)
    # a request read only from a wish ("is there the same model without a bag?") of a kind the customer says they are
    # not asking for is a question, not a request
    asked = [(kind, chosen, clause, place) for kind, chosen, clause, place in asked if kind not in declined or clause.requests]
    targeted = {key(i) for _, chosen, _, _ in asked for i in chosen}
    if keep_rest:
        orders = {i.order_id for _, chosen, _, _ in asked for i in chosen}
        for item in every_item:
            if item.order_id in orders and key(item) not in targeted:
                kept[key(item)] = item
    whole: list[Clause] = []  # the body read as one clause, only when an item that came twice needs it

    def named_times(item: Item) -> int:
        if not whole:
            whole.append(analyse(body, every_item, vocabulary, language))
        return sum(1 for m in whole[0].mentions if any(i is item for i in m.items))

    for kind, chosen, clause, place in asked:
        named_here = {key(i) for m in clause.targets for i in m.items}
        units_here: set[tuple[str, str]] = set()
        one_unit = not (clause.every or clause.rest or clause.blanket or _UNITS.search(catalogue.fold(clause.text)))
        unsure = _one_of_several(chosen, clause, vocabulary, language) if one_unit and kind != "cancel" else []  # an order is cancelled whole
        if unsure:
            reading.ambiguous.extend(unsure)
            chosen = [i for i in chosen if not any(i is u for group in unsure for u in group)]
        for item in chosen:
            if key(item) in kept and (key(item) not in named_here or kept_at.get(key(item), -1) > place):
                continue  # named in a keep clause, or the rest: left alone (a request naming it outright wins, unless the
                # keep comes after it: "I wanted to return the tablet... on second thought I'll keep the tablet")
            if key(item) in excluded and clause.blanket:
                continue  # "cancel or return all possible orders. Well, except the boots"
            intent = INTENT.get((kind, _status(item, customer)), MISFIT[kind])
            if intent not in offered or _status(item, customer) == "cancelled":
                continue
            if one_unit and (item.order_id, item.item_id) in units_here and named_times(item) < 2:
                # "it came twice, I'd like to send one of them back": one unit, unless they say both, two or the rest, or
                # name the product again for the other unit ("exchange one kettle for ..., and another kettle for ...")
                continue
            units_here.add((item.order_id, item.item_id))
            if all(key(item) != key(i) for i in reading.chosen[intent]):
                reading.chosen[intent].append(item)
            reading.about[key(item)] = " ".join(filter(None, [reading.about.get(key(item), ""), clause.text]))
    for item_key in reading.about:  # what the items should become may be said in a clause that names no product
        reading.about[item_key] = " ".join([reading.about[item_key], *general])
    _split_conflicts(reading, wished - worded)
    reading.kept = list(kept.values())
    return reading


def _one_of_several(chosen: list[Item], clause: Clause, vocabulary: Vocabulary, language: str | None) -> list[list[Item]]:
    """Items of one product (in different variants, or in different orders) that the clause names once in the singular,
    or points back to without a plural word ("the large dog bed is too big, I'd like to send it back" when two large
    beds came; "I bought the same camera twice; I want to return the one ..."): which one is asked, not both taken."""
    groups: dict[str, list[Item]] = {}
    for item in chosen:
        groups.setdefault(item.product_id, []).append(item)
    unsure = []
    for group in groups.values():
        if len({(i.order_id, i.item_id) for i in group}) < 2:
            continue
        naming = [m for m in clause.targets if any(i is g for i in m.items for g in group)]
        if len(naming) > 1 or (naming and _plural(clause.said[naming[0].end - 1])):
            continue
        if not naming and vocabulary.anaphora.spans(clause.said, language):  # "send them back": the items just named
            continue
        unsure.append(group)
    return unsure


def _plural(word: str) -> bool:
    """A product's name said in the plural ("beds", "Kopfhörer" aside: German plurals are told by "beide", "zwei")."""
    return len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is"))


def _split_conflicts(reading: ItemReading, wished: set[tuple]) -> None:
    """An item asked for in two ways (returned and exchanged) is not guessed: it is asked about. A change read only from
    a wish ("the t-shirt doesn't fit, XXL is too small") gives way to a request the customer words for the same item
    ("I just want to send it back")."""
    seen: dict[tuple, list[str]] = {}
    for intent, items in reading.chosen.items():
        for item in items:
            seen.setdefault(key(item), []).append(intent)
    for item_key, intents in seen.items():
        if len(intents) > 1 and item_key in wished:
            changes = [i for i in intents if i in ("modify_order", "exchange_items")]
            if changes and len(changes) < len(intents):
                for intent in changes:
                    reading.chosen[intent] = [i for i in reading.chosen[intent] if key(i) != item_key]
                    intents.remove(intent)
        if len(intents) > 1:
            item = next(i for i in reading.chosen[intents[0]] if key(i) == item_key)
            for intent in intents:
                reading.chosen[intent] = [i for i in reading.chosen[intent] if key(i) != item_key]
            reading.ambiguous.append([item])
