"""The customer's answer to the question a run ended with (a ticket waiting on the customer), read against that
question's own choices: the items or variants we listed, the writes we proposed. Nothing outside those choices can be
picked: an answer is grounded in what we asked, never read as a new free-form request for those points.

What an answer settles (`Answered`): the items the customer confirmed (yes, or "only the lamp": the ones they name of
those proposed), the ones they declined, and the item or variant they picked where we asked which. The procedure flow
runs again on the ticket's request with these settled (crews/procedures/flow.py `_answer`); what the answer leaves open
is asked again, and after the turns allowed a person takes the ticket."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from crewdesk.store.lexicon import fold, tokens
from crews.procedures import decide, reading
from crews.procedures.state import Item, Outcome
from crews.procedures.wording import Vocabulary, words

ORDINALS = ("first", "second", "third", "fourth")


def key(item: Item) -> tuple[str, str]:
    """An item (or a variant offered for it) as the answer speaks of it: its order and its item id."""
    return (item.order_id, item.item_id)


@dataclass
class Answered:
    """What the customer's answer settled, for the flow's next run of the same ticket."""

    text: str  # the answer as written (PII tokens in place of personal data)
    yes: set[tuple[str, str]] = field(default_factory=set)  # proposed items they confirmed
    no: set[tuple[str, str]] = field(default_factory=set)  # proposed items they declined
    picked: set[tuple[str, str]] = field(default_factory=set)  # where asked which: the item or variant they chose
    user_id: str = ""  # the customer the question was put to: the resumed run must prove the same one
    written: set[str] = field(default_factory=set)  # orders this ticket already wrote: settled, not planned again
    polarity: str | None = None  # "yes" | "no" | "mixed" (both) | None (neither)
    items_asked: bool = False  # we asked which items the request is about: the answer names them
    approved: set[str] = field(default_factory=set)  # proposed writes (Action.fingerprint) they said yes to, as stated
    refused: set[str] = field(default_factory=set)  # proposed writes they said no to

    @property
    def settled_anything(self) -> bool:
        return bool(self.yes or self.no or self.picked or self.approved or self.refused)

    def settled(self) -> dict[str, list]:
        """What this answer and the earlier ones settled, for the ticket's next question (ticket_questions.state)."""
        return {
            "yes": sorted(map(list, self.yes)),
            "no": sorted(map(list, self.no)),
            "picked": sorted(map(list, self.picked)),
            "approved": sorted(self.approved),
            "refused": sorted(self.refused),
        }

    def carry(self, earlier: dict[str, list]) -> Answered:
        """Add what the customer's earlier answers settled (the picked variant, the items declined), so a later turn
        never asks it again; where this answer says otherwise about an item or a write, this answer stands."""
        pairs = lambda name: {(str(a), str(b)) for a, b in earlier.get(name) or []}  # noqa: E731
        self.yes |= pairs("yes") - self.no
        self.no |= pairs("no") - self.yes
        self.picked |= pairs("picked")
        self.approved |= set(earlier.get("approved") or []) - self.refused
        self.refused |= set(earlier.get("refused") or []) - self.approved
        return self


def polarity(text: str, vocabulary: Vocabulary, language: str | None) -> str | None:
    """yes or no when the answer says one of them (its first sentence decides: "No. Yes, the lamp only" is a no with a
    correction, read by the items it names); "mixed" when it says both; None when it says neither."""
    first = re.split(r"(?<=[.!?\n])\s+", text.strip(), maxsplit=1)[0] if text.strip() else ""
    said = words(first)
    yes, no = vocabulary.answers["yes"].found(said, language), vocabulary.answers["no"].found(said, language)
    if yes and no:
        return "mixed"  # "yes, but not the kettle": which part is which is not read here
    if yes or no:
        return "yes" if yes else "no"
    return None


def _ordinal(text: str, candidates: list[Item], vocabulary: Vocabulary, language: str | None) -> list[Item]:
    said = words(text)
    hit = [n for n, name in enumerate(ORDINALS) if name in vocabulary.answers and vocabulary.answers[name].found(said, language)]
    return [candidates[hit[0]]] if len(hit) == 1 and hit[0] < len(candidates) else []


def _tokens(text: str) -> tuple[str, list[tuple[str, int, int]]]:
    """The answer folded as the vocabulary reads it, and its words with their places in the folded text."""
    folded = fold(text)
    return folded, list(tokens(folded))


def _from(text: str, folded: str, offset: int) -> str:
    """The answer from a place found in its folded text: the customer's own characters where folding kept the length."""
    return text[offset:] if len(folded) == len(text) else folded[offset:]


def _after_yes_or_no(text: str, vocabulary: Vocabulary, language: str | None) -> str:
    """The answer without the yes or no it opens with ("Yes", "No, only the lamp"): a store's option values include
    "yes" and "no" (waterproof: yes), and the customer's yes to our question names none of them."""
    folded, found = _tokens(text)
    said = [t for t, _, _ in found]
    spans = sorted(vocabulary.answers["yes"].spans(said, language) + vocabulary.answers["no"].spans(said, language))
    start = 0
    for begin, end in spans:
        if begin > start:
            break
        start = max(start, end)
    if not start:
        return text
    return _from(text, folded, found[start - 1][2])  # from where the last opening yes or no word ends


def _named_after_a_not(text: str, candidates: list[Item], vocabulary: Vocabulary, language: str | None) -> list[Item]:
    """The candidates an answer names after a negation inside it ("yes, but not the kettle", "no, not the boots"); none
    when its only no is the one it opens with ("No, only the lamp")."""
    folded, found = _tokens(text)
    spans = vocabulary.answers["no"].spans([t for t, _, _ in found], language)
    inner = [begin for begin, _ in spans if begin > 0]
    if not inner:
        return []
    return pick(_from(text, folded, found[inner[-1]][1]), candidates, vocabulary, language)  # from the last negation


def pick(text: str, candidates: list[Item], vocabulary: Vocabulary, language: str | None) -> list[Item]:
    """The candidates the answer names: by an order number only some of them are in, a product name only some of them
    have, option values that tell them apart ("the black one"), or their place in our list ("the second one")."""
    if not candidates:
        return []
    text = _after_yes_or_no(text, vocabulary, language)
    orders = decide.named_orders(text) & {c.order_id for c in candidates}
    if orders and len(orders) < len({c.order_id for c in candidates}):
        return [c for c in candidates if c.order_id in orders]
    named = decide.mentioned_items(candidates, text)
    if named and len(named) < len(candidates):
        return named
    scores = []
    for candidate in candidates:
        score = 0
        for option, value in candidate.options.items():
            if all(c.options.get(option) == value for c in candidates):
                continue  # a value every candidate has tells none apart
            if value in reading.option_values(text, option, language):
                score += 1
        scores.append(score)
    best = max(scores)
    if best > 0:
        return [c for c, s in zip(candidates, scores, strict=True) if s == best]
    return _ordinal(text, candidates, vocabulary, language)


def read(
    text: str,
    questions: list[Outcome],
    vocabulary: Vocabulary,
    language: str | None,
    *,
    user_id: str = "",
    written: set[str] | None = None,
) -> Answered:
    """What the answer settles for each question asked: a confirmation is answered by yes or no, or by naming the items
    of it they do want; a choice ("which one?") by naming one of the choices; other questions (a detail the request
    lacked) by what the answer says, which the next run reads beside the request."""
    answer = Answered(text=text, user_id=user_id, written=set(written or ()), polarity=polarity(text, vocabulary, language))
    proposed = {str(q.detail.get("order", "")) for q in questions if q.kind == "propose"} - {""}
    orders_named = decide.named_orders(text) & proposed if len(proposed) > 1 else set()
    for question in questions:
        items = list(question.items)
        if question.kind == "propose":  # a write stated whole: yes makes exactly it, no leaves it, naming some items re-plans
            if orders_named and question.detail.get("order") not in orders_named:
                continue  # a yes that names another of the orders proposed: asked again
            dropped = _named_after_a_not(text, items, vocabulary, language) if len(items) > 1 else []
            if dropped and len(dropped) < len(items):  # "yes, but not the kettle", "no, not the boots": re-planned without them, stated again
                answer.yes |= {key(i) for i in items if i not in dropped}
                answer.no |= {key(i) for i in dropped}
                continue
            if answer.polarity == "mixed":
                continue  # yes and no, and which part is which is not read: asked again
            named = pick(text, items, vocabulary, language) if len(items) > 1 else []
            if named and len(named) < len(items):
                if answer.polarity == "no" and not vocabulary.answers["only"].found(words(text), language):
                    continue  # "No, not the boots": not read apart here, asked again
                answer.yes |= {key(i) for i in named}
                answer.no |= {key(i) for i in items if i not in named}
            elif answer.polarity == "yes":
                answer.approved.add(str(question.detail.get("fingerprint", "")))
            elif answer.polarity == "no":
                answer.refused.add(str(question.detail.get("fingerprint", "")))
        elif question.kind == "confirm":
            if answer.polarity == "mixed":  # settles nothing: asked again, or a person reads it
                continue
            named = pick(text, items, vocabulary, language) if len(items) > 1 else []
            if named and answer.polarity == "no" and not vocabulary.answers["only"].found(words(text), language):
                continue  # "No, not the boots": a no that names items without "only" is not read apart here: asked again
            if named and (answer.polarity != "no" or len(named) < len(items)):
                answer.yes |= {key(i) for i in named}  # "no, only the lamp", "yes, the lamp and the kettle"
                answer.no |= {key(i) for i in items if i not in named}
            elif answer.polarity == "yes":
                answer.yes |= {key(i) for i in items}
            elif answer.polarity == "no":
                answer.no |= {key(i) for i in items}
        elif question.kind == "not_found" and question.detail.get("what") == "items":
            answer.items_asked = True
        elif question.kind == "ambiguous":
            named = pick(text, items, vocabulary, language)
            if len(named) == 1 or (named and len({i.product_id for i in named}) == len(named)):
                answer.picked |= {key(i) for i in named}
    return answer
