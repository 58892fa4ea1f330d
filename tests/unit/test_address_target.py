"""Which address the customer means when they name a place the store already holds (crews/procedures/address.py,
`target`). The customers and sentences are made up for this test; none is from an evaluation set."""

from __future__ import annotations

import pytest

from crews.procedures import address
from crews.procedures.state import Customer, Item, Order

NEW = {"address1": "12 Oak Road", "address2": "", "city": "Austin", "country": "USA", "state": "TX", "zip": "78701"}
OLD = {"address1": "480 Oak Road", "address2": "Apt 3", "city": "Austin", "country": "USA", "state": "TX", "zip": "78702"}
DALLAS = {"address1": "9 Elm Street", "address2": "", "city": "Dallas", "country": "USA", "state": "TX", "zip": "75201"}


def customer(default: dict[str, str], *orders: tuple[str, dict[str, str], str]) -> Customer:
    return Customer(
        user_id="u1",
        how="test",
        payment_methods={},
        address=default,
        orders=[
            Order(
                order_id=oid,
                status="pending",
                paid_with="paypal_1",
                address=where,
                items=[Item(order_id=oid, item_id=f"i{n}", product_id="p", name=name, price=10.0)],
            )
            for n, (oid, where, name) in enumerate(orders)
        ],
    )


def test_an_order_at_the_same_address_as_the_default_that_changes_still_names_that_address():
    """Both addresses are in Austin, the default is one of them and is to change, an order ships to it: "in Austin" tells
    the two apart no better than before. Dropping the default used to drop that order's identical address with it, so the
    other order's (the old one) was taken as where everything should go, and the order and the account were moved there."""
    who = customer(NEW, ("#W1", NEW, "Tablet"), ("#W2", OLD, "Luggage Set"))
    text = (
        "I live in Austin and just moved to a new house on the same street. Please change my other order's address to the new home and my default address too."
    )
    assert address.target(text, who) is None  # asked, not guessed


def test_a_place_named_once_is_still_found_when_the_default_changes():
    who = customer(NEW, ("#W1", NEW, "Tablet"), ("#W2", DALLAS, "Luggage Set"))
    found = address.target("Please send my Austin order's things to my Dallas address and make Dallas my default address.", who)
    assert found is not None and found[0] == DALLAS


@pytest.mark.parametrize(
    "text",
    [
        "We moved to a new house down the road and the tablet was already sent there. Please change my other order's address to the new home, and my default address too.",
        "Wir sind umgezogen, das Tablet wurde schon an die neue Adresse geschickt. Bitte die andere Bestellung und meine Standardadresse auf die neue Adresse ändern.",
        "Me mudé y la tableta ya fue enviada a la nueva dirección. Cambien la dirección del otro pedido y la de mi cuenta a la nueva dirección.",
        "J'ai déménagé, la tablette a déjà été livrée à la nouvelle adresse. Changez l'adresse de l'autre commande et celle de mon compte pour la nouvelle adresse.",
    ],
)
def test_the_new_place_is_where_the_order_the_customer_names_was_sent(text):
    """ "The tablet was already sent to the new house": the store holds the new address on that order. Both addresses are
    in one city, so nothing else tells them apart; read the other way round, the order and the account would be moved
    to the old address."""
    who = customer(OLD, ("#W1", NEW, "Tablet"), ("#W2", OLD, "Luggage Set"))
    assert address.target(text, who) == (NEW, "#W1")


def test_asking_to_send_an_item_to_a_new_place_does_not_say_where_that_place_is():
    who = customer(OLD, ("#W1", NEW, "Tablet"), ("#W2", OLD, "Luggage Set"))
    assert address.target("Please have the luggage set shipped to my new address in Austin.", who) is None
