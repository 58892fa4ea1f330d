"""Personal data never reaches a model: the prompts are captured and searched for it."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from crewdesk.audit.models import AuditEvent
from crewdesk.llm.scripted import PlanResponder
from crewdesk.pii import Vault, find
from crewdesk.tickets.models import Ticket
from crews.pipeline import Pipeline
from tests.helpers import RecordingFactory

EMAIL = "noah.brown7922@example.com"  # a real customer of the demo store
PHONE = "+1 (415) 555-0134"
CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
ADDRESS = "986 Sunset Drive"


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        (f"mail {EMAIL} now", ["EMAIL"]),
        (f"call {PHONE} or phone 4155550134", ["PHONE", "PHONE"]),
        (f"card {CARD}; not a card: 4111 1111 1111 1112", ["CARD"]),  # Luhn-checked
        (f"IBAN {IBAN}", ["IBAN"]),
        (f"ship to {ADDRESS}, Suite 259", ["ADDRESS"]),
        ("order #W2611340 item 6469567736 product 8310926033", []),  # store ids are not phone numbers
    ],
)
def test_detection(text, labels):
    assert [span.label for span in find(text)] == labels


def test_tokens_round_trip_and_persist(session_factory, make_ticket):
    ticket_id = make_ticket("x")
    vault = Vault(session_factory=session_factory, ticket_id=ticket_id)
    text = f"{EMAIL} / {PHONE} / {EMAIL}"
    concealed = vault.conceal(text)
    assert concealed == "<EMAIL_1> / <PHONE_1> / <EMAIL_1>"
    again = Vault(session_factory=session_factory, ticket_id=ticket_id)  # a resumed run, another process
    assert again.reveal(concealed) == text
    assert again.conceal(EMAIL) == "<EMAIL_1>"


def test_no_raw_pii_in_any_prompt_and_tools_still_work(settings, store, make_ticket):
    session_factory = store
    body = (
        f"Hello, my email is {EMAIL} and my phone is {PHONE}. I paid with card {CARD}, refunds to IBAN {IBAN} please. "
        f"My address is {ADDRESS}, Denver. What is the status of my orders?"
    )
    plan = PlanResponder(
        triage={"category": "billing", "priority": "normal", "summary": "order status", "confidence": 0.9},
        plans={"billing": [("find_user_id_by_email", {"email": "<EMAIL_1>"}), ("get_user_details", {"user_id": "noah_brown_6181"})]},
        finals={"billing": {"customer_reply": "Hi! We found your account for <EMAIL_1>; your order #W7678072 is on its way.", "needs_human": False}},
    )
    factory = RecordingFactory(settings, responder=plan)
    ticket_id = make_ticket(body, customer=EMAIL)
    outcome = Pipeline(settings=settings, session_factory=session_factory, llm_factory=factory).process(ticket_id)

    assert outcome.status == "resolved"
    prompts = factory.prompts_text()
    assert "<EMAIL_1>" in prompts and "<CARD_1>" in prompts and "<PHONE_1>" in prompts and "<IBAN_1>" in prompts and "<ADDRESS_1>" in prompts
    for raw in (EMAIL, PHONE, CARD, CARD.replace(" ", ""), IBAN, ADDRESS):
        assert raw not in prompts, f"{raw!r} reached the model"
    assert "noah_brown_6181" in prompts  # the token resolved at the tool boundary: the lookup found the user
    with session_factory() as db:
        trail = json.dumps([[e.arguments, e.result, e.error] for e in db.execute(select(AuditEvent)).scalars()], default=str)
        reply = next(m.body for m in db.get(Ticket, ticket_id).messages if m.direction == "outbound")
    for raw in (EMAIL, PHONE, CARD, IBAN, ADDRESS):
        assert raw not in trail, f"{raw!r} was written to the audit trail"
    assert EMAIL in reply and "<EMAIL_1>" not in reply  # the customer gets real data back
