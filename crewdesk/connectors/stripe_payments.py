"""PaymentProvider on Stripe, through the official SDK: POST /v1/refunds with an Idempotency-Key."""

from __future__ import annotations

from typing import TYPE_CHECKING

import stripe

from crewdesk.connectors.base import PaymentProvider, Refund, StoreError
from crewdesk.errors import TransientError

if TYPE_CHECKING:
    from stripe.params import RefundCreateParams


class StripePayments(PaymentProvider):
    """`payment_reference` is a PaymentIntent (pi_...) or a Charge (ch_...)."""

    def __init__(self, *, api_key: str, api_base: str | None = None, max_network_retries: int = 0) -> None:
        # Retries stay with Celery (the ticket) and the idempotency key makes them safe at Stripe.
        self.client = stripe.StripeClient(api_key, max_network_retries=max_network_retries, base_addresses={"api": api_base} if api_base else None)

    def refund(self, *, payment_reference: str, amount_cents: int, currency: str, idempotency_key: str, reason: str) -> Refund:
        if amount_cents <= 0:
            raise StoreError("refund amount must be positive")
        params: RefundCreateParams = {"amount": amount_cents, "metadata": {"crewdesk_reason": reason[:500]}}
        if payment_reference.startswith("ch_"):
            params["charge"] = payment_reference
        elif payment_reference.startswith("pi_"):
            params["payment_intent"] = payment_reference
        else:
            raise StoreError(f"not a Stripe payment reference: {payment_reference!r}")
        try:
            refund = self.client.v1.refunds.create(params=params, options={"idempotency_key": idempotency_key})
        except stripe.APIConnectionError as exc:
            raise TransientError(f"stripe: {exc}") from exc
        except stripe.RateLimitError as exc:
            raise TransientError(f"stripe rate limit: {exc}") from exc
        except stripe.StripeError as exc:
            http_status = getattr(exc, "http_status", None)
            if http_status and http_status >= 500:
                raise TransientError(f"stripe: {exc}") from exc
            raise StoreError(f"stripe refused the refund: {exc.user_message or exc}") from exc
        return Refund(id=refund.id, status=refund.status, amount_cents=refund.amount, currency=refund.currency or currency)
