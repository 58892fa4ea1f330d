"""Whose records a ticket may touch: the customer its channel identified, or the one who proved who they are.

- The channel's identity comes first: the e-mail sender, the Jira reporter's e-mail, the backlog row's customer
  (`ticket.customer`). When the store knows that address, the ticket is bound to that customer before any tool runs,
  and no other identity can be taken up on this ticket.
- A channel that gives no identity the store knows (no address, or one the store has never seen) leaves the ticket
  unbound. The customer then proves who they are by the store's own rule (`find_user_id_by_email`, or name and zip
  with `find_user_id_by_name_zip`), once per ticket: the first customer found binds the ticket, a second is refused.
- Every operation on a customer's records (an argument `user_id` or `order_id`) is checked against the bound customer:
  before anyone is bound it is refused, and an order or account of another customer is refused, reads as well as
  writes. An order the store does not know passes, so that the store itself answers "not found".

How strong the identity is, per action (README, "Proof of identity"):

- `verified`: the channel vouches for the address that bound the ticket: an e-mail From with a DMARC pass from our own
  MTA (crewdesk.intake.email.authresults, recorded on every inbound message), the Jira reporter (Jira authenticated
  them), the customer an authenticated API caller or an operator's import names, the evaluation's and tests' own
  sources (VOUCHING_SOURCES);
- `claimed`: anything else: an e-mail From without that pass, an e-mail address or name and zip written in the text.

Reads take either. A write on a claimed identity is not made where the ticket's source is not in the
`identity_claimed_writes` setting (by default only the evaluations, whose tau2 policy authenticates by the text): the
gate puts it to a person as an approval (rule identity_unverified).

A refusal names its rule; the gate audits it and the agent sees the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crewdesk.connectors.base import RetailStore, StoreError

IDENTITY_OPERATIONS = frozenset({"find_user_id_by_email", "find_user_id_by_name_zip"})
# Sources whose ticket's customer address the channel itself vouches for: an authenticated API caller names it, Jira
# authenticated the reporter, an operator imported the file, the evaluations and tests made the ticket. E-mail vouches
# per message (a DMARC pass from our MTA); a backlog import (backlog_id) is an operator's whatever its source says.
VOUCHING_SOURCES = frozenset({"api", "jira", "file", "cli", "eval", "example", "test"})
PROVEN_BY = {"find_user_id_by_email": "an e-mail address written in the ticket", "find_user_id_by_name_zip": "a name and zip written in the ticket"}


@dataclass(frozen=True)
class Refusal:
    rule: str  # customer_binding | identity_unproven | identity_switch
    reason: str


@dataclass
class CustomerBinding:
    channel_email: str = ""
    channel_verified: bool = False  # the channel vouches for channel_email (see the module's docstring)
    user_id: str | None = None
    how: str = ""  # channel | find_user_id_by_email | find_user_id_by_name_zip
    _channel_checked: bool = False

    @classmethod
    def for_channel(cls, customer: str | None, *, verified: bool = False) -> CustomerBinding:
        address = " ".join((customer or "").split())
        return cls(channel_email=address if "@" in address else "", channel_verified=verified)

    @property
    def proof(self) -> str:
        """verified: bound by an address the channel vouches for; claimed: bound by anything else (or not bound)."""
        return "verified" if self.user_id is not None and self.how == "channel" and self.channel_verified else "claimed"

    def proven_by(self) -> str:
        if self.how == "channel":
            return "the channel's address, which the channel does not vouch for (an e-mail From without our MTA's DMARC pass)"
        return PROVEN_BY.get(self.how, "nothing yet")

    def resolve_channel(self, store: RetailStore | None) -> None:
        """Bind to the customer the channel's address names, once, if the store knows it."""
        if self._channel_checked or store is None:
            return
        self._channel_checked = True
        if self.user_id is None and self.channel_email:
            try:
                self.user_id, self.how = str(store.find_user_id_by_email(self.channel_email)), "channel"
            except StoreError:
                pass  # an address the store has never seen identifies nobody: the customer proves who they are

    @staticmethod
    def scoped(operation: str, arguments: dict[str, Any]) -> bool:
        return operation not in IDENTITY_OPERATIONS and ("user_id" in arguments or "order_id" in arguments)

    def check(self, store: RetailStore | None, operation: str, arguments: dict[str, Any]) -> Refusal | None:
        """Before an operation runs: may this ticket touch the records it names?"""
        self.resolve_channel(store)
        if not self.scoped(operation, arguments) or store is None:
            return None
        if self.user_id is None:
            return Refusal(
                "identity_unproven", "the customer has not been identified on this ticket: find them first by their e-mail, or by first name, last name and zip"
            )
        owner = arguments.get("user_id")
        if owner is None:
            owner = store.order_owner(str(arguments["order_id"]))
            if owner is None:
                return None  # no such order: the store says so
        if str(owner) != self.user_id:
            what = f"order {arguments['order_id']}" if "order_id" in arguments else f"account {arguments['user_id']}"
            return Refusal(
                "customer_binding",
                f"{what} belongs to another customer, not to the customer of this ticket ({self.source()}); it cannot be read or changed here",
            )
        return None

    def found(self, operation: str, user_id: Any) -> Refusal | None:
        """After an identity lookup found `user_id`: bind the ticket to it, or refuse a second identity."""
        if operation not in IDENTITY_OPERATIONS or not isinstance(user_id, str) or not user_id:
            return None
        if self.user_id is None:
            self.user_id, self.how = user_id, operation
            return None
        if user_id != self.user_id:
            return Refusal("identity_switch", f"this ticket is bound to one customer ({self.source()}); another customer's account cannot be used on it")
        return None

    def source(self) -> str:
        return "identified by the channel's sender" if self.how == "channel" else "who proved who they are on this ticket"
