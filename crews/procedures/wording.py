"""Words, not patterns: the vocabulary of tasks/procedures/vocabulary.yaml (what a customer asks for, keeps, or points
at, in English, German, Spanish and French) compiled into matchers over folded words. A term is a word or a phrase; a
word ending in * is a prefix, a lone * one to three words; a word stem (a prefix) of six letters or more also matches one typo
away ("retrun", "cancle"), because customers type fast."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from crewdesk.store.lexicon import LANGUAGES, fold, tokens

# The ticket's language, set by the procedure flow for the run: the catalogue's words and the vocabulary are searched in
# it and in English by the steps that are not handed it (decide.py, variants.py).
LANGUAGE: ContextVar[str | None] = ContextVar("reading_language", default=None)
FUZZY_MIN = 6  # words shorter than this must match exactly: one letter off a short word is another word ("charge", "change")
FUZZY_KINDS = ("cancel", "return", "change")  # typos matter in the request itself; elsewhere a near word is another word


def words(text: str) -> list[str]:
    return [t for t, _, _ in tokens(fold(text))]


def _near(a: str, b: str) -> bool:
    """At most one edit apart (insert, delete, substitute, or swap two neighbours)."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]


@dataclass(frozen=True)
class _Part:
    kind: str  # exact | prefix | any
    text: str = ""
    fuzzy: bool = False

    def matches(self, word: str) -> bool:
        if self.kind == "any":
            return True
        if self.kind == "exact":  # inflections of an exact form are other words ("switched", "switches"): no typo matching
            return word == self.text or (word.endswith(("'s", "\u2019s")) and word[:-2] == self.text)  # "my gift card's empty"
        if word.startswith(self.text):
            return True
        if not self.fuzzy or len(self.text) < FUZZY_MIN or not word or word[0] != self.text[0]:
            return False  # a typo keeps the first letter: "gefunden" is no "refund", "envoi" no "renvoi"
        return any(_near(word[:n], self.text) for n in (len(self.text) - 1, len(self.text), len(self.text) + 1) if n <= len(word))


def _compile(term: str, fuzzy: bool) -> tuple[_Part, ...]:
    parts: list[_Part] = []
    for raw in term.split():
        if raw == "*":
            parts.append(_Part("any"))
            continue
        prefix = raw.endswith("*")
        pieces = [t for t, _, _ in tokens(fold(raw.rstrip("*")))]
        for n, piece in enumerate(pieces):
            parts.append(_Part("prefix" if prefix and n == len(pieces) - 1 else "exact", piece, fuzzy))
    return tuple(parts)


GAP = 3  # a lone * in a phrase stands for one to this many words ("take * back": "take the kettle back")


def _match(pattern: tuple[_Part, ...], said: list[str], n: int) -> int | None:
    """The end of a match of the pattern at word n, or None; a gap takes as few words as it can."""
    if not pattern:
        return n
    part, rest = pattern[0], pattern[1:]
    if part.kind == "any":
        for width in range(1, GAP + 1):
            if n + width <= len(said) and (end := _match(rest, said, n + width)) is not None:
                return end
        return None
    if n < len(said) and part.matches(said[n]):
        return _match(rest, said, n + 1)
    return None


class Terms:
    """One list of terms per language. A text is read with its own language's terms and English's (customers mix in
    English words; prefixes of one language are other words in another: French "gard*" and English "garden")."""

    def __init__(self, by_language: Mapping[str, Iterable[str]], *, fuzzy: bool = False) -> None:
        self.patterns = {lang: sorted({_compile(str(t), fuzzy) for t in terms if str(t).strip()}, key=len, reverse=True) for lang, terms in by_language.items()}
        self._merged: dict[str | None, list[tuple[_Part, ...]]] = {}

    def _patterns(self, language: str | None) -> list[tuple[_Part, ...]]:
        if language not in self._merged:
            langs = list(self.patterns) if not language or language not in self.patterns else list(dict.fromkeys(("en", language)))
            self._merged[language] = sorted({p for lang in langs for p in self.patterns.get(lang, [])}, key=len, reverse=True)
        return self._merged[language]

    def spans(self, said: list[str], language: str | None = None) -> list[tuple[int, int]]:
        """(start, end) of each match, longest first at each place, not overlapping."""
        patterns = self._patterns(language)
        found: list[tuple[int, int]] = []
        n = 0
        while n < len(said):
            for pattern in patterns:
                end = _match(pattern, said, n)
                if end is not None:
                    found.append((n, end))
                    n = end
                    break
            else:
                n += 1
        return found

    def found(self, said: list[str], language: str | None = None) -> bool:
        return bool(self.spans(said, language))


@dataclass(frozen=True)
class Vocabulary:
    requests: dict[str, Terms]  # cancel | return | change | keep | payment | question
    hedges: Terms
    negations: Terms
    rest: Terms
    descriptors: Terms
    boundaries: Terms
    orders: dict[str, Terms]  # pending | delivered
    every: Terms
    anaphora: Terms  # "both of those", "all of them": the items named before, not every item
    wishes: Terms
    negation_gap: Terms
    methods: Terms  # any payment method
    method_kinds: dict[str, Terms]  # gift_card | paypal | credit_card | original
    conditions: Terms
    courtesy: Terms  # "if possible", "if you can": a condition that only asks politely
    status_conditions: Terms  # "if it has not shipped yet": a condition the store's policy checks itself
    with_: Terms
    except_: Terms
    dearer: Terms
    cheaper: Terms
    instead: Terms
    money_to: Terms  # "put it on", "refund to", "auf", "sur": where money is sent
    paid_before: Terms  # "I paid with", "bezahlt mit": how an order was paid, not where money goes
    address: dict[str, Terms]  # words | account | ship | set
    same: Terms
    free: Terms  # "colour doesn't matter": an option left to us
    related: Terms  # "everything related to gaming": a blanket word narrowed by what follows
    reasons: dict[str, Terms]  # mistake | no_longer
    price: dict[str, Terms]  # money | more | less | nothing | difference | comparative | otherwise | only
    answers: dict[str, Terms]  # yes | no | first | second | third | fourth: a customer's answer to our question


KINDS = ("cancel", "return", "change", "keep", "payment", "question")
SECTIONS = (
    "requests",
    "hedges",
    "negations",
    "rest",
    "descriptors",
    "boundaries",
    "orders",
    "every",
    "anaphora",
    "wishes",
    "negation_gap",
    "methods",
    "conditions",
    "courtesy",
    "status_conditions",
    "with",
    "except",
    "dearer",
    "cheaper",
    "instead",
    "money_to",
    "paid_before",
    "address",
    "same",
    "free",
    "related",
    "reasons",
    "price",
    "answers",
)


def _by_language(entry: Any) -> dict[str, list[str]]:
    terms = {lang: list((entry or {}).get(lang, [])) for lang in LANGUAGES}
    unquoted = [t for found in terms.values() for t in found if isinstance(t, bool)]
    if unquoted:  # YAML reads a bare yes, no, on or off as a boolean: the word would be lost as "True" or "False"
        raise ValueError(f"vocabulary.yaml: a term was read as the boolean {unquoted[0]}; quote the word")
    return {lang: [str(term) for term in found] for lang, found in terms.items()}


def parse(data: dict[str, Any]) -> Vocabulary:
    """The vocabulary from its YAML; a missing section or kind is a ValueError naming it (spec.py reports it at start-up)."""
    missing = [s for s in SECTIONS if s not in data] + [f"requests.{k}" for k in KINDS if k not in (data.get("requests") or {})]
    if missing:
        raise ValueError(f"vocabulary.yaml lacks {', '.join(missing)}")
    return Vocabulary(
        requests={kind: Terms(_by_language(data["requests"][kind]), fuzzy=kind in FUZZY_KINDS) for kind in KINDS},
        hedges=Terms(_by_language(data["hedges"])),
        negations=Terms(_by_language(data["negations"])),
        rest=Terms(_by_language(data["rest"])),
        descriptors=Terms(_by_language(data["descriptors"])),
        boundaries=Terms(_by_language(data["boundaries"])),
        orders={status: Terms(_by_language(entry)) for status, entry in (data["orders"] or {}).items()},
        every=Terms(_by_language(data["every"])),
        anaphora=Terms(_by_language(data["anaphora"])),
        wishes=Terms(_by_language(data["wishes"])),
        negation_gap=Terms(_by_language(data["negation_gap"])),
        methods=Terms({lang: [t for entry in (data["methods"] or {}).values() for t in _by_language(entry)[lang]] for lang in LANGUAGES}),
        method_kinds={kind: Terms(_by_language(entry)) for kind, entry in (data["methods"] or {}).items()},
        conditions=Terms(_by_language(data["conditions"])),
        courtesy=Terms(_by_language(data["courtesy"])),
        status_conditions=Terms(_by_language(data["status_conditions"])),
        with_=Terms(_by_language(data["with"])),
        except_=Terms(_by_language(data["except"])),
        dearer=Terms(_by_language(data["dearer"])),
        cheaper=Terms(_by_language(data["cheaper"])),
        instead=Terms(_by_language(data["instead"])),
        money_to=Terms(_by_language(data["money_to"])),
        paid_before=Terms(_by_language(data["paid_before"])),
        address={part: Terms(_by_language(entry)) for part, entry in (data["address"] or {}).items()},
        same=Terms(_by_language(data["same"])),
        free=Terms(_by_language(data["free"])),
        related=Terms(_by_language(data["related"])),
        reasons={reason: Terms(_by_language(entry), fuzzy=True) for reason, entry in (data["reasons"] or {}).items()},
        price={part: Terms(_by_language(entry)) for part, entry in (data["price"] or {}).items()},
        answers={part: Terms(_by_language(entry)) for part, entry in (data["answers"] or {}).items()},
    )


@functools.cache
def load(directory: Path) -> Vocabulary:
    return parse(yaml.safe_load((directory / "vocabulary.yaml").read_text(encoding="utf-8")) or {})
