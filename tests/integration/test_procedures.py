"""Procedures (tasks/procedures/*.yaml, crews/procedures/) on the real PostgreSQL store: identify the customer, decide,
check the store's policy in code, act through the gate, answer with the facts in the customer's language.

The model is the scripted one (its decisions are planned per test, or the first value the schema allows), and the
router is a stand-in that returns the intents each test names: the routers have their own tests (tests/unit/test_routing.py)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from crewdesk.audit.models import AuditEvent
from crewdesk.llm.factory import LLMFactory
from crewdesk.routing.schemas import Route
from crewdesk.store.models import StoreOrder
from crewdesk.tickets.models import Ticket
from crews.config import ConfigError
from crews.pipeline import Pipeline
from crews.procedures.policy import RULES
from crews.procedures.spec import load_procedures

EMAIL = "ethan.sanchez6360@example.com"  # tau2 user ethan_sanchez_2952, zip 78782
PENDING = "#W9102111"  # E-Reader, Water Bottle, Luggage Set, Laptop, Grill; paid with gift card
DELIVERED = "#W9250394"  # Dumbbell Set, Smart Watch, Wristwatch; paid with PayPal


class StandInRouter:
    def __init__(self, *intents: str) -> None:
        self.intents = list(intents)
        self.seen: list[str] = []

    def route(self, text: str) -> Route:
        self.seen.append(text)
        return Route(intents=self.intents, category="billing", priority="normal", sentiment="neutral", confidence=0.9, method="embedding")


class Planned:
    """Scripted decisions: `answers[name]` is a function of the schema (or a value); crew turns are never expected."""

    def __init__(self, **answers) -> None:
        self.answers = answers
        self.asked: list[tuple[str, list, dict]] = []

    def __call__(self, messages, role):
        raise AssertionError("a procedure ticket must not reach the crew")

    def decide(self, name, messages, schema):
        self.asked.append((name, messages, schema))
        answer = self.answers[name]
        return answer(schema, messages) if callable(answer) else answer


def run(settings, store, make_ticket, text, *intents, customer="", plan=None, threshold=-1.0, model_choices="act"):
    settings = settings.model_copy(update={"procedures": True, "approval_threshold_usd": threshold, "model_choices": model_choices})
    router = StandInRouter(*intents)
    pipeline = Pipeline(settings=settings, session_factory=store, llm_factory=LLMFactory(settings, responder=plan or Planned()), router=router)
    ticket_id = make_ticket(text, customer=customer)
    outcome = pipeline.process(ticket_id)
    with store() as db:
        ticket = db.get(Ticket, ticket_id)
        reply = ticket.resolution["customer_reply"] if ticket.resolution else ""
        audit = [(e.kind, e.name) for e in db.execute(select(AuditEvent).where(AuditEvent.ticket_id == ticket_id).order_by(AuditEvent.id)).scalars()]
    return outcome, reply, audit


def order(store, order_id):
    with store() as db:
        return db.execute(select(StoreOrder).where(StoreOrder.order_id == order_id)).scalar_one().doc


def test_a_named_item_is_returned_to_the_original_method_with_the_facts_in_the_reply(settings, store, make_ticket):
    plan = Planned()
    outcome, reply, audit = run(settings, store, make_ticket, f"Hi, please take back the dumbbell set. My e-mail is {EMAIL}.", "return_items", plan=plan)
    doc = order(store, DELIVERED)
    assert outcome.status == "resolved", reply
    assert doc["status"] == "return requested" and doc["return_payment_method_id"] == "paypal_3574041"
    assert [i["name"] for i in doc["items"] if i["item_id"] in doc["return_items"]] == ["Dumbbell Set"]
    assert plan.asked == []  # the customer named the product and only a return fits it: no model call
    assert DELIVERED in reply and "Dumbbell Set" in reply and "PayPal" in reply and "$" in reply
    assert ("effect", "return_delivered_order_items") in audit
    assert any(kind == "procedure" and "return_items" in name for kind, name in audit)  # the order family: cancel, change, return, exchange


def test_the_refund_goes_to_a_gift_card_when_the_customer_asks(settings, store, make_ticket):
    outcome, reply, _ = run(
        settings, store, make_ticket, "I want to return the wristwatch and get the refund on my gift card please.", "return_items", customer=EMAIL
    )
    doc = order(store, DELIVERED)
    assert outcome.status == "resolved" and doc["return_payment_method_id"] == "gift_card_4817478" and "gift card" in reply


def test_cancelling_part_of_a_pending_order_is_refused_by_rule_and_changes_nothing(settings, store, make_ticket):
    before = order(store, PENDING)
    outcome, reply, audit = run(settings, store, make_ticket, "Please cancel the grill I ordered.", "cancel_order", customer=EMAIL)
    assert order(store, PENDING) == before
    assert outcome.status == "escalated" and "whole_order_only" in outcome.escalation_reason
    assert ("policy", "refused:whole_order_only") in audit and not any(kind == "effect" for kind, _ in audit)
    assert "E-Reader" in reply and "only be cancelled as a whole" in reply


def test_cancelling_the_whole_order_by_its_number_with_the_reason_the_customer_gave(settings, store, make_ticket):
    outcome, reply, _audit = run(settings, store, make_ticket, f"Cancel order {PENDING}, I ordered it by mistake.", "cancel_order", customer=EMAIL)
    doc = order(store, PENDING)
    assert outcome.status == "resolved", reply
    assert doc["status"] == "cancelled" and doc["cancel_reason"] == "ordered by mistake"
    assert "$4117.44" in reply and "gift card" in reply and "right away" in reply  # a gift card is refunded at once


def test_a_refund_above_the_threshold_waits_for_approval(settings, store, make_ticket):
    outcome, reply, audit = run(settings, store, make_ticket, "Please return the smart watch.", "return_items", customer=EMAIL, threshold=100.0)
    assert outcome.status == "awaiting_approval" and order(store, DELIVERED)["status"] == "delivered"
    assert ("gate", "approval_requested:return_delivered_order_items") in audit and "approval" in reply


def keep_the_dumbbells(schema, messages):
    """A planned model decision: return every listed item but the dumbbell set ("the two things I wear on my wrist")."""
    listing = messages[-1]["content"]
    return {
        n: ("return_items" if "return_items" in prop["enum"] and f"{n}. Dumbbell Set" not in listing else "keep") for n, prop in schema["properties"].items()
    }


def test_the_model_decides_what_the_customer_described_and_can_only_pick_their_items(settings, store, make_ticket):
    plan = Planned(assign_items=keep_the_dumbbells)
    outcome, _reply, _ = run(
        settings,
        store,
        make_ticket,
        "Please take back the two things I wear on my wrist from my last delivery, I want my money back.",
        "return_items",
        customer=EMAIL,
        plan=plan,
    )
    ((name, messages, schema),) = plan.asked
    enums = sorted(tuple(prop["enum"]) for prop in schema["properties"].values())
    # nothing named, so the model reads the items; 3 delivered ones: only a return fits the customer's words (or keep);
    # the 5 pending ones cannot be returned, so they are not offered
    assert name == "assign_items" and enums == [("return_items", "keep")] * 3
    assert messages[0]["content"].startswith("You assist the support team")  # stable instructions first: a cacheable prefix
    doc = order(store, DELIVERED)
    assert sorted(i["name"] for i in doc["items"] if i["item_id"] in doc["return_items"]) == ["Smart Watch", "Wristwatch"]
    assert outcome.status == "resolved"


def test_by_default_the_models_reading_is_put_to_the_customer_before_anything_is_written(settings, store, make_ticket):
    """model_choices=confirm (the default): items the model read from a description are not written; the reply names
    them and asks the customer to confirm, in their language, and the ticket is not resolved."""

    before = order(store, DELIVERED)
    outcome, reply, audit = run(
        settings,
        store,
        make_ticket,
        "Bitte nehmen Sie die zwei Dinge zurück, die ich am Handgelenk trage, aus meiner letzten Lieferung.",
        "return_items",
        customer=EMAIL,
        plan=Planned(assign_items=keep_the_dumbbells),
        model_choices="confirm",
    )
    assert order(store, DELIVERED) == before and not any(kind == "effect" for kind, _ in audit)
    assert outcome.status == "waiting_on_customer"
    assert ("decision", "model_choice_confirm") in audit and ("conversation", "asked") in audit
    assert "bestätigen" in reply and "Smart Watch" in reply and "Wristwatch" in reply and "Dumbbell" not in reply


def test_a_customer_found_by_name_and_zip_and_answered_in_german(settings, store, make_ticket):
    outcome, reply, audit = run(
        settings,
        store,
        make_ticket,
        "Hallo, ich bin Ethan Sanchez, Postleitzahl 78782. Wo ist meine Bestellung mit der Hantel? Bitte nennen Sie mir die Sendungsnummer.",
        "order_status",
    )
    assert outcome.status == "resolved"
    assert reply.startswith("Hallo,") and DELIVERED in reply and "Sendungsnummer" in reply
    assert ("tool_call", "find_user_id_by_name_zip") in audit and ("tool_call", "get_order_details") in audit  # every lookup is audited


def test_an_unknown_customer_is_asked_who_they_are_and_nothing_is_touched(settings, store, make_ticket):
    before = order(store, PENDING)
    outcome, reply, _audit = run(settings, store, make_ticket, "Cancel my order please, I do not need it.", "cancel_order")
    assert outcome.status == "waiting_on_customer"  # asked who they are (tests/integration/test_conversations.py answers)
    assert "e-mail address" in reply and order(store, PENDING) == before


def test_procedure_yaml_is_checked_against_the_code(tmp_path):
    from pathlib import Path

    source = Path(__file__).resolve().parents[2] / "tasks" / "procedures"
    (tmp_path / "replies.yaml").write_text((source / "replies.yaml").read_text())
    (tmp_path / "procedures.yaml").write_text(
        (source / "procedures.yaml")
        .read_text()
        .replace("policy: [order_is_delivered,", "policy: [order_is_shiny,")
        .replace("tool: cancel_pending_order", "tool: cancel_everything")
    )
    with pytest.raises(ConfigError) as error:
        load_procedures(tmp_path, policy_rules=set(RULES), roles={"billing", "escalation"})
    assert "unknown policy rule 'order_is_shiny'" in str(error.value) and "unknown tool 'cancel_everything'" in str(error.value)


def test_an_exchange_narrowed_by_the_named_option_then_the_variant_that_changes_least(settings, store, make_ticket):
    plan = Planned(choose_variant={"variant": "2"})
    outcome, reply, _audit = run(
        settings,
        store,
        make_ticket,
        "I'd like to exchange my smart watch for one with a leather band, same color please.",
        "exchange_items",
        customer=EMAIL,
        plan=plan,
    )
    # available leather-band variants in the same colour (gold): two are left, and one of them keeps the display the
    # customer has, so no model is asked
    assert plan.asked == []
    doc = order(store, DELIVERED)
    assert outcome.status == "resolved", reply
    assert doc["status"] == "exchange requested" and doc["exchange_new_items"] == ["5694328282"]  # gold, leather, AMOLED: one option changed
    assert doc["exchange_price_difference"] == -33.04 and doc["exchange_payment_method_id"] == "paypal_3574041"
    assert "$33.04 is refunded to your PayPal" in reply


def test_a_pending_item_changed_to_the_cheapest_variant_paid_with_the_gift_card_the_customer_named(settings, store, make_ticket):
    plan = Planned()
    outcome, reply, _ = run(
        settings,
        store,
        make_ticket,
        "Please change the water bottle in my order to the cheapest one and use my gift card.",
        "modify_order",
        customer=EMAIL,
        plan=plan,
    )
    doc = order(store, PENDING)
    assert plan.asked == []  # "cheapest" and "change" settle it in code
    assert outcome.status == "resolved", reply
    assert doc["status"] == "pending (item modified)" and "5758737025" in [i["item_id"] for i in doc["items"]]
    assert doc["payment_history"][-1] == {"transaction_type": "refund", "amount": 2.75, "payment_method_id": "gift_card_4817478"}


def test_a_gift_card_that_cannot_cover_the_difference_is_refused_by_rule(settings, store, make_ticket, store_data):
    laptop = next(i for i in store_data["orders"][PENDING]["items"] if i["name"] == "Laptop")
    dearest = max((v for v in store_data["products"][laptop["product_id"]]["variants"].values() if v["available"]), key=lambda v: v["price"])
    assert dearest["price"] - laptop["price"] > 53.0  # the gift card holds $53
    before = order(store, PENDING)
    outcome, reply, audit = run(
        settings,
        store,
        make_ticket,
        "Upgrade the laptop in my pending order to the most expensive one, pay with the gift card.",
        "modify_order",
        customer=EMAIL,
    )
    assert order(store, PENDING) == before and ("policy", "refused:gift_card_covers_difference") in audit
    assert outcome.status == "escalated" and "$53.00" in reply


@pytest.mark.parametrize(
    "wish, expected",
    [
        ("a less bright desk lamp, prefer battery > USB > AC", {"brightness": "low", "power source": "battery"}),
        ("a less bright desk lamp, prefer AC adapter > battery > USB", {"brightness": "low", "power source": "AC adapter"}),
        ("a brighter desk lamp, prefer battery > USB > AC", {"brightness": "high", "power source": "USB"}),  # no bright battery lamp is available
    ],
)
def test_comparisons_filter_and_preferences_rank_the_variants_in_code(store_data, wish, expected):
    from crews.procedures import variants
    from crews.procedures.state import Item

    class NoModel:
        def decide(self, *args, **kwargs):
            raise AssertionError("comparison and preference settle it; the model is not asked")

    current = next(i for i in store_data["orders"]["#W6390527"]["items"] if i["name"] == "Desk Lamp")  # white, medium, USB
    item = Item(order_id="#W6390527", **{k: current[k] for k in ("item_id", "product_id", "name", "options", "price")})
    chosen = variants.choose(llm=NoModel(), text=f"I would like {wish}.", item=item, product=store_data["products"][current["product_id"]])
    if isinstance(chosen, variants.Nearest):  # it also changes the colour, which the customer did not speak of: proposed, not chosen
        assert chosen.changes == ("color",)
        chosen = chosen.item
    assert {k: chosen.options[k] for k in expected} == expected and store_data["products"][current["product_id"]]["variants"][chosen.item_id]["available"]


# -- addresses -------------------------------------------------------------------------------------------------------


def user_address(store, user_id="ethan_sanchez_2952"):
    from crewdesk.store.models import StoreUser

    with store() as db:
        return db.execute(select(StoreUser).where(StoreUser.user_id == user_id)).scalar_one().doc["address"]


def test_a_pending_order_is_sent_to_an_address_the_store_already_holds_and_the_default_stays(settings, store, make_ticket):
    home = user_address(store)
    outcome, reply, audit = run(
        settings,
        store,
        make_ticket,
        "Hi, my pending order is going to New York by mistake. Please send it to my home address in Austin instead.",
        "modify_order",
        customer=EMAIL,
    )
    assert outcome.status == "resolved", reply
    assert order(store, PENDING)["address"] == home  # the default address (Austin), taken from the store, not typed by anyone
    assert user_address(store) == home and ("effect", "modify_pending_order_address") in audit and ("effect", "modify_user_address") not in audit
    assert "799 Lakeview Drive" in reply and PENDING in reply


def test_a_written_address_goes_on_the_pending_order_and_the_account(settings, store, make_ticket):
    outcome, reply, _audit = run(
        settings,
        store,
        make_ticket,
        "I moved. Please change my default address and the address of my pending order to 1234 Elm St, Springfield, IL, 62701.",
        "change_default_address",
        customer=EMAIL,
    )
    new = {"address1": "1234 Elm St", "address2": "", "city": "Springfield", "state": "IL", "country": "USA", "zip": "62701"}
    assert outcome.status == "resolved", reply
    assert order(store, PENDING)["address"] == new and user_address(store) == new
    assert order(store, DELIVERED)["address"]["city"] == "Austin"  # a delivered order keeps where it went
    assert "1234 Elm St" in reply and "default address" in reply


def test_an_address_nobody_can_tell_is_asked_for_and_nothing_changes(settings, store, make_ticket):
    before = order(store, PENDING)
    outcome, reply, audit = run(settings, store, make_ticket, "Please change the shipping address of my order to my new place.", "modify_order", customer=EMAIL)
    assert outcome.status == "waiting_on_customer" and order(store, PENDING) == before
    assert "write it out in full" in reply and not any(kind == "effect" for kind, _ in audit)


# -- the customer's fallbacks ----------------------------------------------------------------------------------------


def test_a_refused_partial_cancel_falls_back_to_the_whole_order_the_customer_asked_for(settings, store, make_ticket):
    outcome, reply, audit = run(
        settings,
        store,
        make_ticket,
        "Please cancel the grill from my pending order. If cancelling only the grill is not possible, cancel the whole order, I ordered it by mistake.",
        "cancel_order",
        customer=EMAIL,
    )
    doc = order(store, PENDING)
    assert outcome.status == "resolved", reply
    assert doc["status"] == "cancelled" and doc["cancel_reason"] == "ordered by mistake"
    assert ("policy", "refused:whole_order_only") in audit and ("decision", "fallback") in audit  # the refusal, then the customer's own fallback
    assert "I have cancelled order" in reply


@pytest.mark.parametrize(("limit", "changed"), [(20, False), (5000, True)])
def test_only_if_under_an_amount_makes_the_change_below_it_and_leaves_the_order_above_it(settings, store, make_ticket, limit, changed):
    """ "Only if it is less than $X more, otherwise leave it": the amount bounds the change itself. The dearest laptop
    costs more than $53 over theirs, so under $20 leaves the order and says so with the figures; under $5000 changes it."""
    before = order(store, PENDING)
    outcome, reply, audit = run(
        settings,
        store,
        make_ticket,
        f"Please change the laptop in my order to the most expensive one, but only if it's less than ${limit} more. Otherwise leave my order as it is. Charge any difference to my PayPal.",
        "modify_order",
        customer=EMAIL,
    )
    assert outcome.status == "resolved", reply
    if changed:
        assert order(store, PENDING)["status"] == "pending (item modified)" and ("effect", "modify_pending_order_items") in audit
    else:
        assert order(store, PENDING) == before and not any(kind == "effect" for kind, _ in audit)
        assert f"above the ${limit}.00 you gave" in reply and "as it is" in reply


@pytest.mark.parametrize(
    ("text", "changed"),
    [
        (
            "Please change the laptop in my order to the most expensive one if it costs less than $1000. If not, leave my order as it is. Charge any difference to my PayPal.",
            False,
        ),
        (
            "Please change the laptop in my order to the most expensive one if it costs less than $5000. If not, leave my order as it is. Charge any difference to my PayPal.",
            True,
        ),
        (
            "Bitte ändern Sie den Laptop in meiner Bestellung auf den teuersten, wenn er weniger als 1000 Dollar kostet. Wenn nicht, lassen Sie die Bestellung so. Die Differenz bitte über PayPal.",
            False,
        ),
        (
            "Cambien el portátil de mi pedido por el más caro si cuesta menos de 1000 dólares. Si no, dejen el pedido como está. La diferencia, a mi PayPal.",
            False,
        ),
    ],
)
def test_an_amount_with_no_word_of_a_difference_is_compared_with_the_new_items_price(settings, store, make_ticket, text, changed):
    """ "If it costs less than $1000; if not, leave it": the dearest laptop costs over $2000, $53 more than theirs. Read
    as the difference (under $1000) the order was changed where the customer had said to leave it; read as the price it
    is left, and the reply says what the laptop costs."""
    before = order(store, PENDING)
    outcome, reply, audit = run(settings, store, make_ticket, text, "modify_order", customer=EMAIL)
    assert outcome.status == "resolved", reply
    if changed:
        assert order(store, PENDING)["status"] == "pending (item modified)" and ("effect", "modify_pending_order_items") in audit
    else:
        assert order(store, PENDING) == before and not any(kind == "effect" for kind, _ in audit)
        assert "$1000.00" in reply and "$2" in reply, reply  # their amount and the laptop's price, not the $53 difference


def test_a_fallbacks_redo_sends_the_money_where_the_request_said(settings, store, make_ticket):
    """ "If there is no purple one, I want the black one with the silicone band": the redo reads the fallback's own words
    for the variant, and the request's for the money. It used to read only the sentence the fallback follows, so the
    refund went to the order's PayPal, not the gift card the customer named, and the ticket was called resolved."""
    outcome, reply, audit = run(
        settings,
        store,
        make_ticket,
        "I'd like to exchange my smart watch for a purple one. If there is no purple one, I want the black one with the silicone band. "
        "Please refund any difference to my gift card.",
        "exchange_items",
        customer=EMAIL,
    )
    doc = order(store, DELIVERED)
    assert outcome.status == "resolved", reply
    assert ("decision", "fallback") in audit
    assert doc["exchange_new_items"] == ["2860956907"] and doc["exchange_payment_method_id"] == "gift_card_4817478"
    assert "gift card" in reply


def test_a_fallback_that_says_leave_it_changes_nothing_and_says_why(settings, store, make_ticket):
    before = order(store, PENDING)
    outcome, reply, audit = run(
        settings,
        store,
        make_ticket,
        "Please cancel the grill from my pending order. If that is not possible, do not do anything.",
        "cancel_order",
        customer=EMAIL,
    )
    assert order(store, PENDING) == before and not any(kind == "effect" for kind, _ in audit)
    assert outcome.status == "resolved"  # answered: what could not be done, and that it was left as asked
    assert "only be cancelled as a whole" in reply and "left it as it is" in reply


def test_a_fallback_to_a_person_hands_the_ticket_over(settings, store, make_ticket):
    before = order(store, DELIVERED)
    outcome, reply, audit = run(
        settings,
        store,
        make_ticket,
        "Exchange my smart watch for the same one but with a purple band. If there is no such watch, please pass me to a human.",
        "exchange_items",
        customer=EMAIL,
    )
    assert order(store, DELIVERED) == before
    assert outcome.status == "escalated" and ("tool_call", "transfer_to_human_agents") in audit
    assert "member of our team" in reply


def test_fallback_sentences_are_read_apart_from_the_request():
    from crews.procedures import conditions

    reading = conditions.read(
        "I want to exchange the keyboard for a clicky one. If there is no clicky keyboard with RGB backlight, full size, "
        "I'd rather only exchange the thermostat. If 8 bar is not possible, I want 9 bar. If 9 bar is not possible, I want 7 bar."
    )
    assert reading.request == "I want to exchange the keyboard for a clicky one."
    first, second, third = reading.fallbacks
    assert first.then == "I'd rather only exchange the thermostat." and first.anchor == 0 and first.kind == "redo"
    assert third.anchor == second.index  # "if 9 bar is not possible" follows the fallback that asked for 9 bar
    assert conditions.read("Return it to my card. If that is not possible, transfer me to a human.").fallbacks[0].kind == "handoff"
    assert conditions.read("Cancel the boots. If you cannot, do not do anything.").fallbacks[0].kind == "nothing"
    # a condition that is not a failure stays part of the request
    assert conditions.read("If it has not shipped yet, cancel it.").fallbacks == []


def test_a_cancellation_without_a_reason_asks_for_one_instead_of_inventing_it(settings, store, make_ticket):
    before = order(store, PENDING)
    outcome, reply, audit = run(settings, store, make_ticket, f"Please cancel order {PENDING}.", "cancel_order", customer=EMAIL)
    assert order(store, PENDING) == before and ("policy", "refused:cancel_reason_allowed") in audit
    assert outcome.status == "escalated" and "no longer needed, or it was ordered by mistake" in reply
    outcome, reply, _ = run(
        settings, store, make_ticket, f"Please cancel order {PENDING}, we are moving abroad and won't need it.", "cancel_order", customer=EMAIL
    )
    assert outcome.status == "resolved" and order(store, PENDING)["cancel_reason"] == "no longer needed"


@pytest.mark.parametrize(
    "said",
    [
        "Please cancel order {order}. I found it cheaper elsewhere.",
        "Por favor, cancelen el pedido {order}. Lo encontré más barato en otra tienda.",
        "Merci d'annuler la commande {order}. Je l'ai trouvée moins chère ailleurs.",
        "Bitte stornieren Sie die Bestellung {order}. Ich habe sie woanders günstiger gefunden.",
    ],
)
def test_finding_it_cheaper_elsewhere_is_not_taken_for_an_accepted_reason(settings, store, make_ticket, said):
    """The store accepts 'no longer needed' or 'ordered by mistake'; a customer who found it cheaper still wants the thing,
    so which reason is theirs is asked, not written for them."""
    before = order(store, PENDING)
    outcome, _, audit = run(settings, store, make_ticket, said.format(order=PENDING), "cancel_order", customer=EMAIL)
    assert order(store, PENDING) == before and ("policy", "refused:cancel_reason_allowed") in audit
    assert outcome.status != "resolved"


def test_a_pending_order_is_paid_with_the_other_method_the_customer_names(settings, store, make_ticket):
    """ "Take it from PayPal instead of the gift card": of the methods named, the new one is the one the order is not
    already paid with; the only pending order is the one meant. No model decision."""
    plan = Planned()
    outcome, reply, audit = run(
        settings,
        store,
        make_ticket,
        "Hi, for my open order please take the money from my PayPal instead of the gift card.",
        "modify_order",
        customer=EMAIL,
        plan=plan,
    )
    doc = order(store, PENDING)
    assert outcome.status == "resolved", reply
    assert doc["status"] == "pending" and doc["payment_history"][-2:] == [
        {"transaction_type": "payment", "amount": 4117.44, "payment_method_id": "paypal_3574041"},
        {"transaction_type": "refund", "amount": 4117.44, "payment_method_id": "gift_card_4817478"},
    ]
    assert plan.asked == [] and ("effect", "modify_pending_order_payment") in audit
    assert "PayPal" in reply and PENDING in reply and "$4117.44" in reply


def test_a_gift_card_that_cannot_cover_the_order_is_refused_with_the_figures(settings, store, make_ticket):
    outcome, reply, audit = run(
        settings, store, make_ticket, "Bitte buchen Sie meine offene Bestellung von meiner Geschenkkarte ab statt von PayPal.", "modify_order", customer=EMAIL
    )
    assert outcome.status == "escalated" and order(store, PENDING)["payment_history"][-1]["payment_method_id"] == "gift_card_4817478"
    assert ("policy", "refused:method_differs") in audit  # the order is already paid with the gift card
    assert "Geschenkkarte" in reply or "gift card" in reply


def test_an_alternative_under_a_condition_is_no_forgotten_request(settings, store, make_ticket):
    """ "If that is not possible, ..." is the customer's alternative, not a request of its own: a done return with an
    alternative named for it is resolved."""
    outcome, reply, audit = run(
        settings,
        store,
        make_ticket,
        "Please take back the dumbbell set. If you can't do that, cancel nothing and just tell me why.",
        "return_items",
        customer=EMAIL,
    )
    assert outcome.status == "resolved", reply
    assert ("decision", "uncovered_requests") not in audit


def test_two_writes_read_for_one_order_are_put_to_the_customer_and_nothing_is_written(settings, store, make_ticket):
    """A return and an exchange on the same delivered order cannot both be done (the store takes one write per order):
    neither is written by luck of order; the customer is asked which."""
    before = order(store, DELIVERED)
    outcome, reply, audit = run(
        settings,
        store,
        make_ticket,
        "Please take back the dumbbell set, and exchange the smart watch for the gold one with the leather band, same AMOLED display.",
        "return_items",
        "exchange_items",
        customer=EMAIL,
    )
    assert outcome.status != "resolved", reply
    assert order(store, DELIVERED) == before
    assert ("decision", "conflicting_writes") in audit and not any(kind == "effect" for kind, _ in audit)
    assert DELIVERED in reply and "Dumbbell Set" in reply and "Smart Watch" in reply


def test_a_request_under_a_condition_nothing_can_check_is_confirmed_before_anything_is_written(settings, store, make_ticket):
    """ "If the wristwatch is still under warranty, take it back too": nothing here knows the warranty, so nothing is
    written; the planned return is put to the customer with their condition quoted back."""
    before = order(store, DELIVERED)
    outcome, reply, audit = run(
        settings,
        store,
        make_ticket,
        "Please take back the dumbbell set. If the wristwatch is still under warranty, take it back too.",
        "return_items",
        customer=EMAIL,
    )
    assert outcome.status != "resolved", reply
    assert order(store, DELIVERED) == before
    assert ("decision", "unchecked_condition") in audit and not any(kind == "effect" for kind, _ in audit)
    assert "under warranty" in reply and "Dumbbell Set" in reply


def test_a_product_named_by_a_word_the_catalogue_lacks_is_met_by_meaning_and_put_to_the_customer(settings, store, make_ticket):
    """ "The barbells" is no word of the catalogue: beside the smart watch that was read, the clause is met with the
    customer's Dumbbell Set by meaning (all-MiniLM-L6-v2, offline) and put to the customer to confirm; nothing is written
    on a guess, and no model call is made."""
    before = order(store, DELIVERED)
    plan = Planned()
    outcome, reply, audit = run(
        settings, store, make_ticket, "Please take back the smart watch. I also want to return the barbells.", "return_items", customer=EMAIL, plan=plan
    )
    assert ("decision", "named_by_meaning") in audit and plan.asked == []
    assert outcome.status != "resolved" and "Dumbbell Set" in reply, reply
    assert order(store, DELIVERED) == before  # one order, one write: the watch waits for the customer's answer too


def test_a_variant_that_changes_an_option_the_customer_spoke_of_is_put_to_them_not_written(settings, store, make_ticket):
    # the only blue-dial wristwatch has a silicone strap: the customer who speaks of their metal one is asked first
    before = order(store, DELIVERED)
    outcome, reply, audit = run(
        settings, store, make_ticket, "Could I exchange my metal wristwatch for one with a blue dial?", "exchange_items", customer=EMAIL
    )
    assert order(store, DELIVERED) == before and outcome.status != "resolved", reply
    assert ("decision", "variant_changes_unasked") in audit and not any(kind == "effect" for kind, _ in audit)
    assert "strap material silicone" in reply and "nearest" in reply
    # who never spoke of the strap gets the only blue-dial watch there is
    outcome, reply, _ = run(settings, store, make_ticket, "Could I exchange my wristwatch for one with a blue dial?", "exchange_items", customer=EMAIL)
    doc = order(store, DELIVERED)
    assert outcome.status == "resolved" and doc["exchange_new_items"] == ["8886009523"], reply


def test_what_was_not_found_is_said_in_the_customers_language(settings, store, make_ticket):
    outcome, reply, _ = run(settings, store, make_ticket, "Bitte tauschen Sie meine Smartwatch gegen eine in Lila um.", "exchange_items", customer=EMAIL)
    assert outcome.status != "resolved" and "Variante" in reply and "fits your request" not in reply, reply


def test_which_pending_order_gets_a_new_address_is_confirmed_when_only_the_model_read_it(settings, store, make_ticket):
    # emma.smith3991 has two pending orders (#W2417020, #W3614011); the mail does not say which one moves
    customer, orders = "emma.smith3991@example.com", ("#W2417020", "#W3614011")
    before = {o: order(store, o) for o in orders}
    plan = Planned(choose_orders=lambda schema, messages: dict.fromkeys(schema["properties"], "change"))
    text = "I moved. Please change the shipping address of my pending order to 1234 Elm St, Springfield, IL, 62701."
    outcome, reply, audit = run(settings, store, make_ticket, text, "modify_order", customer=customer, plan=plan, model_choices="confirm")
    assert [name for name, _, _ in plan.asked] == ["choose_orders"]
    assert {o: order(store, o) for o in orders} == before and outcome.status != "resolved", reply
    assert ("decision", "model_choice_confirm") in audit and not any(kind == "effect" for kind, _ in audit)
    assert "please confirm" in reply and "#W2417020 (Laptop)" in reply


def check_says(**by_item):
    """The write check's planned answers: by a word of the item's name in the question, else yes."""

    def answer(schema, messages):
        asked = messages[-1]["content"].rsplit("\n", 1)[-1]
        return {"answer": next((said for word, said in by_item.items() if word in asked), "yes")}

    return answer


def test_an_item_the_model_doubts_holds_the_write_for_the_customers_yes_and_nothing_is_written(settings, store, make_ticket):
    """Verify before a write (issue 19): the reader reads "the watch" as both watches of the order; the model, asked one
    yes/no per item against the customer's words, doubts the Wristwatch, so the return is not made on the reader's word:
    it is stated whole for the customer's yes and the ticket waits."""
    settings = settings.model_copy(update={"write_check": "model"})
    plan = Planned(check_write=check_says(Wristwatch="no"))
    before = order(store, DELIVERED)
    outcome, reply, audit = run(settings, store, make_ticket, "Please take back the smart watch and the wristwatch.", "return_items", customer=EMAIL, plan=plan)
    assert order(store, DELIVERED) == before, "nothing is written while an item is in doubt"
    assert outcome.status == "waiting_on_customer", reply
    assert ("decision", "write_checked") in audit and ("decision", "write_doubted") in audit and ("decision", "write_proposed") in audit
    assert not any(kind == "effect" for kind, _ in audit)
    questions = [m[-1]["content"] for name, m, _ in plan.asked if name == "check_write"]
    assert len(questions) == 2 and all(q.startswith("Customer's message:\n") and "Please take back" in q for q in questions)  # one per item, the message first
    assert any("Smart Watch" in q and DELIVERED in q for q in questions) and any("Wristwatch" in q for q in questions)
    assert "Wristwatch" in reply and "Smart Watch" in reply and "yes" in reply.lower()  # the write stated, for a yes


def test_items_the_model_confirms_are_written_and_the_check_is_audited_with_its_probabilities(settings, store, make_ticket):
    settings = settings.model_copy(update={"write_check": "model"})
    plan = Planned(check_write=check_says())
    outcome, reply, _ = run(settings, store, make_ticket, "Please take back the dumbbell set.", "return_items", customer=EMAIL, plan=plan)
    assert outcome.status == "resolved", reply and order(store, DELIVERED)["status"] == "return requested"
    with store() as db:
        (checked,) = db.execute(select(AuditEvent).where(AuditEvent.name == "write_checked")).scalars()
    assert (
        checked.arguments["items"] == [{"item": checked.arguments["items"][0]["item"], "p_yes": 1.0}]
        and "Dumbbell Set" in checked.arguments["items"][0]["item"]
    )
    assert checked.arguments["mode"] == "model" and checked.arguments["min_yes"] == 0.3


def test_in_audit_mode_a_doubted_item_is_recorded_and_written_anyway(settings, store, make_ticket):
    settings = settings.model_copy(update={"write_check": "audit"})
    plan = Planned(check_write=check_says(Dumbbell="no"))
    outcome, _reply, audit = run(settings, store, make_ticket, "Please take back the dumbbell set.", "return_items", customer=EMAIL, plan=plan)
    assert outcome.status == "resolved" and order(store, DELIVERED)["status"] == "return requested"
    assert ("decision", "write_checked") in audit and ("decision", "write_doubted") not in audit


@pytest.mark.parametrize("said", ["yes", "no"])
def test_an_order_the_customer_names_that_nothing_was_done_about_is_put_to_the_model_before_resolved(settings, store, make_ticket, said):
    """Verify before "resolved" (issue 19): the return is done, but the message also names the pending order (by its
    grill) and nothing was done about it. One yes/no question to the model: a yes keeps the ticket from `resolved` and
    asks the customer what they want for that order; a no lets the return resolve the ticket."""
    settings = settings.model_copy(update={"write_check": "model"})
    plan = Planned(check_write=check_says(), check_order={"answer": said})
    text = "Please take back the dumbbell set. And the grill from my other order, you know what I mean."
    outcome, reply, audit = run(settings, store, make_ticket, text, "return_items", customer=EMAIL, plan=plan)
    assert order(store, DELIVERED)["status"] == "return requested"
    assert order(store, PENDING)["status"] == "pending"
    (question,) = [m[-1]["content"] for name, m, _ in plan.asked if name == "check_order"]
    assert PENDING in question and "Grill" in question
    assert ("decision", "order_checked") in audit
    if said == "yes":
        assert outcome.status == "waiting_on_customer", reply
        assert f"We have not done anything yet about your order {PENDING}" in reply
    else:
        assert outcome.status == "resolved", reply
        assert PENDING not in reply


def read_as(kind: str, order_id: str, *names: str):
    """A planned typed reading (crews/procedures/extract.py): `kind` on `order_id` for the items named, nothing else."""

    def answer(schema, messages):
        listing = messages[-1]["content"]
        letters = [m.group(1) for n in names for m in [re.search(rf"\b([A-Z]{{1,2}})\) {n} \(", listing)] if m]
        reading = {o: {"do": "nothing", "items": []} for o in schema["properties"] if o != "account_address"}
        reading[order_id] = {"do": kind, "items": letters}
        return {**reading, "account_address": "keep"}

    return answer


def run_read(settings, store, make_ticket, mode: str, product: str):
    """ "Please take back the dumbbell set." with the model's own reading (`mode`) being a return of `product`."""
    plan = Planned(read_request=read_as("return", DELIVERED, product))
    outcome, reply, audit = run(
        settings.model_copy(update={"model_reading": mode}), store, make_ticket, "Please take back the dumbbell set.", "return_items", customer=EMAIL, plan=plan
    )
    return plan, outcome, reply, audit


def test_the_models_own_reading_lets_a_write_it_holds_be_made(settings, store, make_ticket):
    plan, outcome, reply, audit = run_read(settings, store, make_ticket, "cross", "Dumbbell Set")
    ((name, messages, schema),) = plan.asked
    # grounded: one entry per open order of this customer, kinds by the order's status, items by letter
    assert name == "read_request" and sorted(schema["properties"]) == sorted([PENDING, DELIVERED, "account_address"])  # the customer's two open orders
    assert "Please take back the dumbbell set." in messages[-1]["content"] and "Dumbbell Set" in messages[-1]["content"]
    assert schema["properties"][DELIVERED]["properties"]["do"]["enum"] == ["nothing", "return", "exchange"]
    assert schema["properties"][PENDING]["properties"]["do"]["enum"] == ["nothing", "cancel", "change", "address", "payment"]
    assert outcome.status == "resolved", reply
    assert order(store, DELIVERED)["status"] == "return requested"
    assert ("decision", "model_reading") in audit and ("decision", "write_proposed") not in audit


def test_a_write_the_models_own_reading_does_not_hold_is_put_to_the_customer(settings, store, make_ticket):
    """The rules read a return of the dumbbell set; the model (cross) reads the smart watch. Neither is written on one
    reader's word: the rules' write is stated for the customer's yes and the ticket waits."""
    before = order(store, DELIVERED)
    _, outcome, reply, audit = run_read(settings, store, make_ticket, "cross", "Smart Watch")
    assert order(store, DELIVERED) == before and not any(kind == "effect" for kind, _ in audit)
    assert outcome.status == "waiting_on_customer", reply
    assert ("decision", "model_reading") in audit and ("decision", "write_proposed") in audit
    assert "Dumbbell Set" in reply


def test_the_models_own_reading_in_audit_mode_records_and_holds_nothing(settings, store, make_ticket):
    _, outcome, reply, audit = run_read(settings, store, make_ticket, "audit", "Smart Watch")
    assert outcome.status == "resolved", reply
    assert order(store, DELIVERED)["status"] == "return requested" and ("decision", "model_reading") in audit


def test_two_orders_cancelled_in_a_list_each_with_the_reason_on_its_own_line(settings, store, make_ticket):
    """Both reasons the store accepts in one ticket: each order gets the one written beside it (the whole ticket's
    reasons are two, and the first one found had been given to both)."""
    text = "Please cancel:\n#W2417020 (laptop) - don't need it anymore\n#W3614011 (camera etc.) - ordered it by mistake\nThanks, Emma"
    outcome, reply, _ = run(settings, store, make_ticket, text, "cancel_order", customer="emma.smith3991@example.com")
    assert outcome.status == "resolved", reply
    assert order(store, "#W2417020")["cancel_reason"] == "no longer needed"
    assert order(store, "#W3614011").get("cancel_reason") == "ordered by mistake", reply


def test_the_reply_names_the_payment_method_in_the_customers_language(settings, store, make_ticket):
    outcome, reply, _ = run(
        settings, store, make_ticket, f"Bonjour, annulez la commande {PENDING} s'il vous plaît, je l'ai commandée par erreur.", "cancel_order", customer=EMAIL
    )
    assert outcome.status == "resolved", reply
    assert "carte cadeau" in reply and "gift card" not in reply
