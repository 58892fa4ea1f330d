"""Bitext's 27 intents -> ours (many to one). Judgement calls are marked; the rest follow the definitions in
schemas.INTENT_DEFINITIONS directly. Bitext has no examples for return_items, exchange_items, product_info or
technical_issue, nor for changing a pending order's address or payment, nor for disputed charges: those come from our
own seed examples (seed/examples.jsonl).

| Bitext intent | ours | note |
|---|---|---|
| cancel_order | cancel_order | |
| change_order | modify_order | |
| change_shipping_address | change_default_address | judgement: "change my address"; none of its 111 rows names an order, so not modify_order |
| set_up_shipping_address | change_default_address | judgement: "set up / submit a delivery address", no order named either |
| place_order | other | judgement: buying something is no support intent of ours |
| track_order | order_status | |
| delivery_options | order_status | judgement: mostly pre-sale ("do you ship to Seattle"), our definition includes delivery options |
| delivery_period | order_status | |
| check_cancellation_fee | billing_question | judgement: Bitext means early-termination fees, i.e. a fee |
| check_invoice | billing_question | |
| get_invoice | billing_question | |
| check_payment_methods | billing_question | |
| payment_issue | billing_question | judgement: "problems with payments" could be technical; read as charges |
| check_refund_policy | billing_question | |
| get_refund | billing_question | judgement: asks for money back, not to return items |
| track_refund | billing_question | |
| complaint | complaint | |
| review | complaint | judgement: reviews and feedback, also positive, share the complaint intent |
| contact_customer_service | human_handoff | |
| contact_human_agent | human_handoff | |
| create_account | account_help | |
| delete_account | account_help | |
| edit_account | account_help | |
| switch_account | account_help | |
| recover_password | account_help | |
| registration_problems | account_help | judgement: sign-up errors could be technical; account is where they are fixed |
| newsletter_subscription | account_help | |
"""

from __future__ import annotations

from crewdesk.routing.schemas import Intent

BITEXT_TO_INTENT: dict[str, Intent] = {
    "cancel_order": Intent.cancel_order,
    "change_order": Intent.modify_order,
    "change_shipping_address": Intent.change_default_address,  # judgement, see the table
    "set_up_shipping_address": Intent.change_default_address,
    "place_order": Intent.other,
    "track_order": Intent.order_status,
    "delivery_options": Intent.order_status,
    "delivery_period": Intent.order_status,
    "check_cancellation_fee": Intent.billing_question,
    "check_invoice": Intent.billing_question,
    "get_invoice": Intent.billing_question,
    "check_payment_methods": Intent.billing_question,
    "payment_issue": Intent.billing_question,
    "check_refund_policy": Intent.billing_question,
    "get_refund": Intent.billing_question,
    "track_refund": Intent.billing_question,
    "complaint": Intent.complaint,
    "review": Intent.complaint,
    "contact_customer_service": Intent.human_handoff,
    "contact_human_agent": Intent.human_handoff,
    "create_account": Intent.account_help,
    "delete_account": Intent.account_help,
    "edit_account": Intent.account_help,
    "switch_account": Intent.account_help,
    "recover_password": Intent.account_help,
    "registration_problems": Intent.account_help,
    "newsletter_subscription": Intent.account_help,
}
