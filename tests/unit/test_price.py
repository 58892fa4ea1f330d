"""Conditions on a price (crews/procedures/price.py), read from the customer's words in four languages and checked in
code against the difference a change makes. The sentences are written for this test; none is from an evaluation set."""

from __future__ import annotations

from pathlib import Path

import pytest

from crews.procedures import price, wording

VOCABULARY = wording.load(Path(__file__).resolve().parents[2] / "tasks" / "procedures")


@pytest.mark.parametrize(
    ("text", "language", "threshold", "more", "then"),
    [
        ("Please swap the kettle for the steel one. If the steel one costs more than $25 extra, just take the kettle back.", "en", 25.0, True, "return"),
        ("Bitte tauschen Sie die Lampe gegen die weiße. Falls die mehr als 30 Dollar teurer ist, lassen Sie es bitte so.", "de", 30.0, True, "nothing"),
        ("Cambien la mochila por la negra. Si la negra cuesta menos de 10 dólares, mejor devuélvanla.", "es", 10.0, False, "return"),
        ("Échangez la montre contre la bleue. Si elle coûte plus cher que la mienne, laissez tomber.", "fr", 0.0, True, "nothing"),
    ],
)
def test_a_price_condition_is_read_with_its_threshold_direction_and_alternative(text, language, threshold, more, then):
    (condition,) = price.read(text, VOCABULARY, language)
    assert (condition.threshold, condition.more, condition.then) == (threshold, more, then)


@pytest.mark.parametrize(
    ("text", "language", "threshold", "more", "difference", "wanted"),
    [
        ("Swap my lamp for the brass one, but only if the difference is below $40, otherwise forget it.", "en", 40.0, False, 35.0, True),
        ("Swap my lamp for the brass one, but only if the difference is below $40, otherwise forget it.", "en", 40.0, False, 55.0, False),
        ("Tauschen Sie den Rucksack gegen den großen, aber nur wenn er weniger als 30 Dollar mehr kostet.", "de", 30.0, False, 12.0, True),
        ("Cambien la cafetera por la de acero siempre que cueste menos de 70 dólares más.", "es", 70.0, False, 90.0, False),
        ("Remplacez la valise par la rouge, seulement si le supplément reste en dessous de 50 $.", "fr", 50.0, False, 20.0, True),
        # the usual way round: the comparison names when the alternative is wanted
        ("Please swap the kettle for the steel one. If it costs more than $25 extra, just take the kettle back.", "en", 25.0, True, 30.0, False),
        ("Please swap the kettle for the steel one. If it costs more than $25 extra, just take the kettle back.", "en", 25.0, True, 10.0, True),
        # an upper bound said with the word for "more" in it ("no more than", "nicht mehr als", "pas plus de")
        ("Switch the desk lamp to the brass one, only if it is no more than $15 extra, otherwise leave it.", "en", 15.0, False, -4.0, True),
        ("Switch the desk lamp to the brass one, only if it is no more than $15 extra, otherwise leave it.", "en", 15.0, False, 22.0, False),
        ("Go ahead with the larger tent if it costs at most $40 more.", "en", 40.0, False, 30.0, True),
        ("Bitte den Koffer in Rot, aber nur wenn er nicht mehr als 25 Dollar mehr kostet.", "de", 25.0, False, 31.0, False),
        ("Bitte den Koffer in Rot, falls der Aufpreis höchstens 25 Dollar beträgt.", "de", 25.0, False, 10.0, True),
        ("Cámbienme la lámpara por la de latón solo si no cuesta más de 15 dólares extra.", "es", 15.0, False, 12.0, True),
        ("Remplacez la lampe par celle en laiton, seulement s'il n'y a pas plus de 15 $ de supplément.", "fr", 15.0, False, 18.0, False),
        # a lower bound said with "less": "if it's at least $30 dearer, I'd rather return it"
        ("Exchange the kettle for the steel one. If it's at least $30 more, I'd rather return it.", "en", 30.0, True, 35.0, False),
    ],
)
def test_only_if_bounds_the_change_itself_and_if_bounds_the_alternative(text, language, threshold, more, difference, wanted):
    """ "Only if it is under $40" wants the change below $40; "if it costs more than $25, take it back" wants it up to
    $25: the same comparison read the wrong way round writes a change the customer ruled out, and says it did not.
    "No more than $20 extra" bounds from above: read by its "more than" alone it was a lower bound, and a change $15
    cheaper was left undone as if the customer had ruled it out."""
    (condition,) = price.read(text, VOCABULARY, language)
    assert (condition.threshold, condition.more) == (threshold, more)
    assert condition.wants_change(difference) is wanted


def test_a_condition_holds_only_on_its_side_of_the_threshold():
    dearer = price.PriceCondition(threshold=20.0, more=True, then="return", text="")
    assert dearer.holds(20.01) and not dearer.holds(20.0) and not dearer.holds(-5.0)
    cheaper = price.PriceCondition(threshold=0.0, more=False, then="nothing", text="")
    assert cheaper.holds(-0.5) and not cheaper.holds(3.0)


def test_a_clause_without_a_condition_or_a_comparison_is_no_price_condition():
    assert price.read("Please swap the kettle for the steel one, it costs more than I hoped but fine.", VOCABULARY, "en") == []
    assert price.read("If you can, send the steel kettle instead.", VOCABULARY, "en") == []


@pytest.mark.parametrize(
    ("text", "language", "difference", "wanted"),
    [
        # "if it is under $200, go ahead": the comparison bounds the change itself, with no "only" said
        ("If swapping to the blue bike costs under $200 extra, go ahead and use my PayPal.", "en", 277.83, False),
        ("If swapping to the blue bike costs under $200 extra, go ahead and use my PayPal.", "en", 150.0, True),
        ("Si el azul cuesta menos de 50 dólares más, cámbienlo.", "es", 80.0, False),
        ("Wenn die blaue weniger als 40 Dollar mehr kostet, bitte tauschen.", "de", 12.0, True),
        # a refund of the difference is where money goes, not a return instead of the change
        ("Si es más barata, el reembolso a mi tarjeta regalo por favor.", "es", -13.13, True),
        ("If it's cheaper, refund the difference to my gift card.", "en", -13.13, True),
    ],
)
def test_a_comparison_with_no_alternative_bounds_the_change_itself(text, language, difference, wanted):
    (condition,) = price.read(text, VOCABULARY, language)
    assert condition.wants_change(difference) is wanted, condition


@pytest.mark.parametrize(
    ("text", "language", "threshold", "then"),
    [
        ("Tell me the cheapest gaming mouse. If it is less than 90 bucks I want to exchange mine for it. If not, I want to return mine.", "en", 90.0, "return"),
        ("Wenn die günstigste Maus weniger als 90 Dollar kostet, tauschen Sie meine bitte um. Wenn nicht, möchte ich meine zurückgeben.", "de", 90.0, "return"),
        ("Si el ratón más barato cuesta menos de 90 dólares, cámbienme el mío. Si no, quiero devolver el mío.", "es", 90.0, "return"),
        ("Si la souris la moins chère coûte moins de 90 $, échangez la mienne. Sinon, je veux retourner la mienne.", "fr", 90.0, "return"),
        ("Swap my bike for the carbon one but only if that bike costs less than $2,000. Otherwise just leave my order as it is.", "en", 2000.0, "nothing"),
    ],
)
def test_an_amount_with_no_word_of_a_difference_is_the_new_items_price(text, language, threshold, then):
    """ "If it is less than 200 bucks, exchange; if not, return" compares what the new item costs, and names when the
    exchange is wanted: read as a difference, a cheaper keyboard at $226 passed "under $200" and was exchanged where the
    customer wanted a return. "If not" / "Wenn nicht" / "Si no" / "Sinon" opens the alternative as "otherwise" does."""
    (condition,) = price.read(text, VOCABULARY, language)
    assert (condition.threshold, condition.then, condition.of_price, condition.only) == (threshold, then, True, True)
    assert condition.wants_change(threshold - 5) and not condition.wants_change(threshold + 5)


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Please swap the kettle for the steel one. If it costs more than $25 extra, just take the kettle back.", "en"),
        ("Swap it if it's no more than $15 more, otherwise leave it.", "en"),
        ("Bitte tauschen Sie die Lampe gegen die weiße. Falls die mehr als 30 Dollar teurer ist, lassen Sie es bitte so.", "de"),
        ("Bitte den Koffer in Rot, falls der Aufpreis höchstens 25 Dollar beträgt.", "de"),
        ("Cambien la cafetera por la de acero siempre que cueste menos de 70 dólares más.", "es"),
        ("Remplacez la valise par la rouge, seulement si le supplément reste en dessous de 50 $.", "fr"),
        ("Échangez la montre contre la bleue. Si elle coûte plus cher que la mienne, laissez tomber.", "fr"),
        # the difference named before the condition that speaks of it
        ("Die Lampe bitte in Weiß, den Aufpreis von meiner Geschenkkarte, sofern er unter 40 Dollar liegt.", "de"),
        ("Put the difference on my gift card, as long as it stays under $40.", "en"),
    ],
)
def test_an_amount_said_as_extra_or_dearer_is_the_difference(text, language):
    (condition,) = price.read(text, VOCABULARY, language)
    assert condition.of_price is False
