"""The built-in RetailStore on our database, following tau2-bench retail's tool semantics operation by operation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crewdesk.connectors.base import RetailStore, StoreError
from crewdesk.store.models import StoreOrder, StoreProduct, StoreUser

CANCEL_REASONS = ("no longer needed", "ordered by mistake")


class SqlRetailStore(RetailStore):
    """Every method works inside the caller's session; the caller commits (with the effect record)."""

    def __init__(self, db: Session) -> None:
        self.db = db

    # -- reads ---------------------------------------------------------------------------------
    def _user(self, user_id: str, *, lock: bool = False) -> StoreUser:
        stmt = select(StoreUser).where(StoreUser.user_id == user_id)
        row = self.db.execute(stmt.with_for_update() if lock else stmt).scalar_one_or_none()
        if row is None:
            raise StoreError("User not found")
        return row

    def _order(self, order_id: str, *, lock: bool = False) -> StoreOrder:
        stmt = select(StoreOrder).where(StoreOrder.order_id == order_id)
        row = self.db.execute(stmt.with_for_update() if lock else stmt).scalar_one_or_none()
        if row is None:
            raise StoreError("Order not found")
        return row

    def _product(self, product_id: str) -> dict[str, Any]:
        row = self.db.get(StoreProduct, product_id)
        if row is None:
            raise StoreError("Product not found")
        return row.doc

    def find_user_id_by_email(self, email: str) -> str:
        row = self.db.execute(select(StoreUser.user_id).where(func.lower(StoreUser.email) == email.strip().lower())).scalar_one_or_none()
        if row is None:
            raise StoreError("User not found")
        return row

    def find_user_id_by_name_zip(self, first_name: str, last_name: str, zip: str) -> str:
        for user in self.db.execute(select(StoreUser)).scalars():
            doc = user.doc
            if (
                doc["name"]["first_name"].lower() == first_name.strip().lower()
                and doc["name"]["last_name"].lower() == last_name.strip().lower()
                and doc["address"]["zip"] == zip.strip()
            ):
                return user.user_id
        raise StoreError("User not found")

    def get_user_details(self, user_id: str) -> dict[str, Any]:
        return self._user(user_id).doc

    def get_order_details(self, order_id: str) -> dict[str, Any]:
        return self._order(order_id).doc

    def order_owner(self, order_id: str) -> str | None:
        return self.db.execute(select(StoreOrder.user_id).where(StoreOrder.order_id == order_id)).scalar_one_or_none()

    def get_product_details(self, product_id: str) -> dict[str, Any]:
        return self._product(product_id)

    def get_item_details(self, item_id: str) -> dict[str, Any]:
        for product in self.db.execute(select(StoreProduct)).scalars():
            variant = product.doc["variants"].get(item_id)
            if variant is not None:
                return variant
        raise StoreError("Item not found")

    def list_all_product_types(self) -> dict[str, str]:
        rows = self.db.execute(select(StoreProduct.name, StoreProduct.product_id)).all()
        return dict(sorted((name, pid) for name, pid in rows))

    # -- writes --------------------------------------------------------------------------------
    def _save_order(self, row: StoreOrder, doc: dict[str, Any]) -> dict[str, Any]:
        row.doc = doc
        row.status = doc["status"]
        return doc

    def _save_user(self, row: StoreUser, doc: dict[str, Any]) -> None:
        row.doc = doc

    @staticmethod
    def _copy(doc: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(doc))  # a new object, so SQLAlchemy sees the change

    def _payment_method(self, user_doc: dict[str, Any], payment_method_id: str) -> dict[str, Any]:
        method = user_doc["payment_methods"].get(payment_method_id)
        if method is None:
            raise StoreError("Payment method not found")
        return method

    @staticmethod
    def _check_items(order: dict[str, Any], item_ids: list[str]) -> None:
        present = [item["item_id"] for item in order["items"]]
        for item_id in item_ids:
            if item_ids.count(item_id) > present.count(item_id):
                raise StoreError(f"Number of {item_id} not found.")

    def _price_difference(self, order: dict[str, Any], item_ids: list[str], new_item_ids: list[str]) -> tuple[float, list[dict[str, Any]]]:
        if len(item_ids) != len(new_item_ids):
            raise StoreError("The number of items to be exchanged should match.")
        diff, variants = 0.0, []
        for item_id, new_item_id in zip(item_ids, new_item_ids, strict=True):
            item = next(i for i in order["items"] if i["item_id"] == item_id)
            variant = self._product(item["product_id"])["variants"].get(new_item_id)
            if variant is None or not variant.get("available"):
                raise StoreError(f"New item {new_item_id} not found or available")
            diff += variant["price"] - item["price"]
            variants.append(variant)
        return round(diff, 2), variants

    def cancel_pending_order(self, order_id: str, reason: str) -> dict[str, Any]:
        row = self._order(order_id, lock=True)
        order = self._copy(row.doc)
        if order["status"] != "pending":
            raise StoreError("Non-pending order cannot be cancelled")
        if reason not in CANCEL_REASONS:
            raise StoreError("Invalid reason")
        user_row = self._user(order["user_id"], lock=True)
        user = self._copy(user_row.doc)
        refunds = []
        for payment in order["payment_history"]:
            refunds.append({"transaction_type": "refund", "amount": payment["amount"], "payment_method_id": payment["payment_method_id"]})
            method = user["payment_methods"].get(payment["payment_method_id"])
            if method is not None and method["source"] == "gift_card":
                method["balance"] = round(method["balance"] + payment["amount"], 2)
        order["status"] = "cancelled"
        order["cancel_reason"] = reason
        order["payment_history"].extend(refunds)
        self._save_user(user_row, user)
        return self._save_order(row, order)

    def modify_pending_order_address(self, order_id, address1, address2, city, state, country, zip):
        row = self._order(order_id, lock=True)
        order = self._copy(row.doc)
        if order["status"] != "pending":
            raise StoreError("Non-pending order cannot be modified")
        order["address"] = {"address1": address1, "address2": address2, "city": city, "country": country, "state": state, "zip": zip}
        return self._save_order(row, order)

    def modify_pending_order_items(self, order_id, item_ids, new_item_ids, payment_method_id):
        row = self._order(order_id, lock=True)
        order = self._copy(row.doc)
        if order["status"] != "pending":
            raise StoreError("Non-pending order cannot be modified")
        self._check_items(order, item_ids)
        diff, variants = self._price_difference(order, item_ids, new_item_ids)
        user_row = self._user(order["user_id"], lock=True)
        user = self._copy(user_row.doc)
        method = self._payment_method(user, payment_method_id)
        if method["source"] == "gift_card" and method["balance"] < diff:
            raise StoreError("Insufficient gift card balance to pay for the new item")
        order["payment_history"].append({"transaction_type": "payment" if diff > 0 else "refund", "amount": abs(diff), "payment_method_id": payment_method_id})
        if method["source"] == "gift_card":
            method["balance"] = round(method["balance"] - diff, 2)
        for item_id, variant in zip(item_ids, variants, strict=True):
            item = next(i for i in order["items"] if i["item_id"] == item_id)
            item["item_id"], item["price"], item["options"] = variant["item_id"], variant["price"], variant["options"]
        order["status"] = "pending (item modified)"
        self._save_user(user_row, user)
        return self._save_order(row, order)

    def modify_pending_order_payment(self, order_id, payment_method_id):
        row = self._order(order_id, lock=True)
        order = self._copy(row.doc)
        if order["status"] != "pending":
            raise StoreError("Non-pending order cannot be modified")
        user_row = self._user(order["user_id"], lock=True)
        user = self._copy(user_row.doc)
        method = self._payment_method(user, payment_method_id)
        history = order["payment_history"]
        if len(history) != 1 or history[0]["transaction_type"] != "payment":
            raise StoreError("There should be exactly one payment for a pending order")
        if history[0]["payment_method_id"] == payment_method_id:
            raise StoreError("The new payment method should be different from the current one")
        amount = history[0]["amount"]
        if method["source"] == "gift_card" and method["balance"] < amount:
            raise StoreError("Insufficient gift card balance to pay for the order")
        old_id = history[0]["payment_method_id"]
        history.extend(
            [
                {"transaction_type": "payment", "amount": amount, "payment_method_id": payment_method_id},
                {"transaction_type": "refund", "amount": amount, "payment_method_id": old_id},
            ]
        )
        if method["source"] == "gift_card":
            method["balance"] = round(method["balance"] - amount, 2)
        old = user["payment_methods"].get(old_id)
        if old is not None and old["source"] == "gift_card":
            old["balance"] = round(old["balance"] + amount, 2)
        self._save_user(user_row, user)
        return self._save_order(row, order)

    def modify_user_address(self, user_id, address1, address2, city, state, country, zip):
        row = self._user(user_id, lock=True)
        user = self._copy(row.doc)
        user["address"] = {"address1": address1, "address2": address2, "city": city, "country": country, "state": state, "zip": zip}
        self._save_user(row, user)
        return user

    def return_delivered_order_items(self, order_id, item_ids, payment_method_id):
        row = self._order(order_id, lock=True)
        order = self._copy(row.doc)
        if order["status"] != "delivered":
            raise StoreError("Non-delivered order cannot be returned")
        user = self._user(order["user_id"]).doc
        method = self._payment_method(user, payment_method_id)
        if method["source"] != "gift_card" and payment_method_id != order["payment_history"][0]["payment_method_id"]:
            raise StoreError("Payment method should be either the original payment method or a gift card")
        self._check_items(order, item_ids)
        order["status"] = "return requested"
        order["return_items"] = sorted(item_ids)
        order["return_payment_method_id"] = payment_method_id
        return self._save_order(row, order)

    def exchange_delivered_order_items(self, order_id, item_ids, new_item_ids, payment_method_id):
        row = self._order(order_id, lock=True)
        order = self._copy(row.doc)
        if order["status"] != "delivered":
            raise StoreError("Non-delivered order cannot be exchanged")
        self._check_items(order, item_ids)
        diff, _ = self._price_difference(order, item_ids, new_item_ids)
        user = self._user(order["user_id"]).doc
        method = self._payment_method(user, payment_method_id)
        if method["source"] == "gift_card" and method["balance"] < diff:
            raise StoreError("Insufficient gift card balance to pay for the price difference")
        order["status"] = "exchange requested"
        order["exchange_items"] = sorted(item_ids)
        order["exchange_new_items"] = sorted(new_item_ids)
        order["exchange_payment_method_id"] = payment_method_id
        order["exchange_price_difference"] = diff
        return self._save_order(row, order)

    # -- money -----------------------------------------------------------------------------------
    def refund_amount(self, operation: str, arguments: dict[str, Any]) -> float:
        try:
            if operation in ("cancel_pending_order", "modify_pending_order_payment"):  # the whole paid amount goes back
                order = self._order(arguments["order_id"]).doc
                return round(sum(p["amount"] for p in order["payment_history"] if p["transaction_type"] == "payment"), 2)
            if operation == "return_delivered_order_items":
                order = self._order(arguments["order_id"]).doc
                prices = []
                remaining = [dict(i) for i in order["items"]]
                for item_id in arguments.get("item_ids", []):
                    match = next((i for i in remaining if i["item_id"] == item_id), None)
                    if match is not None:
                        prices.append(match["price"])
                        remaining.remove(match)
                return round(sum(prices), 2)
            if operation in ("exchange_delivered_order_items", "modify_pending_order_items"):
                order = self._order(arguments["order_id"]).doc
                diff, _ = self._price_difference(order, list(arguments.get("item_ids", [])), list(arguments.get("new_item_ids", [])))
                return max(0.0, -diff)
        except (StoreError, KeyError, StopIteration):
            return 0.0  # the operation itself will refuse with the precise reason
        return 0.0


def state_hash(db: Session) -> str:
    """sha256 over every user, order and product document in key order: equal stores hash equal."""
    digest = hashlib.sha256()
    for doc in _docs(db):
        digest.update(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def _docs(db: Session) -> Iterator[dict]:
    """Every user, order and product document, each table in key order (one query per table, as they are read)."""
    yield from (row.doc for row in db.execute(select(StoreUser).order_by(StoreUser.user_id)).scalars())
    yield from (row.doc for row in db.execute(select(StoreOrder).order_by(StoreOrder.order_id)).scalars())
    yield from (row.doc for row in db.execute(select(StoreProduct).order_by(StoreProduct.product_id)).scalars())
