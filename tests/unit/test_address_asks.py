"""What a ticket asks of addresses (crews/procedures/address.py, asks): a new address for an order, and the account's
default only when the customer asks for it, not when they say to leave it. The sentences are written for this test;
none is from an evaluation set."""

from __future__ import annotations

from pathlib import Path

import pytest

from crews.procedures import address, wording

VOCABULARY = wording.load(Path(__file__).resolve().parents[2] / "tasks" / "procedures")


@pytest.mark.parametrize(
    ("text", "language", "default"),
    [
        ("Please send my open order to 12 Oak Lane, Austin, TX 78701. Please also update my account with it.", "en", True),
        ("Please send my open order to 12 Oak Lane, Austin, TX 78701. Don't change my account, it's only for a week.", "en", False),
        ("Bitte schicken Sie die offene Bestellung an 12 Oak Lane, Austin, TX 78701. Das Kundenkonto bitte nicht ändern.", "de", False),
        ("Envíen el pedido a 12 Oak Lane, Austin, TX 78701, pero no cambien la dirección de mi cuenta.", "es", False),
        ("Envoyez la commande au 12 Oak Lane, Austin, TX 78701. Ne changez pas l'adresse de mon compte.", "fr", False),
    ],
)
def test_the_accounts_address_changes_only_when_asked_not_when_the_customer_says_to_leave_it(text, language, default):
    asked = address.asks(text, VOCABULARY, language)
    assert asked.orders and asked.default is default
