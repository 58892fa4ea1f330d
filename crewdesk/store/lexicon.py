"""The catalogue in customers' words: which products, option names and option values a text names, in English, German,
Spanish or French (the demo store's lexicon is crewdesk/store/tau2/lexicon.yaml, see LEXICON.md there). Text and terms
are folded the same way (case, accents, ß), matched on word boundaries, longest term first, so "the hoover", "mi
aspiradora" and "den Saugroboter" all name the Vacuum Cleaner, and "1,5 Liter" names the value 1.5L."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_LEXICON = Path(__file__).resolve().parent / "tau2" / "lexicon.yaml"
LANGUAGES = ("en", "de", "es", "fr")
# A token: a run of letters/digits, keeping the decimal mark and per cent sign inside numbers ("1,5", "80%", "30-50").
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*%?|[^\W_]+", re.U)


def fold(text: str) -> str:
    """Lower case, without accents; ß as ss. Both the lexicon's terms and the customer's text go through it."""
    text = text.replace("ß", "ss").replace("ẞ", "ss")
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


_PARTS = re.compile(r"[,;:.!?()\u2013\u2014]")
_CONTRACTIONS = frozenset({"s", "t", "d", "ll", "re", "m", "ve"})


def tokens(text: str) -> list[tuple[str, int, int]]:
    """(token, start, end) of the text (folded by the caller). An English contraction stays with its word ("it's",
    "don't"): its "s" is no size S; an elided French article does not ("l'étagère": "l", "etagere")."""
    out: list[tuple[str, int, int]] = []
    for match in _TOKEN.finditer(text):
        word, start, end = match.group(0), match.start(), match.end()
        if out and word in _CONTRACTIONS and start > 0 and text[start - 1] in "'\u2019" and out[-1][2] == start - 1:
            previous = out.pop()
            out.append((f"{previous[0]}'{word}", previous[1], end))
            continue
        out.append((word, start, end))
    return out


@dataclass(frozen=True)
class Mention:
    """A term found in a text: what it names (one or more catalogue keys), where, and how many words it took."""

    names: frozenset[str]
    term: str
    start: int  # token index
    end: int  # token index, exclusive

    @property
    def shared(self) -> bool:
        return len(self.names) > 1


@dataclass
class _Index:
    """Folded term (as a token tuple) -> the keys it names; searched longest first from each token."""

    by_first: dict[str, list[tuple[tuple[str, ...], frozenset[str]]]] = field(default_factory=dict)

    def add(self, term: str, key: str) -> None:
        words = tuple(t for t, _, _ in tokens(fold(term)))
        if not words:
            return
        entries = self.by_first.setdefault(words[0], [])
        for n, (existing, keys) in enumerate(entries):
            if existing == words:
                entries[n] = (existing, keys | {key})
                return
        entries.append((words, frozenset({key})))
        entries.sort(key=lambda entry: -len(entry[0]))

    def find(self, words: list[str]) -> list[Mention]:
        found, n = [], 0
        while n < len(words):
            for term, keys in self.by_first.get(words[n], ()):
                if tuple(words[n : n + len(term)]) == term:
                    found.append(Mention(names=keys, term=" ".join(term), start=n, end=n + len(term)))
                    n += len(term)
                    break
            else:
                n += 1
        return found


class Lexicon:
    """One catalogue's words. `languages` narrows a search to the ticket's language and English (a few words are false
    friends across languages: German "Handy" is a phone)."""

    def __init__(self, data: dict) -> None:
        self._products = {lang: _Index() for lang in LANGUAGES}
        self._option_names = {lang: _Index() for lang in LANGUAGES}
        self._values: dict[str, dict[str, _Index]] = {}
        for product, words in (data.get("products") or {}).items():
            for lang in LANGUAGES:
                for term in [product, *(words or {}).get(lang, [])]:
                    self._products[lang].add(str(term), product)
        for option, spec in (data.get("options") or {}).items():
            for lang in LANGUAGES:
                for term in [option, *((spec or {}).get("names") or {}).get(lang, [])]:
                    self._option_names[lang].add(str(term), option)
            per_lang = self._values.setdefault(option, {lang: _Index() for lang in LANGUAGES})
            for value, words in ((spec or {}).get("values") or {}).items():
                for lang in LANGUAGES:
                    for term in [str(value), *(words or {}).get(lang, [])]:
                        per_lang[lang].add(str(term), str(value))

    @staticmethod
    def _languages(language: str | None) -> tuple[str, ...]:
        return LANGUAGES if not language or language not in LANGUAGES else tuple(dict.fromkeys(("en", language)))

    @staticmethod
    def _words(text: str) -> list[str]:
        return [t for t, _, _ in tokens(fold(text))]

    def _search(self, indexes: Iterable[_Index], text: str) -> list[Mention]:
        words = self._words(text)
        found: dict[tuple[int, int], Mention] = {}
        for index in indexes:
            for mention in index.find(words):
                key = (mention.start, mention.end)
                found[key] = Mention(mention.names | found[key].names, mention.term, mention.start, mention.end) if key in found else mention
        return _longest(found.values())

    def products_in(self, text: str, *, language: str | None = None) -> list[Mention]:
        """The catalogue products the text names, each mention with the products its words can mean."""
        return self._search((self._products[lang] for lang in self._languages(language)), text)

    def option_names_in(self, text: str, *, language: str | None = None) -> list[Mention]:
        return self._search((self._option_names[lang] for lang in self._languages(language)), text)

    def values_in(self, text: str, option: str, *, language: str | None = None) -> list[Mention]:
        """The values of `option` the text names (bare values repeat across products: ask within the product found)."""
        indexes = self._values.get(option)
        if indexes is None:
            return []
        return self._search((indexes[lang] for lang in self._languages(language)), text)

    def values_named(self, text: str, option: str, *, language: str | None = None) -> set[str]:
        """The values of `option` the text names, less those that sit next to the name of another option: in
        "luminosité moyenne" the "medium" is a brightness, not a makeup kit's skin tone."""
        names = self.option_names_in(text, language=language)
        folded = fold(text)
        spans = tokens(folded)
        words = [t for t, _, _ in spans]

        def apart(first_end: int, second_start: int) -> bool:  # "Hauptsache blau, die Belüftung ist mir egal": a comma parts them
            if not 0 < first_end <= second_start < len(spans):
                return False
            return bool(_PARTS.search(folded[spans[first_end - 1][2] : spans[second_start][1]]))

        kept: set[str] = set()
        for value in self.values_in(text, option, language=language):
            beside = [
                n
                for n in names
                # "34 pouces": the unit is the value's own word, not the name of the screen size beside it
                if not value.start <= n.start < n.end <= value.end
                and ((-2 <= value.start - n.end <= 0 and not apart(n.end, value.start)) or (0 <= n.start - value.end <= 1 and not apart(value.end, n.start)))
            ]
            if beside and not any(option in n.names for n in beside):
                continue
            if value.term.isdigit() and value.end < len(words) and words[value.end] in _OTHER_UNITS and words[value.end] not in value.term:
                continue  # "8 GB" is a storage, not the 8-inch screen a bare "8" can mean
            kept |= value.names
        return kept

    def any_value_in(self, text: str, *, language: str | None = None) -> bool:
        """Whether the text names some option value of the catalogue (of any option)."""
        return any(self.values_in(text, option, language=language) for option in self._values)

    def terms_of(self, product: str, *, language: str | None = None) -> list[str]:
        """The folded terms that name `product` (for embedding them, or saying them back)."""
        out: list[str] = []
        for lang in self._languages(language):
            for entries in self._products[lang].by_first.values():
                out.extend(" ".join(term) for term, keys in entries if product in keys)
        return list(dict.fromkeys(out))


# A unit right after a bare number says what the number measures ("8 GB", "20 Stunden"): not an option of another unit.
_OTHER_UNITS = frozenset(
    [
        "gb",
        "tb",
        "mb",
        "ml",
        "l",
        "liter",
        "liters",
        "litre",
        "litres",
        "mah",
        "ft",
        "feet",
        "foot",
        "inch",
        "inches",
        "zoll",
        "pulgadas",
        "pouces",
        "mp",
        "w",
        "watt",
        "bar",
        "lbs",
        "lb",
        "kg",
        "mm",
        "cm",
        "hours",
        "hour",
        "stunden",
        "horas",
        "heures",
        "pieces",
        "teile",
        "piezas",
        "cups",
        "tassen",
        "tazas",
        "tasses",
    ]
)


def _longest(mentions: Iterable[Mention]) -> list[Mention]:
    """Overlapping mentions from several languages' lists: the longer wins ("robot vacuum" over "vacuum")."""
    kept: list[Mention] = []
    for mention in sorted(mentions, key=lambda m: (-(m.end - m.start), m.start)):
        if all(mention.end <= other.start or mention.start >= other.end for other in kept):
            kept.append(mention)
    return sorted(kept, key=lambda m: m.start)


@functools.cache
def load(path: Path = DEFAULT_LEXICON) -> Lexicon:
    """The lexicon at `path` (read once per process); an absent file is an empty lexicon, for a catalogue without one."""
    if not path.exists():
        return Lexicon({})
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it: about 5x faster
    return Lexicon(yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {})
