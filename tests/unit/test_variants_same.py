"""Which options the customer keeps "the same" (crews/procedures/variants.py, kept_same), in four languages. The
sentences are written for this test; none is from an evaluation set."""

from __future__ import annotations

from pathlib import Path

import pytest

from crews.procedures import variants, wording
from crews.procedures.state import Item, Order

VOCABULARY = wording.load(Path(__file__).resolve().parents[2] / "tasks" / "procedures")
SHOE = Item(order_id="#W1", item_id="1", product_id="p", name="Running Shoes", options={"size": "9", "color": "black"}, price=90.0)
BOTTLE = Item(order_id="#W1", item_id="2", product_id="q", name="Water Bottle", options={"capacity": "750ml", "color": "blue"}, price=20.0)


@pytest.mark.parametrize(
    ("text", "item", "kept"),
    [
        ("Same color please, just a bigger one.", SHOE, {"color"}),
        ("Everything else should stay the same, except for the color.", SHOE, set()),
        ("Bitte alles gleich lassen, außer der Farbe.", SHOE, set()),
        ("Could I get the same shoes one size bigger?", SHOE, set()),  # "same" is the product's
        ("Make sure the new shoes are still the same size.", BOTTLE, set()),  # said of another product
        ("Make sure the new shoes are still the same size.", SHOE, {"size"}),
    ],
)
def test_the_options_kept_the_same(text, item, kept):
    found = variants.kept_same(text, VOCABULARY, item)
    assert {k for k in found if k in item.options} == kept


@pytest.mark.parametrize(
    ("text", "language", "free"),
    [
        ("A size up please, the colour doesn't matter.", "en", {"color"}),
        ("Any color is fine, I just need it bigger.", "en", {"color"}),
        ("Bitte eine Nummer größer, die Farbe ist mir egal.", "de", {"color"}),
        ("Una talla más, el color me da igual.", "es", {"color"}),
        ("Une taille au-dessus, peu importe la couleur.", "fr", {"color"}),
        ("A size up please, and the same colour.", "en", set()),
    ],
)
def test_the_options_left_to_us(text, language, free):
    token = wording.LANGUAGE.set(language)
    try:
        assert {k for k in variants.left_free(text, VOCABULARY) if k in SHOE.options} == free
    finally:
        wording.LANGUAGE.reset(token)


MAT = Item(order_id="#W1", item_id="m1", product_id="mat", name="Yoga Mat", options={"thickness": "6mm", "material": "PVC", "color": "green"}, price=30.0)
MATS = {
    "variants": {
        "m1": {"item_id": "m1", "options": MAT.options, "price": 30.0, "available": True},
        "m2": {"item_id": "m2", "options": {"thickness": "5mm", "material": "TPE", "color": "pink"}, "price": 32.0, "available": True},
        "m3": {"item_id": "m3", "options": {"thickness": "6mm", "material": "PVC", "color": "blue"}, "price": 30.0, "available": True},
    }
}


def _choose(text: str):
    return variants.choose(llm=None, text=text, item=MAT, product=MATS, vocabulary=VOCABULARY)  # type: ignore[arg-type]


def test_a_variant_that_changes_more_than_asked_is_put_to_the_customer_not_chosen():
    # the only pink mat is thinner and of another material: the customer asked for the same mat in pink
    nearest = _choose("I love my green yoga mat. Could I get exactly the same mat, just in pink?")
    assert isinstance(nearest, variants.Nearest) and nearest.item.item_id == "m2" and set(nearest.changes) == {"thickness", "material"}
    # they leave thickness and material to us: it is what they asked for
    assert _choose("A pink yoga mat please, thickness and material don't matter.").item_id == "m2"
    # only the colour changes: chosen outright
    assert _choose("Could I have my yoga mat in blue instead?").item_id == "m3"


def test_an_option_never_spoken_of_changes_with_the_only_variant_that_has_what_was_asked():
    # the customer named the colour only; the one pink mat is thinner and of another material
    assert _choose("Could you swap my yoga mat for a pink one?").item_id == "m2"


def _lamp(item_id: str, order_id: str, **options: str) -> Item:
    return Item(order_id=order_id, item_id=item_id, product_id="lamp", name="Desk Lamp", options=options, price=10.0)


MINE = _lamp("1", "#W1", color="white", brightness="low", power="USB")
OTHER = _lamp("2", "#W2", color="black", brightness="high", power="battery")


def _orders(*items: Item, delivered: str = "#W2") -> list[Order]:
    return [Order(order_id=i.order_id, status="delivered" if i.order_id == delivered else "pending", paid_with="paypal_1", items=[i]) for i in items]


@pytest.mark.parametrize(
    ("text", "language", "added"),
    [
        ("Change the lamp in my pending order to the same brightness as the one I already received.", "en", "(brightness high)"),
        ("Change the lamp to the same model as the one I got last month.", "en", "(color black, brightness high, power battery)"),
        ("Bitte die Lampe auf die gleiche Helligkeit wie die, die ich schon habe.", "de", "(brightness high)"),
        ("Cambien la lámpara al mismo color que la que ya tengo.", "es", "(color black)"),
        ("Changez la lampe pour la même couleur que celle que j'ai déjà.", "fr", "(color black)"),
    ],
)
def test_the_same_option_as_the_customers_other_item_takes_that_items_value(text, language, added):
    """ "To the same type as the one I already received": the value is on the customer's other item of the product, not in
    their words; read without it, no variant was found and the customer was asked what the store already knew."""
    token = wording.LANGUAGE.set(language)
    try:
        assert variants.as_other(text, MINE, _orders(MINE, OTHER)) == f"{text} {added}"
    finally:
        wording.LANGUAGE.reset(token)


def test_a_same_as_that_names_no_other_item_of_theirs_adds_nothing():
    text = "Change the lamp to the same color as the one in the picture."
    assert variants.as_other(text, MINE, _orders(MINE, OTHER)) == text
    assert variants.as_other("Same brightness as the one I have, please.", MINE, _orders(MINE)) == "Same brightness as the one I have, please."
    differing = _orders(MINE, OTHER, _lamp("3", "#W3", color="black", brightness="low", power="AC"))
    assert variants.as_other("the same brightness as the one I have", MINE, differing) == "the same brightness as the one I have"  # asked


def test_the_item_already_received_is_what_the_one_on_its_way_is_compared_with_not_changed_itself():
    """ "Change the lamp I just ordered to the same brightness as the one I already received": read for the received
    lamp too, it was exchanged into the ordered one's variant, and the ticket called resolved."""
    text = "Change the lamp I just ordered to the same brightness as the one I already received."
    assert variants.as_other(text, OTHER, _orders(MINE, OTHER)) == text  # OTHER is the delivered one
    assert variants.as_other(text, MINE, _orders(MINE, OTHER)) == f"{text} (brightness high)"
