"""Which address the customer means when they name a place the store already holds (crews/procedures/address.py,
`target`). The customers and sentences are made up for this test; none is from an evaluation set."""

from __future__ import annotations

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
