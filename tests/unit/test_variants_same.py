"""Which options the customer keeps "the same" (crews/procedures/variants.py, kept_same), in four languages. The
sentences are written for this test; none is from an evaluation set."""

from __future__ import annotations

from pathlib import Path

import pytest

from crews.procedures import variants, wording
from crews.procedures.state import Item

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
