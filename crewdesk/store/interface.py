"""The system of record's interface, which the store's operations run against: a connector (the built-in
`SqlRetailStore`, a company's own order system) implements it, and the crew and tools call it. It lives with the store
domain, below the connectors, so that the operations need no connector; crewdesk.connectors.base re-exports it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from crewdesk.errors import CrewdeskError


class StoreError(CrewdeskError):
    """The system of record refused an operation (not found, wrong status, policy); the agent sees the message."""


READ = "read"
WRITE = "write"


class RetailStore(ABC):
    """Customers, orders and products, with the operations a support agent may take (tau2-bench retail)."""

    @abstractmethod
    def find_user_id_by_email(self, email: str) -> str: ...
    @abstractmethod
    def find_user_id_by_name_zip(self, first_name: str, last_name: str, zip: str) -> str: ...
    @abstractmethod
    def get_user_details(self, user_id: str) -> dict[str, Any]: ...
    @abstractmethod
    def get_order_details(self, order_id: str) -> dict[str, Any]: ...
    @abstractmethod
    def get_product_details(self, product_id: str) -> dict[str, Any]: ...
    @abstractmethod
    def get_item_details(self, item_id: str) -> dict[str, Any]: ...
    @abstractmethod
    def list_all_product_types(self) -> dict[str, str]: ...
    @abstractmethod
    def cancel_pending_order(self, order_id: str, reason: str) -> dict[str, Any]: ...
    @abstractmethod
    def modify_pending_order_address(self, order_id: str, address1: str, address2: str, city: str, state: str, country: str, zip: str) -> dict[str, Any]: ...
    @abstractmethod
    def modify_pending_order_items(self, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str) -> dict[str, Any]: ...
    @abstractmethod
    def modify_pending_order_payment(self, order_id: str, payment_method_id: str) -> dict[str, Any]: ...
    @abstractmethod
    def modify_user_address(self, user_id: str, address1: str, address2: str, city: str, state: str, country: str, zip: str) -> dict[str, Any]: ...
    @abstractmethod
    def return_delivered_order_items(self, order_id: str, item_ids: list[str], payment_method_id: str) -> dict[str, Any]: ...
    @abstractmethod
    def exchange_delivered_order_items(self, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str) -> dict[str, Any]: ...

    def order_owner(self, order_id: str) -> str | None:
        """The user id an order belongs to, or None when there is no such order (the gate binds tickets to customers)."""
        try:
            return str(self.get_order_details(order_id)["user_id"])
        except (StoreError, KeyError):
            return None

    @abstractmethod
    def refund_amount(self, operation: str, arguments: dict[str, Any]) -> float:
        """Money that would go back to the customer if `operation` ran now (approval thresholds)."""
