"""crews/procedures/answers.py: a customer's answer read against the question we asked, in four languages. Only the
listed choices can be picked; what names none of them settles nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from crews.procedures import answers, wording
from crews.procedures.state import Item, Outcome

VOCABULARY = wording.load(Path(__file__).resolve().parents[2] / "tasks" / "procedures")
SILVER = Item(order_id="#W1000001", item_id="a", product_id="watch", name="Smart Watch", options={"color": "silver", "band material": "leather"}, price=1)
BLACK = Item(order_id="#W1000001", item_id="b", product_id="watch", name="Smart Watch", options={"color": "black", "band material": "leather"}, price=1)
OTHER_ORDER = BLACK.model_copy(update={"order_id": "#W2000002"})
LAMP = Item(order_id="#W3", item_id="c", product_id="lamp", name="Desk Lamp", options={"color": "white"}, price=1)
KETTLE = Item(order_id="#W3", item_id="d", product_id="kettle", name="Electric Kettle", options={"capacity": "1L"}, price=1)


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("Yes please, go ahead.", "en", "yes"),
        ("Ja, bitte so.", "de", "yes"),
        ("Sí, adelante.", "es", "yes"),
        ("Oui, d'accord.", "fr", "yes"),
        ("No, leave it.", "en", "no"),
        ("Nein danke, doch nicht.", "de", "no"),
        ("No, mejor no.", "es", "no"),
        ("Non merci.", "fr", "no"),
        ("Hmm, the one I got for my birthday.", "en", None),
        ("No. Yes, the lamp only.", "en", "no"),  # the first sentence decides; the items named correct it
    ],
)
def test_yes_or_no_in_the_answers_first_sentence(text, language, expected):
    assert answers.polarity(text, VOCABULARY, language) == expected


def test_a_choice_is_picked_by_an_option_value_an_order_number_or_its_place_in_our_list():
    assert answers.pick("The black one.", [SILVER, BLACK], VOCABULARY, "en") == [BLACK]
    assert answers.pick("Die schwarze bitte.", [SILVER, BLACK], VOCABULARY, "de") == [BLACK]
    assert answers.pick("La negra.", [SILVER, BLACK], VOCABULARY, "es") == [BLACK]
    assert answers.pick("The one from order #W2000002.", [BLACK, OTHER_ORDER], VOCABULARY, "en") == [OTHER_ORDER]
    assert answers.pick("The second one.", [SILVER, BLACK], VOCABULARY, "en") == [BLACK]
    assert answers.pick("La première.", [SILVER, BLACK], VOCABULARY, "fr") == [SILVER]
    # a value both have tells neither apart; words that name no choice pick nothing
    assert answers.pick("The leather one.", [SILVER, BLACK], VOCABULARY, "en") == []
    assert answers.pick("The one I got for my birthday.", [SILVER, BLACK], VOCABULARY, "en") == []


def test_a_confirmation_is_answered_whole_or_for_the_items_named():
    asked = [Outcome(intent="return_items", kind="confirm", items=[LAMP, KETTLE], detail={"tool": "return_delivered_order_items"})]
    yes = answers.read("Yes, that's right.", asked, VOCABULARY, "en")
    assert yes.yes == {("#W3", "c"), ("#W3", "d")} and yes.no == set()
    only = answers.read("No, only the lamp.", asked, VOCABULARY, "en")
    assert only.yes == {("#W3", "c")} and only.no == {("#W3", "d")}
    not_that = answers.read("No, not the lamp.", asked, VOCABULARY, "en")  # never read as a yes to the lamp
    assert not not_that.settled_anything
    no = answers.read("No thanks.", asked, VOCABULARY, "en")
    assert no.yes == set() and no.no == {("#W3", "c"), ("#W3", "d")}
    unclear = answers.read("What does that cost?", asked, VOCABULARY, "en")
    assert not unclear.settled_anything
    mixed = answers.read("Yes, but not the kettle.", asked, VOCABULARY, "en")  # not read apart here: asked again
    assert mixed.polarity == "mixed" and not mixed.settled_anything


def test_a_which_one_question_is_answered_only_by_naming_one_of_its_choices():
    asked = [Outcome(intent="return_items", kind="ambiguous", items=[SILVER, BLACK])]
    assert answers.read("The black one, thanks.", asked, VOCABULARY, "en").picked == {("#W1000001", "b")}
    assert answers.read("Yes.", asked, VOCABULARY, "en").picked == set()  # a yes chooses nothing
    assert answers.read("The desk lamp.", asked, VOCABULARY, "en").picked == set()  # not among the choices


def test_a_stated_write_is_approved_or_refused_whole_by_its_fingerprint_or_narrowed_by_the_items_named():
    def stated(fingerprint: str, *items: Item, order: str = "#W3") -> Outcome:
        return Outcome(
            intent="return_items",
            kind="propose",
            items=list(items),
            detail={"tool": "return_delivered_order_items", "fingerprint": fingerprint, "order": order},
        )

    asked = [stated("f1", LAMP, KETTLE)]
    yes = answers.read("Oui, allez-y.", asked, VOCABULARY, "fr")
    assert yes.approved == {"f1"} and yes.refused == set() and yes.settled_anything
    no = answers.read("Nein, doch nicht.", asked, VOCABULARY, "de")
    assert no.refused == {"f1"} and no.approved == set()
    only = answers.read("No, only the lamp.", asked, VOCABULARY, "en")  # re-planned without the kettle, stated again
    assert only.approved == set() and only.yes == {("#W3", "c")} and only.no == {("#W3", "d")}
    but_not = answers.read("Yes, but not the kettle.", asked, VOCABULARY, "en")  # re-planned without it, stated again
    assert but_not.approved == set() and but_not.yes == {("#W3", "c")} and but_not.no == {("#W3", "d")}
    not_that = answers.read("No, not the lamp.", asked, VOCABULARY, "en")
    assert not_that.approved == set() and not_that.yes == {("#W3", "d")} and not_that.no == {("#W3", "c")}
    aber = answers.read("Ja, aber nicht den Wasserkocher.", asked, VOCABULARY, "de")
    assert aber.no == {("#W3", "d")} and aber.yes == {("#W3", "c")}
    assert not answers.read("Yes and no.", asked, VOCABULARY, "en").settled_anything  # which part is which: asked again
    # two orders' writes stated: a yes that names one order approves that one only
    two = [stated("f1", LAMP, order="#W3"), stated("f2", OTHER_ORDER, order="#W2000002")]
    assert answers.read("Yes, go ahead with #W2000002.", two, VOCABULARY, "en").approved == {"f2"}
    assert answers.read("Yes to both.", two, VOCABULARY, "en").approved == {"f1", "f2"}


def test_the_yes_an_answer_opens_with_names_no_option_value_yes():
    """The store's option values include "yes" and "no" (waterproof: yes): a plain yes to a stated cancel of a whole
    order named the waterproof items and re-planned the cancel without the rest (tau2 task 16, conversation protocol)."""
    boots = Item(order_id="#W5", item_id="e", product_id="boots", name="Hiking Boots", options={"waterproof": "yes"}, price=1)
    camera = Item(order_id="#W5", item_id="f", product_id="camera", name="Action Camera", options={"waterproof": "no"}, price=1)
    asked = [Outcome(intent="cancel_order", kind="propose", items=[boots, camera, KETTLE], detail={"fingerprint": "f5", "order": "#W5"})]
    yes = answers.read("Yes", asked, VOCABULARY, "en")
    assert yes.approved == {"f5"} and yes.yes == set() and yes.no == set()
    assert answers.read("Sí, adelante.", asked, VOCABULARY, "es").approved == {"f5"}
    assert answers.pick("Yes, the waterproof one.", [boots, camera], VOCABULARY, "en") == [boots]
    assert answers.pick("Yes, go ahead with #W2000002.", [BLACK, OTHER_ORDER], VOCABULARY, "en") == [OTHER_ORDER]
