"""The catalogue lexicon (crewdesk/store/tau2/lexicon.yaml) covers the demo store's catalogue exactly, in four languages.

Pure data checks, no services and nothing mocked: every product, option name and option value of db.json has an entry
and nothing else does; every entry is a non-empty list of distinct strings in each of en/de/es/fr; the values of one
option are told apart within every product that has them; `shared` lists exactly the terms that name more than one
product; and the examples the lexicon was written for ground where they should.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
import yaml

from crewdesk.store.service import DEFAULT_DB_JSON, read_store

LEXICON = DEFAULT_DB_JSON.with_name("lexicon.yaml")
LANGUAGES = {"en", "de", "es", "fr"}
# Words that name nothing in particular in a store; the lexicon keeps them out (none is a whole catalogue name).
GENERIC = {"set", "sets", "machine", "thing", "item", "items", "product", "products", "order", "kit", "unit", "device"}


@cache
def lexicon() -> dict[str, Any]:
    return yaml.safe_load(LEXICON.read_text(encoding="utf-8"))


@cache
def catalogue() -> dict[str, dict[str, set[str]]]:
    """Product name -> option name -> the values its variants have."""
    products: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for product in read_store(DEFAULT_DB_JSON)["products"].values():
        for variant in product["variants"].values():
            for option, value in variant["options"].items():
                products[product["name"]][option].add(value)
    return products


def catalogue_values() -> dict[str, set[str]]:
    """Option name -> every value it takes in the catalogue."""
    values: dict[str, set[str]] = defaultdict(set)
    for options in catalogue().values():
        for option, option_values in options.items():
            values[option] |= option_values
    return values


def entries() -> Iterator[tuple[str, Any]]:
    """Every per-language entry of the lexicon, with where it sits."""
    for name, entry in lexicon()["products"].items():
        yield f"products/{name}", entry
    for option, spec in lexicon()["options"].items():
        yield f"options/{option}/names", spec["names"]
        for value, entry in spec["values"].items():
            yield f"options/{option}/values/{value}", entry


def sort_key(text: str) -> tuple[list[str | float], str]:
    """The file's order: accents and case ignored, numbers by value (7 before 10, 1L before 1.5L)."""
    folded = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)).casefold()
    parts = re.split(r"(\d+(?:\.\d+)?)", folded)
    return [float(part) if i % 2 else part for i, part in enumerate(parts)], text


def where_listed(term: str) -> set[tuple[str, ...]]:
    """The products and (option, value) pairs whose lists hold this term, case-insensitively."""
    found: set[tuple[str, ...]] = set()
    for name, entry in lexicon()["products"].items():
        if any(term.casefold() == t.casefold() for terms in entry.values() for t in terms):
            found.add((name,))
    for option, spec in lexicon()["options"].items():
        for value, entry in spec["values"].items():
            if any(term.casefold() == t.casefold() for terms in entry.values() for t in terms):
                found.add((option, value))
    return found


def test_the_sections_are_products_options_and_shared() -> None:
    assert set(lexicon()) == {"products", "options", "shared"}


def test_every_catalogue_product_has_an_entry_and_nothing_else_does() -> None:
    assert len(catalogue()) == 50
    assert set(lexicon()["products"]) == set(catalogue())


def test_every_option_name_and_value_has_an_entry_and_nothing_else_does() -> None:
    options = lexicon()["options"]
    assert set(options) == set(catalogue_values())
    for option, values in catalogue_values().items():
        assert set(options[option]) == {"names", "values"}, option
        assert set(options[option]["values"]) == values, option


def test_every_entry_is_a_nonempty_list_of_distinct_strings_in_each_language() -> None:
    problems = []
    for where, entry in entries():
        if not isinstance(entry, dict) or set(entry) != LANGUAGES:
            problems.append(f"{where}: languages {sorted(entry) if isinstance(entry, dict) else entry!r}")
            continue
        for language, terms in entry.items():
            if not isinstance(terms, list) or not terms:
                problems.append(f"{where}/{language}: {terms!r} is not a non-empty list")
            elif not all(isinstance(t, str) and t and t == t.strip() for t in terms):
                problems.append(f"{where}/{language}: {terms!r} holds a non-string or blank term")
            elif len({t.casefold() for t in terms}) != len(terms):
                problems.append(f"{where}/{language}: a term is listed twice")
    assert not problems, "\n".join(problems)


def test_values_with_a_number_keep_it_in_every_language() -> None:
    """'1.5L' must read 1,5 or 1.5 in every language, not only in English."""
    problems = []
    for option, spec in lexicon()["options"].items():
        for value, entry in spec["values"].items():
            number = re.search(r"\d+(?:\.\d+)?", value)
            if number is None:
                continue
            forms = {number.group(), number.group().replace(".", ",")}
            problems += [f"{option}={value}/{lang}" for lang, terms in entry.items() if not any(f in t for f in forms for t in terms)]
    assert not problems, problems


def test_the_values_of_one_option_are_told_apart_within_each_product() -> None:
    """A term may name 'L' (T-Shirt) and 'large' (Backpack), never two values one product offers for one option."""
    problems = []
    for product, options in catalogue().items():
        for option, values in options.items():
            owner: dict[str, str] = {}
            for value in sorted(values):
                for terms in lexicon()["options"][option]["values"][value].values():
                    for term in terms:
                        other = owner.setdefault(term.casefold(), value)
                        if other != value:
                            problems.append(f"{product} / {option}: {term!r} names both {other!r} and {value!r}")
    assert not problems, "\n".join(problems)


def test_shared_lists_exactly_the_terms_that_name_more_than_one_product() -> None:
    products_of: dict[str, set[str]] = defaultdict(set)
    for name, entry in lexicon()["products"].items():
        for terms in entry.values():
            for term in terms:
                products_of[term.casefold()].add(name)
    expected = {term: sorted(names) for term, names in products_of.items() if len(names) > 1}
    assert lexicon()["shared"] == expected
    # the ambiguities the lexicon must own up to
    assert expected["kettle"] == ["Electric Kettle", "Tea Kettle"]
    assert expected["camera"] == ["Action Camera", "Digital Camera", "Indoor Security Camera"]
    assert expected["watch"] == ["Smart Watch", "Wristwatch"]
    assert expected["shoes"] == ["Running Shoes", "Sneakers"]


def test_generic_words_are_not_terms() -> None:
    found = [
        f"{where}/{lang}: {term}"
        for where, entry in entries()
        if "/names" not in where
        for lang, terms in entry.items()
        for term in terms
        if term.casefold() in GENERIC
    ]
    assert not found, found


def test_keys_are_sorted() -> None:
    assert list(lexicon()["products"]) == sorted(lexicon()["products"], key=sort_key)
    assert list(lexicon()["options"]) == sorted(lexicon()["options"], key=sort_key)
    for option, spec in lexicon()["options"].items():
        assert list(spec["values"]) == sorted(spec["values"], key=sort_key), option
    assert list(lexicon()["shared"]) == sorted(lexicon()["shared"], key=sort_key)


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("aspiradora", {("Vacuum Cleaner",)}),
        ("hoover", {("Vacuum Cleaner",)}),
        ("tee", {("T-Shirt",)}),
        ("bouilloire", {("Electric Kettle",), ("Tea Kettle",)}),
        ("camara", {("Action Camera",), ("Digital Camera",), ("Indoor Security Camera",)}),
        ("inox", {("color", "stainless steel"), ("material", "stainless steel")}),
        ("Größe 9", {("size", "9")}),
        ("Groesse 9", {("size", "9")}),
        ("luminosité moyenne", {("brightness", "medium")}),
        ("without backlight", {("backlight", "none")}),
        ("1,5 Liter", {("capacity", "1.5L"), ("capacity", "1.5 liters")}),
        ("1.5 litres", {("capacity", "1.5L"), ("capacity", "1.5 liters")}),
        ("1,5 litros", {("capacity", "1.5L"), ("capacity", "1.5 liters")}),
        ("5 feet", {("height", "5 ft")}),
        ("5 Fuß", {("height", "5 ft")}),
        ("5 pies", {("height", "5 ft")}),
        ("5 pieds", {("height", "5 ft")}),
        ("30 to 50 pounds", {("weight range", "30-50 lbs")}),
        ("8 pulgadas", {("screen size", "8-inch")}),
        ("8 pouces", {("screen size", "8-inch")}),
        ("256 Go", {("storage", "256GB"), ("storage", "256GB SSD")}),  # Smartphone, Laptop
        ("schwarze", {("color", "black"), ("dial color", "black"), ("frame color", "black"), ("lens color", "black")}),
        ("negras", {("color", "black"), ("dial color", "black"), ("frame color", "black"), ("lens color", "black")}),
    ],
)
def test_grounds_what_customers_write(term: str, expected: set[tuple[str, ...]]) -> None:
    assert where_listed(term) == expected


def test_waterproof_means_yes_and_not_waterproof_means_no() -> None:
    assert ("waterproof", "yes") in where_listed("waterproof")
    assert ("waterproof", "no") in where_listed("not waterproof")
    assert ("waterproof", "no") not in where_listed("waterproof")
