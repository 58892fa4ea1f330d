"""Which variant an item becomes (crews/procedures/variants.py, choose), on the demo catalogue, for ways of saying it
that chose a wrong variant before: a value ruled out ("any colour except purple"), the rest kept in German ("Rest
gleich") with a number and its unit apart ("32 GB"), and a value said of another product in a sentence of its own. The
sentences are written for this test; none is from an evaluation set. No model is asked: each is settled in code."""

from __future__ import annotations

from pathlib import Path

import pytest

from crews.procedures import variants, wording
from crews.procedures.state import Item

VOCABULARY = wording.load(Path(__file__).resolve().parents[2] / "tasks" / "procedures")


class NoModel:
    def decide(self, *_args, **_kwargs):
        raise AssertionError("settled in code: no model call")


def item(store_data, order_id: str, product_name: str, options: dict[str, str]) -> tuple[Item, dict]:
    product = next(p for p in store_data["products"].values() if p["name"] == product_name)
    item_id, variant = next((k, v) for k, v in product["variants"].items() if v["options"] == options)
    return Item(order_id=order_id, item_id=item_id, product_id=product["product_id"], name=product_name, options=options, price=variant["price"]), product


def chosen(store_data, language, text, product_name, options, ticket=""):
    token = wording.LANGUAGE.set(language)
    try:
        mine, product = item(store_data, "#W0", product_name, options)
        return variants.choose(llm=NoModel(), text=text, item=mine, product=product, vocabulary=VOCABULARY, ticket=ticket or text)
    finally:
        wording.LANGUAGE.reset(token)


SHIRT = {"color": "black", "size": "XXL", "material": "cotton", "style": "crew neck"}


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "The shirt is too big. Could I swap it for an XL, cotton crew neck, any colour except purple?"),
        ("en", "Swap the tee for an XL please (still cotton, crew neck), any color but not purple."),
        ("es", "La camiseta me queda grande: ¿me la cambian por una XL de algodón y cuello redondo? Cualquier color salvo el morado."),
    ],
)
def test_a_value_the_customer_rules_out_is_never_the_one_chosen(store_data, language, text):
    new = chosen(store_data, language, text, "T-Shirt", SHIRT)
    assert isinstance(new, Item) and new.options["size"] == "XL" and new.options["color"] != "purple", new


def test_rest_gleich_keeps_the_other_options_and_32_gb_names_the_storage(store_data):
    mine = {"screen size": "7-inch", "connectivity": "Wi-Fi + Cellular", "storage": "8GB"}
    new = chosen(store_data, "de", "Für den E-Reader hätte ich gern 32 GB statt 8 GB, sonst alles gleich.", "E-Reader", mine)
    assert isinstance(new, Item) and new.options == {**mine, "storage": "32GB"}


def test_a_colour_said_of_another_product_in_its_own_sentence_does_not_choose_this_ones(store_data):
    text = "The wooden shelf in 5 ft instead of 4 please.\nThe white kettle stays as it is."
    new = chosen(store_data, "en", text, "Bookshelf", {"material": "wood", "color": "black", "height": "4 ft"})
    assert isinstance(new, Item) and new.options == {"material": "wood", "color": "black", "height": "5 ft"}


def test_the_most_expensive_of_every_item_holds_for_an_item_not_named_in_that_sentence(store_data):
    """ "Upgrade all my items to the most expensive variants (make sure the new shoe is still the same size)": the
    sentence names the shoe, but its superlative is every item's; only option values are read per product."""
    text = "I want all my items upgraded to the priciest versions (but the new shoes must be the same size). Pay with my gift card."
    mine = {"material": "wood", "color": "black", "height": "4 ft"}
    new = chosen(store_data, "en", text, "Bookshelf", mine)
    product = next(p for p in store_data["products"].values() if p["name"] == "Bookshelf")
    assert isinstance(new, Item) and new.price == max(v["price"] for v in product["variants"].values() if v["available"])


HELMET = {"size": "S", "color": "blue", "ventilation": "low"}


@pytest.mark.parametrize(
    ("language", "text"),
    [
        # the colour they have is what matters; the ventilation is left to us, so changing it costs nothing
        ("de", "Kann ich den Helm gegen Größe M tauschen? Hauptsache blau, die Belüftung ist mir egal."),
        ("en", "Can I swap the helmet for a size M? As long as it's blue, ventilation doesn't matter to me."),
        ("fr", "Je voudrais le casque en taille M. Surtout bleu, la ventilation m'est égale."),
    ],
)
def test_an_option_left_to_us_is_free_to_change_and_the_value_kept_is_kept(store_data, language, text):
    new = chosen(store_data, language, text, "Cycling Helmet", HELMET)
    assert isinstance(new, Item) and new.options == {"size": "M", "color": "blue", "ventilation": "high"}, new


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("fr", "Je voudrais l'échanger contre la version 34 pouces, même bambou, même design graphique."),
        ("es", "Quiero cambiarlo por el de 34 pulgadas, mismo bambú y mismo diseño gráfico."),
        ("de", "Ich hätte es gern in 34 Zoll, gleiches Bambus, gleiches Design."),
    ],
)
def test_a_length_with_its_unit_is_a_length_not_the_name_of_a_screen_size(store_data, language, text):
    mine = {"deck material": "bamboo", "length": "31 inch", "design": "graphic"}
    new = chosen(store_data, language, text, "Skateboard", mine)
    assert isinstance(new, Item) and new.options == {**mine, "length": "34 inch"}, new
