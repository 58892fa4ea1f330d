"""The Stripe refund connector against a local HTTP server that stands in for api.stripe.com (unreachable
here) and asserts the exact requests the official SDK sends."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from crewdesk.connectors.base import StoreError
from crewdesk.connectors.stripe_payments import StripePayments
from crewdesk.errors import TransientError
from tests.helpers import JsonStandIn, http_stand_in


@pytest.fixture
def fake_stripe():
    seen: list[dict] = []
    responses: list[tuple[int, dict]] = []

    class Handler(JsonStandIn):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "form": parse_qs(body)})
            status, payload = (
                responses.pop(0)
                if responses
                else (200, {"id": "re_123", "object": "refund", "amount": int(parse_qs(body)["amount"][0]), "currency": "usd", "status": "succeeded"})
            )
            self.answer(status, payload)

    with http_stand_in(Handler) as url:
        yield url, seen, responses


def test_refund_request_is_exact(fake_stripe):
    base, seen, _ = fake_stripe
    payments = StripePayments(api_key="sk_test_abc", api_base=base)
    refund = payments.refund(payment_reference="pi_3Nx", amount_cents=53665, currency="usd", idempotency_key="key-1", reason="order #W1 cancelled")
    assert refund.id == "re_123" and refund.amount_cents == 53665 and refund.status == "succeeded"
    request = seen[0]
    assert request["path"] == "/v1/refunds"
    assert request["headers"]["authorization"] == "Bearer sk_test_abc"
    assert request["headers"]["idempotency-key"] == "key-1"
    assert request["form"] == {"amount": ["53665"], "payment_intent": ["pi_3Nx"], "metadata[crewdesk_reason]": ["order #W1 cancelled"]}


def test_refusals_and_transient_failures(fake_stripe):
    base, seen, responses = fake_stripe
    payments = StripePayments(api_key="sk_test_abc", api_base=base)
    responses.append((400, {"error": {"type": "invalid_request_error", "message": "Charge ch_9 has already been refunded."}}))
    with pytest.raises(StoreError, match="already been refunded"):
        payments.refund(payment_reference="ch_9", amount_cents=100, currency="usd", idempotency_key="k2", reason="r")
    assert seen[-1]["form"]["charge"] == ["ch_9"]
    responses.append((503, {"error": {"type": "api_error", "message": "down"}}))
    with pytest.raises(TransientError):
        payments.refund(payment_reference="ch_9", amount_cents=100, currency="usd", idempotency_key="k3", reason="r")
    with pytest.raises(StoreError, match="not a Stripe payment reference"):
        payments.refund(payment_reference="credit_card_123", amount_cents=100, currency="usd", idempotency_key="k4", reason="r")
    assert len(seen) == 2  # the invalid reference never left the process
