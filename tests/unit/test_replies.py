"""The procedures' reply (crews/procedures/replies.py, `compose`): what it says once. The sentences are made up for this
test; none is from an evaluation set."""

from __future__ import annotations

from pathlib import Path

from crews.procedures.replies import compose
from crews.procedures.spec import load_replies
from crews.procedures.state import Outcome

REPLIES = load_replies(Path(__file__).resolve().parents[2] / "tasks" / "procedures")


def test_a_request_is_quoted_back_once_when_subject_and_body_say_it_and_several_procedures_found_it_unclear():
    """A subject is the body's first sentence cut short, and one clause can be unclear for cancel and for return: the
    reply used to quote the same request four times."""
    full = "I took up painting and want to cancel or return everything that has nothing to do with it."
    cut = full[:60]
    outcomes = [
        Outcome(intent="cancel_order", kind="unclear", detail={"said": cut}),
        Outcome(intent="return_items", kind="unclear", detail={"said": cut}),
        Outcome(intent="cancel_order", kind="unclear", detail={"said": full}),
        Outcome(intent="return_items", kind="unclear", detail={"said": full}),
        Outcome(intent="cancel_order", kind="unclear", detail={"said": "And the blue one too."}),
    ]
    reply = compose(replies=REPLIES, language="en", outcomes=outcomes, customer=None, identified=True)
    assert reply.count("took up painting") == 1, reply
    assert full.rstrip(".") in reply and "And the blue one too" in reply  # the whole request, and the other one
