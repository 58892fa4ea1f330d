"""Loose product names met by meaning (crews/procedures/nearest.py), with the real all-MiniLM-L6-v2 (offline, the
router's embedder). The names and the customer are made up for these tests; none is from an evaluation set."""

from __future__ import annotations

import pytest

from crews.procedures import nearest
from crews.procedures.state import Item


def item(name: str, order: str = "#W1000001") -> Item:
    return Item(order_id=order, item_id=f"id-{name}", product_id=f"p-{name}", name=name, options={}, price=10.0)


ITEMS = [item("Vacuum Cleaner"), item("Running Shoes"), item("Garden Hose", "#W1000002"), item("Tea Kettle", "#W1000002")]


@pytest.mark.parametrize(
    ("said", "product"),
    [
        ("the hoover keeps getting stuck under the sofa, I want to send it back", "Vacuum Cleaner"),
        ("could I swap my trainers for the black ones", "Running Shoes"),
        ("please take the robot vacuum back", "Vacuum Cleaner"),
    ],
)
def test_a_loose_name_meets_the_customers_own_product(said, product):
    assert {i.name for i in nearest.nearest(said, ITEMS)} == {product}


def test_words_that_name_nothing_the_customer_has_find_nothing():
    assert nearest.nearest("I want to return the thing I bought last week", ITEMS) == []
    assert nearest.nearest("please cancel it", ITEMS) == []


def test_two_products_equally_near_find_nothing():
    """A margin over the next product, not the nearest at any price: two kettles are asked about, not guessed."""
    kettles = [item("Tea Kettle"), item("Electric Kettle")]
    assert nearest.nearest("my kettle is too small, can I exchange it", kettles) == []


def test_every_item_of_the_product_is_found_across_orders():
    shoes = [item("Running Shoes"), item("Running Shoes", "#W1000003"), item("Tea Kettle")]
    assert {i.order_id for i in nearest.nearest("return my trainers", shoes)} == {"#W1000001", "#W1000003"}


def test_phrases_skip_runs_of_plain_words():
    said = nearest.phrases("please could you take the hoover back")
    assert "hoover" in said and "the hoover" in said
    assert "please could you" not in said and "the" not in said


def test_other_languages_are_left_to_the_lexicon():
    """The vectors are English: a Spanish or German clause is not met by meaning (it would be noise)."""
    assert nearest.nearest("la aspiradora robot se atasca, quiero devolverla", ITEMS, language="es") == []
    assert nearest.nearest("the hoover gets stuck, I want to send it back", ITEMS, language="de") == []
