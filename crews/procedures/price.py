"""A condition on a price, checked in code against the difference a planned change makes: "if the black pair costs more
than $20 extra, just take them back", "falls der mehr als 20 Dollar teurer ist, lassen Sie es bitte so", "si la M
cuesta más que el que tengo, prefiero devolverlo". The request reader leaves conditional clauses out of the first
request; here a conditional clause that compares a price is read as (threshold, which way, what then) with the
vocabulary's words (tasks/procedures/vocabulary.yaml, `price`), and the amount the customer wrote. The same comparison
says opposite things by how it is put: "if it costs more than $20, take it back" names when the alternative is wanted,
"only if it is under $250 more, otherwise forget it" ("nur wenn", "solo si", "seulement si", or an "otherwise" after
it) names when the change itself is."""

from __future__ import annotations

import re
from dataclasses import dataclass

from crewdesk.store.lexicon import fold
from crews.procedures import reading
from crews.procedures.wording import Vocabulary, words

# "$20", "20 dollars", "20 Dollar", "20 €", "20 euros", "USD 20"
_MONEY = re.compile(
    r"(?:\$|usd\s*|€)\s*(\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:[.,]\d{1,2})?)|(\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:[.,]\d{1,2})?)\s*(?:\$|dollars?|dolares|dollar|usd|euros?|€|bucks)",
    re.I,
)


_JOINING = frozenset({"but", "and", "aber", "und", "pero", "y", "mais", "et"})


@dataclass(frozen=True)
class PriceCondition:
    threshold: float  # dollars; 0 when compared with what they have ("if the M costs more than the one I have")
    more: bool  # True: "more than"; False: "less than"
    then: str  # return | nothing | cancel | "" (not said)
    text: str
    only: bool = False  # the comparison says when the change is wanted ("only if under $250 more, otherwise forget it")
    of_price: bool = False  # the amount is what the new item costs ("if it is less than 200 bucks"), not the difference

    def holds(self, difference: float) -> bool:
        """Whether the comparison is met by a change that costs `difference` more (negative: it refunds)."""
        return difference > self.threshold if self.more else difference < self.threshold

    def wants_change(self, difference: float) -> bool:
        """Whether the customer still wants the change at this difference: "only if it is under $250 more" wants it when
        the comparison holds; "if it costs more than $20, just take it back" wants it when it does not."""
        return self.holds(difference) if self.only else not self.holds(difference)


def read(text: str, vocabulary: Vocabulary, language: str | None) -> list[PriceCondition]:
    conditions = []
    clauses = reading.clauses_of(text, vocabulary, language)
    for index, clause in enumerate(clauses):
        # the condition opens the clause ("If it costs more ...") or follows its request ("swap it, but only if ...")
        starts = [start for start, _ in vocabulary.conditions.spans(words(clause), language)]
        if not starts:
            continue
        # with the "only" before the "if" ("but only if", "aber nur wenn"), not the words of the request before it ("por
        # el más caro si cuesta menos de 1000 dólares" compares nothing by "más caro")
        every = words(clause)
        only_before = [start for start, end in vocabulary.price["only"].spans(every, language) if starts[0] - 2 <= start < starts[0] < end]
        said = every[min(only_before, default=starts[0]) :]
        dearer, cheaper = vocabulary.price["more"].spans(said, language), vocabulary.price["less"].spans(said, language)
        if not dearer and not cheaper:
            continue
        # both: the comparison comes first, the words after it say what is compared ("weniger als 30 Dollar mehr kostet")
        more = bool(dearer) and (not cheaper or dearer[0][0] < cheaper[0][0])
        money = _MONEY.search(fold(clause))
        if money is None and not vocabulary.price["money"].found(said, language):  # "if it is still under warranty"
            continue
        threshold = _amount(money.group(1) or money.group(2)) if money else 0.0
        then = _consequence(said, vocabulary, language)
        following = words(clauses[index + 1]) if index + 1 < len(clauses) else []
        opening = following[1:5] if following[:1] and following[0] in _JOINING else following[:4]  # "But if not, ..."
        otherwise = not then and any(start == 0 for start, _ in vocabulary.price["otherwise"].spans(opening, language))
        if otherwise:
            then = _consequence(following, vocabulary, language)  # "... only if under $20 more. Otherwise / If not, leave it."
        # "only if", an alternative said only after it ("if it is under $200, exchange it. If not, return it"), or no
        # alternative said to a lower bound ("if it is under $200 more, go ahead", "si es más barata, el reembolso a mi
        # tarjeta"): the comparison says when the change itself is wanted
        only = vocabulary.price["only"].found(said, language) or otherwise or (not then and not more)
        # an amount with no word of a difference ("if it is less than 200 bucks", "if that bike costs less than $2,000")
        # is what the new item costs; "$20 extra", "30 Dollar teurer", "the difference" anywhere in the clause, or a
        # comparison with what they have ("if it costs more than mine") is what the change costs
        tail = words(fold(clause)[money.end() :])[:3] if money else []
        relative = (
            money is None
            or vocabulary.price["difference"].found(every, language)  # "den Aufpreis ..., sofern er unter 100 Dollar liegt"
            or any(start == 0 for start, _ in vocabulary.price["comparative"].spans(tail, language))
        )
        conditions.append(PriceCondition(threshold=threshold, more=more, then=then, text=clause, only=only, of_price=not relative))
    return conditions


def _amount(written: str) -> float:
    """ "2,000" and "2,000.50" are thousands; "12,50" is a decimal comma."""
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?", written):
        return float(written.replace(",", ""))
    return float(written.replace(",", "."))


def _consequence(said: list[str], vocabulary: Vocabulary, language: str | None) -> str:
    if vocabulary.price["nothing"].found(said, language):
        return "nothing"
    if reading.returns_beyond_money(" ".join(said), vocabulary, language):
        return "return"  # not "refund the difference to my card": where money goes is no return instead of the change
    if vocabulary.requests["cancel"].found(said, language):
        return "cancel"
    return ""
