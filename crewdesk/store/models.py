"""Tables: store_users, store_orders, store_products. Each row keeps the upstream document as JSON,
so operations follow the upstream semantics exactly and the end state can be hashed."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from crewdesk.db import Base, JSONType


class StoreUser(Base):
    __tablename__ = "store_users"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    doc: Mapped[dict] = mapped_column(JSONType)


class StoreOrder(Base):
    __tablename__ = "store_orders"

    order_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32))
    doc: Mapped[dict] = mapped_column(JSONType)


class StoreProduct(Base):
    __tablename__ = "store_products"

    product_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    doc: Mapped[dict] = mapped_column(JSONType)
