"""A pending order paid with another of the customer's own methods ("charge my PayPal instead of the Visa", "die
Zahlungsart auf Mastercard umstellen", "payer avec PayPal plutôt qu'avec ma carte"): which method and which order.

The methods are the account's (from the tools); the customer's words name them by kind (gift card, PayPal, card) or by
a card's brand, in any of the four languages (tasks/procedures/vocabulary.yaml). Of the methods named, the new one is
the one the order is not paid with already; the order is the pending one named (by number, by its products, by the
method it is paid with now), or the only pending one. Anything else is asked, not guessed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from crewdesk.store.lexicon import fold
from crews.procedures import decide, reading
from crews.procedures.state import Customer, Item, Order, PaymentMethod
from crews.procedures.wording import Vocabulary, words

# Money that is not the order's payment: a refund, a price difference, a balance.
_NOT_THE_ORDER = re.compile(
    r"\b(refund\w*|difference|differenz|diferencia|erstatt\w*|reembols\w*|rembours\w*|balance|guthaben|saldo|solde|additional|extra|"
    r"zusatzlich\w*|mehrkosten|adicional\w*|supplement\w*|surcout)\b"
)  # a refund, a price difference, an extra charge: not the order's own payment


@dataclass(frozen=True)
class PaymentRequest:
    order: Order | None  # None: which pending order is not clear
    method: PaymentMethod | None  # None: which of their methods is not clear
    named: list[PaymentMethod]


def _brand(method: PaymentMethod) -> str:
    return fold(method.label.split()[0]) if method.source == "credit_card" else ""


def _named_at(said: list[str], customer: Customer, vocabulary: Vocabulary, language: str | None) -> list[tuple[int, PaymentMethod]]:
    """(word position, method) for each of the customer's methods the words name (a card by its brand, or as 'card'
    when there is one card)."""
    found: list[tuple[int, PaymentMethod]] = []
    methods = list(customer.payment_methods.values())
    taken: set[int] = set()  # the words of "gift card", "carte cadeau": not a card
    for kind in ("gift_card", "paypal"):
        for start, end in vocabulary.method_kinds[kind].spans(said, language):
            found.extend((start, m) for m in methods if m.source == kind)
            taken.update(range(start, end))
    cards = [m for m in methods if m.source == "credit_card"]
    for n, word in enumerate(said):
        branded = [m for m in cards if _brand(m) and word == _brand(m)]
        found.extend((n, m) for m in branded)
    if not any(m.source == "credit_card" for _, m in found) and len(cards) == 1:  # "my card" when there is one
        found.extend((start, cards[0]) for start, _ in vocabulary.method_kinds["credit_card"].spans(said, language) if start not in taken)
    return found


def _after(said: list[str], terms, language: str | None, reach: int) -> set[int]:
    """Word positions up to `reach` words after one of the terms ("instead of the gift card": the gift card's)."""
    return {n for _, end in terms.spans(said, language) for n in range(end, end + reach)}


def methods_named(text: str, customer: Customer, vocabulary: Vocabulary, language: str | None, *, moving_from: bool | None = None) -> list[PaymentMethod]:
    """The customer's methods the text names, in the order it names them (a card by its brand, or as 'card').
    moving_from: True for only those named right after "instead of" / "statt" / "au lieu de", False for only the others."""
    said = words(text)
    away = _after(said, vocabulary.instead, language, 3)
    found = _named_at(said, customer, vocabulary, language)
    if moving_from is not None:
        found = [(n, m) for n, m in found if (n in away) == moving_from]
    ordered = [m for _, m in sorted(found, key=lambda pair: pair[0])]
    return list({m.method_id: m for m in ordered}.values())


def asks_payment(clause: str, vocabulary: Vocabulary, language: str | None) -> bool:
    """This clause asks to pay an order another way."""
    said = words(clause)
    if _NOT_THE_ORDER.search(fold(clause)):
        return False
    about_payment = vocabulary.requests["payment"].found(said, language)
    names_method = vocabulary.methods.found(said, language)
    changes = vocabulary.requests["change"].found(said, language) or vocabulary.wishes.found(said, language)
    # the order's payment is named as such ("pay with", "charge my", "Zahlungsart", "payer avec"): a method named beside a
    # change of items ("and use my gift card") or a preference ("I'd prefer gift card") is where a difference goes
    return about_payment and (names_method or changes)


def wants_change(text: str, vocabulary: Vocabulary, language: str | None) -> bool:
    """Some clause asks to pay an order another way: it speaks of the payment itself, or names a method with a change
    or contrast word, and is not about a refund or a price difference."""
    return any(asks_payment(clause, vocabulary, language) for clause in reading.clauses_of(text, vocabulary, language))


def without_payment_clauses(text: str, vocabulary: Vocabulary, language: str | None) -> str:
    """The text less the clauses that ask to pay an order another way (their "change" is not an item's)."""
    return "\n".join(c for c in reading.clauses_of(text, vocabulary, language) if not asks_payment(c, vocabulary, language))


def read(text: str, customer: Customer, vocabulary: Vocabulary, language: str | None) -> PaymentRequest:
    pending = [o for o in customer.orders if o.status == "pending"]
    clauses = [c for c in reading.clauses_of(text, vocabulary, language) if not _NOT_THE_ORDER.search(fold(c))]
    asking = [c for c in clauses if asks_payment(c, vocabulary, language)]
    said = "\n".join(asking or clauses)  # the clauses that ask it say which order and which methods
    named = methods_named(said, customer, vocabulary, language)
    orders = [o for o in pending if o.order_id.lstrip("#") in said]
    if not orders:
        every = [i for o in pending for i in o.items]
        mentioned = {i.order_id for c in (asking or clauses) for m in reading.analyse(c, every, vocabulary, language).mentions for i in m.items}
        orders = [o for o in pending if o.order_id in mentioned]
    if not orders and named:  # "instead of the Visa": the pending orders paid with a method they name
        paid_with = {m.method_id for m in named}
        orders = [o for o in pending if o.paid_with in paid_with]
    if not orders and len(pending) == 1:
        orders = pending
    order = orders[0] if len(orders) == 1 else None
    away = methods_named(said, customer, vocabulary, language, moving_from=True)
    if away:  # "from PayPal instead of the gift card": the new one is the one not after "instead of"
        new = methods_named(said, customer, vocabulary, language, moving_from=False)
    else:  # else the one the order is not paid with already
        new = [m for m in named if order is None or m.method_id != order.paid_with]
    method = new[0] if len(new) == 1 else None
    return PaymentRequest(order=order, method=method, named=named)


AMBIGUOUS = "ambiguous-method:"  # the customer named several of their methods for one payment and did not say which


def money_method(text: str, order: Order, customer: Customer, vocabulary: Vocabulary, language: str | None) -> str | None:
    """Where a refund or a price difference goes when the customer's words name more than one of their methods: "my
    gift card is basically empty, so put any extra on the Mastercard", "on my Visa rather than the gift card", "I paid
    with PayPal but refund it to my gift card". A method named right after "instead of" is out; of the rest, the one the
    money is sent to ("on", "to", "auf", "sur": vocabulary `money_to`) wins, else the one not said to have paid before
    (`paid_before`). None when they named at most one method (policy.named_method reads that); AMBIGUOUS and the
    methods' ids when their words do not tell which, or they only said which not to use and it is the order's own:
    asked, never guessed (gift card first, as before)."""
    said = words(text)
    found = _named_at(said, customer, vocabulary, language)
    if not found:
        return None
    away = _after(said, vocabulary.instead, language, 3)
    left = [(n, m) for n, m in found if n not in away]
    if not left:  # only named as what not to use ("not to the gift card"): the order's own method, unless that is it
        refused = list(dict.fromkeys(m.method_id for _, m in found))
        return AMBIGUOUS + ",".join(refused) if order.paid_with in refused else order.paid_with
    paid = _after(said, vocabulary.paid_before, language, 4)
    directing = [(n, m) for n, m in left if n not in paid]
    if not directing:  # "I paid with my gift card": how something was paid, not where this money goes
        return order.paid_with
    if len({m.method_id for _, m in found}) < 2:
        return None
    for narrowed in (left, [(n, m) for n, m in left if n in _after(said, vocabulary.money_to, language, 3)], directing):
        ids = list(dict.fromkeys(m.method_id for _, m in narrowed))
        if len(ids) == 1:
            return ids[0]
    return AMBIGUOUS + ",".join(dict.fromkeys(m.method_id for _, m in left or found))


# A list entry: "1) ...", "2. ..." or "- ..." at a line's start, or "2) ..." inside a line.
_ENTRY = re.compile(r"(?m)^\s*(?:[-\u2013\u2022*]|\(?\d{1,2}[).])\s+|(?<!\S)\(?\d{1,2}\)\s+")


def entry_of(text: str, items: list[Item], customer: Customer, vocabulary: Vocabulary, language: str | None) -> str | None:
    """In a ticket written as a list ("1) the shoes ... gift card for the extra 2) the kettle ... refund to PayPal"), the
    one entry that speaks of these items, when it names a payment method of its own: its money goes there, not to a
    method another entry names. None when the ticket is no list, or not exactly one entry names the items."""
    cuts = [m.start() for m in _ENTRY.finditer(text)]
    if len(cuts) < 2:
        return None
    entries = [text[a:b] for a, b in zip(cuts, [*cuts[1:], len(text)], strict=True)]
    about = [e for e in entries if decide.mentioned_items(items, e)]
    if len(about) != 1 or not methods_named(about[0], customer, vocabulary, language):
        return None
    return about[0]
