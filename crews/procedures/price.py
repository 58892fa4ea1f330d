"""A condition on a price, checked in code against the difference a planned change makes: "if the black pair costs more
than $20 extra, just take them back", "falls der mehr als 20 Dollar teurer ist, lassen Sie es bitte so", "si la M
cuesta más que el que tengo, prefiero devolverlo". The request reader leaves conditional clauses out of the first
request; here a conditional clause that compares a price is read as (threshold, which way, what then) with the
vocabulary's words (tasks/procedures/vocabulary.yaml, `price`), and the amount the customer wrote."""

from __future__ import annotations

import re
from dataclasses import dataclass

from crewdesk.store.lexicon import fold
from crews.procedures import reading
from crews.procedures.wording import Vocabulary, words

# "$20", "20 dollars", "20 Dollar", "20 €", "20 euros", "USD 20"
_MONEY = re.compile(r"(?:\$|usd\s*|€)\s*(\d+(?:[.,]\d{1,2})?)|(\d+(?:[.,]\d{1,2})?)\s*(?:\$|dollars?|dolares|dollar|usd|euros?|€)", re.I)


@dataclass(frozen=True)
class PriceCondition:
    threshold: float  # dollars; 0 when compared with what they have ("if the M costs more than the one I have")
    more: bool  # True: "more than"; False: "less than"
    then: str  # return | nothing | cancel | "" (not said)
    text: str

    def holds(self, difference: float) -> bool:
        """Whether the condition is met by a change that costs `difference` more (negative: it refunds)."""
        return difference > self.threshold if self.more else difference < self.threshold


def read(text: str, vocabulary: Vocabulary, language: str | None) -> list[PriceCondition]:
    conditions = []
    for clause in reading.clauses_of(text, vocabulary, language):
        said = words(clause)
        if not any(start <= 2 for start, _ in vocabulary.conditions.spans(said[:5], language)):
            continue
        more, less = vocabulary.price["more"].found(said, language), vocabulary.price["less"].found(said, language)
        if more == less:  # neither, or both: no comparison read
            continue
        money = _MONEY.search(fold(clause))
        if money is None and not vocabulary.price["money"].found(said, language):  # "if it is still under warranty"
            continue
        threshold = float((money.group(1) or money.group(2)).replace(",", ".")) if money else 0.0
        if vocabulary.price["nothing"].found(said, language):
            then = "nothing"
        elif vocabulary.requests["return"].found(said, language):
            then = "return"
        elif vocabulary.requests["cancel"].found(said, language):
            then = "cancel"
        else:
            then = ""
        conditions.append(PriceCondition(threshold=threshold, more=more, then=then, text=clause))
    return conditions
