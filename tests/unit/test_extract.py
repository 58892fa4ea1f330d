"""The model's typed reading (crews/procedures/extract.py): its schema holds the model to this customer's open orders,
the kinds of request each order's status allows and that order's own items; its answer is read back as requests."""

from __future__ import annotations

import jsonschema
import pytest

from crews.procedures import extract
from crews.procedures.state import Action, Customer, Item, Order, PaymentMethod


def item(order_id: str, item_id: str, name: str, **options: str) -> Item:
    return Item(order_id=order_id, item_id=item_id, product_id="p" + item_id, name=name, options=options, price=10.0)


CUSTOMER = Customer(
    user_id="u",
    how="test",
    payment_methods={"paypal_1": PaymentMethod(method_id="paypal_1", source="paypal", label="PayPal")},
    orders=[
        Order(
            order_id="#W1", status="delivered", paid_with="paypal_1", items=[item("#W1", "11", "Lamp", color="black"), item("#W1", "12", "Mug", color="white")]
        ),
        Order(order_id="#W2", status="cancelled", paid_with="paypal_1", items=[item("#W2", "21", "Kettle")]),
        Order(order_id="#W3", status="pending", paid_with="paypal_1", items=[item("#W3", "31", "Backpack", size="large")]),
    ],
)


def test_the_schema_offers_only_open_orders_their_kinds_and_their_own_items():
    built = extract.prompt("Please take the white mug back.", CUSTOMER)
    properties = built.schema["properties"]
    assert sorted(properties) == ["#W1", "#W3", "account_address"]  # the cancelled order is no choice
    assert properties["#W1"]["properties"]["do"]["enum"] == ["nothing", "return", "exchange"]
    assert properties["#W3"]["properties"]["do"]["enum"] == ["nothing", "cancel", "change", "address", "payment"]
    assert properties["#W1"]["properties"]["items"]["items"]["enum"] == ["A", "B"] and properties["#W3"]["properties"]["items"]["items"]["enum"] == ["C"]
    assert "A) Lamp (black); B) Mug (white)" in built.messages[-1]["content"] and "Kettle" not in built.messages[-1]["content"]
    with pytest.raises(jsonschema.ValidationError):  # another order's item cannot be said of this order
        jsonschema.validate({"#W1": {"do": "return", "items": ["C"]}, "#W3": {"do": "nothing", "items": []}, "account_address": "keep"}, built.schema)
    with pytest.raises(jsonschema.ValidationError):  # nor a return of a pending order
        jsonschema.validate({"#W1": {"do": "nothing", "items": []}, "#W3": {"do": "return", "items": ["C"]}, "account_address": "keep"}, built.schema)


def test_an_answer_is_read_back_as_requests_by_item_id():
    built = extract.prompt("...", CUSTOMER)
    answer = {"#W1": {"do": "return", "items": ["B"]}, "#W3": {"do": "cancel", "items": ["C"]}, "account_address": "change"}
    jsonschema.validate(answer, built.schema)
    assert extract.parse(answer, built) == [
        extract.Request("return", "#W1", ("12",)),
        extract.Request("cancel", "#W3", ()),  # a cancellation is the whole order's: its items are not compared
        extract.Request("account_address", ""),
    ]
    assert extract.parse({"#W1": {"do": "nothing", "items": ["A"]}, "#W3": {"do": "nothing", "items": []}, "account_address": "keep"}, built) == []


def test_a_planned_write_and_an_expected_tool_call_compare_as_requests():
    action = Action(
        intent="return_items", tool="return_delivered_order_items", role="billing", order_id="#W1", items=[CUSTOMER.orders[0].items[1]], arguments={}
    )
    assert extract.of_action(action) == extract.Request("return", "#W1", ("12",))
    assert extract.of_tool_call("return_delivered_order_items", {"order_id": "#W1", "item_ids": ["12"], "payment_method_id": "paypal_1"}) == extract.of_action(
        action
    )
    assert extract.of_tool_call("modify_user_address", {"user_id": "u", "city": "X"}) == extract.Request("account_address", "")
    assert extract.same([extract.Request("cancel", "#W3")], [extract.Request("cancel", "#W3")])
    assert not extract.same([extract.Request("return", "#W1", ("11", "12"))], [extract.Request("return", "#W1", ("12",))])
