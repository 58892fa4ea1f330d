"""Where a pending order should ship, or what the account's default address becomes. The new address is either one the
customer wrote out ("1234 Elm St, Springfield, IL, 62701") or one the store already holds for them: their default
address, or another order's ("send it to my NYC address", "the same address as order #W…"). Addresses are taken from
the tools' results or parsed from the customer's words; the model never types one. Which orders change: the ones named
(by id, by what is in them, or by where they now ship), all pending ones when the customer says so, else the model
chooses among the pending orders."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from crewdesk.llm.base import CrewdeskLLM
from crews.procedures.decide import UNIVERSAL, mentioned_items, named_orders
from crews.procedures.state import Customer, Order
from crews.procedures.wording import Vocabulary, words

FIELDS = ("address1", "address2", "city", "state", "country", "zip")
STATES = {
    "alabama": "AL",
    "alaska": "AK",
    "arizona": "AZ",
    "arkansas": "AR",
    "california": "CA",
    "colorado": "CO",
    "connecticut": "CT",
    "delaware": "DE",
    "florida": "FL",
    "georgia": "GA",
    "hawaii": "HI",
    "idaho": "ID",
    "illinois": "IL",
    "indiana": "IN",
    "iowa": "IA",
    "kansas": "KS",
    "kentucky": "KY",
    "louisiana": "LA",
    "maine": "ME",
    "maryland": "MD",
    "massachusetts": "MA",
    "michigan": "MI",
    "minnesota": "MN",
    "mississippi": "MS",
    "missouri": "MO",
    "montana": "MT",
    "nebraska": "NE",
    "nevada": "NV",
    "new hampshire": "NH",
    "new jersey": "NJ",
    "new mexico": "NM",
    "new york": "NY",
    "north carolina": "NC",
    "north dakota": "ND",
    "ohio": "OH",
    "oklahoma": "OK",
    "oregon": "OR",
    "pennsylvania": "PA",
    "rhode island": "RI",
    "south carolina": "SC",
    "south dakota": "SD",
    "tennessee": "TN",
    "texas": "TX",
    "utah": "UT",
    "vermont": "VT",
    "virginia": "VA",
    "washington": "WA",
    "west virginia": "WV",
    "wisconsin": "WI",
    "wyoming": "WY",
    "district of columbia": "DC",
}
# The first three digits of a US zip code give the state (USPS prefix ranges), for an address written without one.
_ZIP_STATES = [
    (5, "PR"),
    (10, "MA"),
    (28, "RI"),
    (30, "NH"),
    (35, "VT"),
    (44, "ME"),
    (70, "CT"),
    (90, "NJ"),
    (100, "NY"),
    (150, "NY"),
    (197, "PA"),
    (200, "DE"),
    (206, "DC"),
    (220, "MD"),
    (247, "VA"),
    (270, "WV"),
    (290, "NC"),
    (300, "SC"),
    (350, "GA"),
    (370, "FL"),
    (386, "AL"),
    (398, "TN"),
    (400, "MS"),
    (430, "KY"),
    (460, "OH"),
    (480, "IN"),
    (500, "MI"),
    (528, "IA"),
    (550, "WI"),
    (570, "MN"),
    (580, "SD"),
    (590, "ND"),
    (600, "MT"),
    (630, "IL"),
    (660, "MO"),
    (680, "KS"),
    (700, "NE"),
    (730, "LA"),
    (750, "AR"),
    (800, "OK"),
    (820, "TX"),
    (832, "CO"),
    (840, "WY"),
    (850, "ID"),
    (863, "UT"),
    (870, "AZ"),
    (885, "NM"),
    (889, "TX"),
    (900, "NV"),
    (970, "CA"),
    (980, "OR"),
    (995, "WA"),
    (1000, "AK"),
]
# What people call a city instead of its name.
ALIASES = {
    "nyc": "new york",
    "big apple": "new york",
    "manhattan": "new york",
    "la": "los angeles",
    "dc": "washington",
    "sf": "san francisco",
    "philly": "philadelphia",
    "vegas": "las vegas",
}
_STREET = r"\d+\s+(?:[A-Z][\w.'-]*\s+)*?(?:[A-Z][\w.'-]*)"
WRITTEN = re.compile(
    rf"(?P<a1>{_STREET})\s*,\s*(?:(?P<a2>(?:Suite|Apt\.?|Apartment|Unit|Floor|#)\s*[\w-]+)\s*,\s*)?(?P<city>[A-Z][\w.'-]*(?:\s+[A-Z][\w.'-]*)*)\s*,\s*"
    rf"(?:(?P<state>[A-Z]{{2}}|[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*)\s*,?\s*)?(?P<zip>\d{{5}})\b"
)
# "change my default address", "and your user address", "along with the default address", "as my default address"
DEFAULT_CHANGE = re.compile(
    r"(?:change|update|modify|correct|set|fix)\w*\s+(?:my|the|your)?\s*(?:user(?:'s)?\s+|default\s+|profile\s+|account\s+)+address|"
    r"(?:user|default|profile|account)\s+(?:default\s+)?address\b(?!\s+(?:in|on|from)\b)(?:\s+(?:too|as well|also))?|as (?:my|the|your) default\b",
    re.I,
)
# "to my default address", "the address in my profile": the default is where the order goes, not what changes.
DEFAULT_TARGET = re.compile(
    r"\bto (?:my|the|your) (?:user(?:'s)? |account )?(?:default|profile|home)(?: address)?\b|address (?:in|on|from) (?:my|the|your) (?:user )?profile", re.I
)
ORDER_CHANGE = re.compile(
    r"order(?:'s|s)?\s+(?:shipping\s+|delivery\s+)?address|address(?:es)?\s+(?:of|for|on)\s+(?:my|the|your|all|both)?\s*(?:\w+\s+)?order|"
    r"(?:ship|send|deliver)\w*\s+(?:it|them|the order|my order|this order|that order)\s+to|(?:change|modify|update|switch|redirect)\w*\s+"
    r"(?:my|the|your|this|that|all|both)?\s*(?:\w+\s+)?orders?\s+to\b",
    re.I,
)
ADDRESS_WORDS = re.compile(r"address|ship(?:ping)? to|deliver(?:y|ed)? to|send (?:it|them) to|adresse|dirección|Anschrift", re.I)


def _state(name: str | None, zip_code: str) -> str:
    if name:
        name = name.strip()
        if len(name) == 2 and name.isupper():
            return name
        if name.lower() in STATES:
            return STATES[name.lower()]
    prefix = int(zip_code[:3])
    return next(state for limit, state in _ZIP_STATES if prefix < limit)


_ZIP = re.compile(r"(?<![\w-])\d{5}(?:-\d{4})?(?![\w-])")
_NUMBER_START = re.compile(r"(?<![\w#.-])\d{1,6}[A-Za-z]?\s+(?=[A-Za-z])")
_STREET_PARTS = ("AddressNumberPrefix", "AddressNumber", "AddressNumberSuffix", "StreetNamePreModifier", "StreetNamePreDirectional",
                 "StreetNamePreType", "StreetName", "StreetNamePostType", "StreetNamePostDirectional")  # fmt: skip
_PARSED = {*_STREET_PARTS, "OccupancyType", "OccupancyIdentifier", "SubaddressType", "SubaddressIdentifier", "PlaceName", "StateName", "ZipCode"}


def _parsed(span: str) -> dict[str, str] | None:
    """One US address by usaddress's CRF model (street, unit, city, state, zip in any layout: "88 Divisadero Street
    Apt 3 San Francisco CA 94117", lines without commas); None when it is not one whole address and nothing else."""
    import usaddress  # a trained parser (MIT): commas and line breaks are optional in what customers write

    try:
        parts, kind = usaddress.tag(" ".join(span.split()))
    except usaddress.RepeatedLabelError:
        return None
    if kind != "Street Address" or set(parts) - _PARSED or not {"AddressNumber", "StreetName", "PlaceName", "ZipCode"} <= set(parts):
        return None
    unit = " ".join(parts.get(k, "") for k in ("OccupancyType", "OccupancyIdentifier", "SubaddressType", "SubaddressIdentifier")).split()
    zip_code = parts["ZipCode"][:5]
    return {
        "address1": " ".join(parts[k] for k in _STREET_PARTS if k in parts).strip(" ,"),
        "address2": " ".join(unit).strip(" ,"),
        "city": parts["PlaceName"].strip(" ,"),
        "state": _state(parts.get("StateName", "").strip(" ,.") or None, zip_code),
        "country": "USA",
        "zip": zip_code,
    }


def written(text: str) -> dict[str, str] | None:
    """The last full address the customer wrote out (the new one usually comes last), or None. Written with commas
    ("400 Willow Lane, Suite 502, Denver, CO 80256"), the pattern reads it at once; otherwise each zip code is read with
    the words before it, from the earliest house number within reach, by the trained parser."""
    found: list[tuple[int, dict[str, str]]] = []
    for match in WRITTEN.finditer(text):
        found.append(
            (
                match.end(),
                {
                    "address1": match.group("a1").strip(),
                    "address2": (match.group("a2") or "").strip(),
                    "city": match.group("city").strip(),
                    "state": _state(match.group("state"), match.group("zip")),
                    "country": "USA",
                    "zip": match.group("zip"),
                },
            )
        )
    for zip_match in _ZIP.finditer(text):
        if any(end == zip_match.end() for end, _ in found):
            continue
        reach = max(0, zip_match.start() - 120)
        for number in _NUMBER_START.finditer(text, reach, zip_match.start()):
            address = _parsed(text[number.start() : zip_match.end()])
            if address is not None:
                found.append((zip_match.end(), address))
                break
    return max(found, key=lambda pair: pair[0])[1] if found else None


def _city_mentions(text: str, city: str, state: str) -> list[re.Match[str]]:
    names = {city.lower()} | {alias for alias, real in ALIASES.items() if real == city.lower() and (alias != "dc" or state == "DC")}
    if state == "DC":
        names.add("washington dc")
    pattern = r"(?<![\w])(?:" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")(?![\w])"
    return list(re.finditer(pattern, text, re.I))


def _same(a: dict[str, str], b: dict[str, str]) -> bool:
    return all((a.get(f) or "") == (b.get(f) or "") for f in FIELDS)


def target(text: str, customer: Customer, *, to_account: bool = False) -> tuple[dict[str, str], str] | None:
    """(new address, where it came from) or None when the customer's words do not say. to_account: the customer asked
    for an order to go to the address on their account (AddressAsk.to_account)."""
    address = written(text)
    if address is not None:
        return address, "written"
    if to_account and customer.address:
        return customer.address, "default"
    for order_id in named_orders(text):
        if re.search(rf"(same|address)\W+(?:\w+\W+){{0,4}}(?:as|of|in|from)\W+(?:\w+\W+){{0,2}}{re.escape(order_id.lstrip('#'))}", text, re.I):
            order = next((o for o in customer.orders if o.order_id == order_id), None)
            if order is not None and order.address:
                return order.address, order_id
    by_order = _sent_to_new_place(text, customer)
    if by_order is not None:
        return by_order
    if DEFAULT_TARGET.search(text) and customer.address:
        return customer.address, "default"
    scored: list[tuple[int, str, dict[str, str]]] = []
    # every place the store holds it, repeats kept: the default that changes is not where it goes, but an order that ships
    # to the same address still names it ("moved to a new house ... bought a tablet sent there", when the default is it)
    places = [("default", customer.address)] + [(o.order_id, o.address) for o in customer.orders if o.address]
    for where, address in places:
        for mention in _city_mentions(text, address.get("city", ""), address.get("state", "")):
            after = text[mention.end() : mention.end() + 25].lower()
            before = text[max(0, mention.start() - 20) : mention.start()].lower()
            score = 2 if re.search(r"^\W*(?:\w+\W+)?(address|place|home|house|apartment|one)\b", after) else 0
            score += 1 if re.search(r"\b(to|in|at)\W+(?:my|the|your|our|his|her)?\W*(?:\w+'s\W+)?$", before) else 0
            score -= 2 if re.search(r"^\W*(order|one I|purchase)", after) else 0
            scored.append((score, where, address))
    scored = [s for s in scored if s[0] > 0 and not (s[1] == "default" and wants_default(text))]  # the default that changes is not where it goes
    if scored:
        best = max(s[0] for s in scored)
        picks = {w: a for s, w, a in scored if s == best}
        addresses = list(picks.values())
        if all(_same(addresses[0], a) for a in addresses[1:]):
            where = "default" if "default" in picks else next(iter(picks))
            return addresses[0], where
    return None


# "I moved to a new house and bought a tablet sent there", "the lamp already went to my new address": the new place is
# where an order the customer names was sent. Told, not asked for: a sentence that asks ("please send the lamp to my new
# address") says where something should go, not where it went.
_NEW_PLACE = re.compile(
    r"\bnew (?:home|house|address|place|apartment|flat)\b|\bneuen? (?:Adresse|Wohnung|Haus)\b|\bnueva (?:direcci[oó]n|casa)\b|"
    r"\bnouvelle (?:adresse|maison)\b|\bnouveau (?:logement|domicile|appartement)\b",
    re.I,
)
_SENT = re.compile(
    r"\b(?:sent|shipped|delivered|went|gone|arrived|geschickt|geliefert|angekommen|enviad[oa]s?|lleg[oó]|envoy[ée]e?s?|livr[ée]e?s?|arriv[ée]e?s?)\b", re.I
)
_ASKING = re.compile(r"\b(?:please|could you|can you|would you|i want|i'd like|i would like|bitte|por favor|s'il vous pla[iî]t|merci de|pourriez)\b", re.I)


def _sent_to_new_place(text: str, customer: Customer) -> tuple[dict[str, str], str] | None:
    every = [i for o in customer.orders for i in o.items]
    for sentence in _sentences(text):
        if not (_NEW_PLACE.search(sentence) and _SENT.search(sentence)) or _ASKING.search(sentence):
            continue
        orders = {i.order_id for i in mentioned_items(every, sentence)}
        places = [o for o in customer.orders if o.order_id in orders and o.address]
        if places and all(_same(places[0].address, o.address) for o in places[1:]):
            return places[0].address, places[0].order_id
    return None


def wants_default(text: str) -> bool:
    return bool(DEFAULT_CHANGE.search(DEFAULT_TARGET.sub(" ", text)))


_CHANGE = re.compile(r"\b(chang|modif|updat|correct|switch|send|redirect|move|fix)\w*|\b(?:ship|deliver)\s+(?:it|them)\b", re.I)
_TARGET_ORDER = re.compile(
    r"\b(?:same as|as (?:in|on)|of|from|in)\s+(?:my |the |your )?(?:other |another )?order(?:\s+#?W\d{7})?|\bin (?:my |the |your )?(?:other )?orders?\b", re.I
)


def wants_orders(text: str) -> bool:
    """A sentence asks to change where an order ships: it speaks of an address, a change, and an order (other than the
    order the new address is taken from)."""
    if ORDER_CHANGE.search(text):
        return True
    for sentence in _sentences(text):
        if ADDRESS_WORDS.search(sentence) and _CHANGE.search(sentence) and re.search(r"\border|#?W\d{7}", _TARGET_ORDER.sub(" ", sentence), re.I):
            return True
    return False


def _sentences(text: str) -> list[str]:
    return re.split(r"(?<=[.!?;])\s+|\n+", text)


def _address_sentences(text: str) -> str:
    """The sentences about where something ships: an address word, or "could you ship it to my office" (the address
    itself may follow on its own lines)."""
    return " ".join(s for s in _sentences(text) if ADDRESS_WORDS.search(s) or ORDER_CHANGE.search(s))


def without_address_sentences(text: str) -> str:
    return " ".join(s for s in _sentences(text) if not ADDRESS_WORDS.search(s))


def orders_to_change(*, llm: CrewdeskLLM, text: str, customer: Customer, new: dict[str, str], source: str) -> tuple[list[Order], bool]:
    """The pending orders whose address should become the new one, and whether the model chose them (the customer's
    words did not say which of several)."""
    pending = [o for o in customer.orders if o.status == "pending" and not _same(o.address, new)]
    if not pending:
        return [], False
    said = _address_sentences(text) or text
    named = named_orders(said) - ({source} if source.startswith("#") else set())
    if named:
        return [o for o in pending if o.order_id in named], False
    if UNIVERSAL.search(said) or re.search(r"\bboth\b", said, re.I):
        return pending, False
    named_items = mentioned_items([i for o in pending for i in o.items], said)
    if named_items:
        # "the order with the thermostat, earbuds, puzzle and keyboard": the order that holds the most of the products
        # named, where another order holds only some of them (the earbuds); orders that hold as many stay together
        kinds = {o.order_id: {i.name for i in named_items if i.order_id == o.order_id} for o in pending}
        most = max(len(k) for k in kinds.values())
        return [o for o in pending if kinds[o.order_id] and (most < 2 or len(kinds[o.order_id]) == most)], False
    # "my LA order", "the order sent to Texas": the pending orders that ship to a place the customer named, other than the new one
    shipped_to = [
        o
        for o in pending
        if o.address
        and o.address.get("city") != new.get("city")
        and (
            _city_mentions(said, o.address.get("city", ""), o.address.get("state", ""))
            or re.search(rf"\b{re.escape(o.address.get('state') or '#')}\b", said)
            or any(abbr == o.address.get("state") and re.search(rf"\b{name}\b", said, re.I) for name, abbr in STATES.items())
        )
    ]
    if shipped_to:
        return shipped_to, False
    if len(pending) == 1:
        return pending, False
    return _ask(llm, text, pending, new), True


def _ask(llm: CrewdeskLLM, text: str, pending: list[Order], new: dict[str, str]) -> list[Order]:
    lines = [
        f"{n}. order {o.order_id}: {', '.join(i.name for i in o.items)}; ships to {o.address.get('address1')}, {o.address.get('city')}"
        for n, o in enumerate(pending, 1)
    ]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {str(n): {"enum": ["change", "keep"]} for n in range(1, len(pending) + 1)},
        "required": [str(n) for n in range(1, len(pending) + 1)],
        "additionalProperties": False,
    }
    messages = [
        {
            "role": "system",
            "content": "You assist the support team of an online store. The customer wants a new shipping address on some of "
            "their pending orders. For each numbered order, choose change if the customer asks to change where it ships, else keep.",
        },
        {
            "role": "user",
            "content": f"Customer's message:\n{text}\n\nNew address: {new.get('address1')}, {new.get('city')}\n\nPending orders:\n" + "\n".join(lines),
        },
    ]
    answer = llm.decide(messages, schema, name="choose_orders")
    return [o for n, o in enumerate(pending, 1) if answer[str(n)] == "change"]


def label(address: dict[str, str]) -> str:
    parts = [address.get("address1", ""), address.get("address2", ""), address.get("city", ""), f"{address.get('state', '')} {address.get('zip', '')}".strip()]
    return ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class AddressAsk:
    """What a ticket asks of addresses, read clause by clause with the vocabulary's address words (any of the four
    languages): an order's shipping address, the account's default address, and whether an order should go to the
    account's own address ("ship it to the address on my account")."""

    orders: bool = False
    default: bool = False
    to_account: bool = False


_ORDER_WORD = re.compile(r"\b(orders?|bestellung\w*|pedidos?|commandes?)\b", re.I)
_PIECES = re.compile(r"(?<=[.!?;:])\s+|\n+|,\s*(?:and|und|y|et)?\s*|\s+(?:and|und|y|et|but|aber|pero|mais)\s+", re.I)


def asks(text: str, vocabulary: Vocabulary, language: str | None) -> AddressAsk:
    orders = default = to_account = False
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]
    if not any(vocabulary.address["words"].found(words(s), language) or written(s) is not None for s in sentences):
        return AddressAsk()  # nothing in the ticket speaks of an address
    for sentence in sentences:
        for piece in _PIECES.split(sentence):
            said = words(piece)
            if not said or vocabulary.requests["keep"].found(said, language):  # "the open order can stay as it is"
                continue
            # "change the address of the order to my default one": an order's address, the account's is only where it goes
            account = vocabulary.address["account"].found(said, language)
            setting = vocabulary.address["set"].found(said, language) or vocabulary.requests["change"].found(said, language)
            speaks = vocabulary.address["words"].found(said, language) or written(piece) is not None
            ship = vocabulary.address["ship"].found(said, language) or bool(_ORDER_WORD.search(piece) and setting and (speaks or account))
            if ship:
                orders = True
                to_account = to_account or account
            elif account and setting and not vocabulary.negations.found(said, language):  # "mein Konto bitte NICHT ändern"
                default = True
    return AddressAsk(orders=orders, default=default, to_account=to_account)


def mentioned(text: str, vocabulary: Vocabulary, language: str | None) -> AddressAsk:
    """The wider net of verify-before-resolved: a sentence that speaks of an address (its words, or an address written
    out) and wants something (a wish, a change, a place to ship to) asks about an order's address when it speaks of an
    order or of shipping, and about the account's when it speaks of the account. `asks` reads which; this only says a
    request of that kind was made, so one nothing was done about is quoted back rather than passed over."""
    orders = default = False
    for sentence in (s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()):
        said = words(sentence)
        if not (vocabulary.address["words"].found(said, language) or written(sentence) is not None):
            continue
        wants = (
            vocabulary.wishes.found(said, language)
            or vocabulary.address["set"].found(said, language)
            or vocabulary.requests["change"].found(said, language)
            or vocabulary.address["ship"].found(said, language)
        )
        if not wants or vocabulary.hedges.found(said, language) or (sentence.rstrip().endswith("?") and not vocabulary.wishes.found(said, language)):
            continue
        ship = vocabulary.address["ship"].found(said, language)  # "send it to my home address": the account's is where it goes
        orders = orders or bool(ship or _ORDER_WORD.search(sentence))
        default = default or (vocabulary.address["account"].found(said, language) and not ship)
    return AddressAsk(orders=orders, default=default)
