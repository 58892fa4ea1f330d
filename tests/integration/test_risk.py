"""Risk detection (issue 13): the escalation regexes as a fast first pass, the MiniLM risk classifier
(crewdesk/routing/risk.py, the real all-MiniLM-L6-v2, offline) deciding the rest, combined by rules.detect; and
escalation_hits with and without `risk=`. The classifier is the shipped one, as bench/risk.py measures it. The
phrasings tested below are ours, and none given to the classifier is one of its exemplars; the two from the issue are
quoted from it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from crewdesk.db import transaction
from crewdesk.routing.examples import bitext_examples
from crewdesk.routing.risk import BITEXT_EVAL_EVERY, LABELS, RISK_LABELS, PartScores, RiskAnalysis, RiskClassifier, own_examples
from crewdesk.tickets import rules
from crewdesk.tickets.models import Ticket

ROOT = Path(__file__).resolve().parents[2]
EVAL = ROOT / "bench" / "risk_eval.jsonl"

STOLEN_CARD = "My credit card has been stolen"  # the plain wording the security regex misses
LAWYER_RECOMMENDED = "I bought this desk on a recommendation from my lawyer and I love it, do you sell a matching chair?"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """The shipped classifier (all its exemplars; embedding them takes ~40 s on one thread, once per module)."""
    return RiskClassifier(cache_dir=tmp_path_factory.mktemp("risk-cache"))


def rules_of(hits) -> set[str]:
    return {hit.rule for hit in hits}


class Says:
    """Stands in for the classifier: every part of every text gets the same vote shares; the nearest harmless exemplar
    is `margin` nearer (cosine) than the nearest of any risk."""

    def __init__(self, margin: float = 0.3, **shares: float) -> None:
        self.shares = {label: shares.get(label, 0.0) for label in LABELS}
        self.nearest = {label: 0.9 if label == "none" else 0.9 - margin for label in LABELS}

    def analyse(self, text: str) -> RiskAnalysis:
        part = PartScores(text=text, shares=self.shares, nearest=self.nearest)
        return RiskAnalysis(parts=(part,), threshold=0.4, min_similarity=0.4, segment_similarity=0.5)


class Broken:
    def analyse(self, text: str) -> RiskAnalysis:
        raise RuntimeError("model file missing")


# -- the two examples -------------------------------------------------------------------------------------------


def test_stolen_card_in_plain_words_is_a_security_risk(classifier):
    assert "security" not in rules_of(rules.scan_text(STOLEN_CARD))  # the regexes alone miss it
    hits = rules.detect(STOLEN_CARD, classifier)
    security = [hit for hit in hits if hit.rule == "security"]
    assert security and security[0].score is not None and security[0].score >= classifier.threshold
    assert "risk classifier" in str(security[0])


def test_a_lawyers_recommendation_is_not_a_legal_threat(classifier):
    assert "legal_threat" in rules_of(rules.scan_text(LAWYER_RECOMMENDED))  # the regex trips on "lawyer"
    assert rules.ambiguous_only("legal_threat", LAWYER_RECOMMENDED)
    assert rules.detect(LAWYER_RECOMMENDED, classifier) == []


@pytest.mark.parametrize(
    "text",
    [
        "Do the court shoes come in navy?",
        "My parcel was taken from the doorstep, can you send another one?",
        "This bug is killing me, the invoice PDF won't download.",
        "I lost my password, how do I reset it?",
    ],
)
def test_harmless_look_alikes_raise_nothing(classifier, text):
    assert rules.detect(text, classifier) == []


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("If the refund isn't back by Monday my lawyer will be in touch.", "legal_threat"),  # near Bitext's refund rows: stands
        ("Fix this now or I will sue you.", "legal_threat"),
        ("Somebody else has been logging into my account and ordering things.", "security"),
        ("Your update deleted all of my saved documents.", "data_loss"),
    ],
)
def test_real_risks_stay_caught(classifier, text, rule):
    assert rule in rules_of(rules.detect(text, classifier))


# -- self-harm and threats --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("I want to kill myself.", "self_harm"),
        ("Honestly I have been thinking about suicide.", "self_harm"),
        ("Ich will mich umbringen.", "self_harm"),
        ("I will kill you if this isn't fixed.", "threat"),
        ("I know where you live.", "threat"),
        ("Te voy a matar.", "threat"),
    ],
)
def test_the_fast_pass_has_self_harm_and_threat_rules(text, rule):
    assert rule in rules_of(rules.scan_text(text))
    assert rules.detect(text) == rules.scan_text(text)  # no classifier: the regexes alone


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("I don't think I can carry on any more. I have decided to end my life this weekend.", "self_harm"),
        ("Sorry, I have nothing left. Nobody would even notice if I was gone.", "self_harm"),
        ("Everything feels pointless and I want to hurt myself.", "self_harm"),
        ("Hello. Order 4471 is late again. If it isn't here tomorrow I'm coming to your warehouse and your workers will get hurt.", "threat"),
        ("Tell your courier that if he comes to my street again I will break his arms.", "threat"),
        ("I'm going to burn your shop down.", "threat"),
    ],
)
def test_self_harm_and_threats_in_plain_words_are_caught(classifier, text, rule):
    assert rule in rules_of(rules.detect(text, classifier))


# -- the combined design's rules --------------------------------------------------------------------------------------


def test_a_confident_none_overrules_only_an_ambiguous_word():
    confident_none = Says(none=1.0)
    assert rules.detect("The court shoes arrived scuffed.", confident_none) == []  # "court": ambiguous
    assert rules_of(rules.detect("I will sue you for this.", confident_none)) == {"legal_threat"}  # "sue" stands
    assert rules_of(rules.detect("My lawyer says I should sue you.", confident_none)) == {"legal_threat"}  # one strong word is enough
    assert rules_of(rules.detect("I want to kill myself.", confident_none)) == {"self_harm"}  # never overruled
    assert rules_of(rules.detect("The site is down, outage since 9am.", confident_none)) == {"urgent_outage"}
    # Not confident enough, by vote or by margin: the regex hit stands.
    assert rules_of(rules.detect("The court shoes arrived scuffed.", Says(none=0.7, legal_threat=0.3))) == {"legal_threat"}
    assert rules_of(rules.detect("The court shoes arrived scuffed.", Says(margin=0.05, none=1.0))) == {"legal_threat"}


def test_the_classifier_adds_what_the_regexes_miss_and_keeps_what_they_find():
    hits = rules.detect("I'll drop by your office.", Says(threat=0.8, none=0.2))
    assert [(h.rule, h.score) for h in hits] == [("threat", 0.8)]
    both = rules.detect("My lawyer will contact you.", Says(legal_threat=0.9, none=0.1))
    assert [(h.rule, h.score) for h in both] == [("legal_threat", None)]  # the regex hit, not a second one


def test_a_broken_classifier_leaves_the_regexes():
    assert rules.detect("I will sue you.", Broken()) == rules.scan_text("I will sue you.")


# -- escalation_hits ----------------------------------------------------------------------------------------------------


def test_escalation_hits_without_risk_scans_with_the_regexes_as_before(session_factory, make_ticket):
    ticket_id = make_ticket(body=LAWYER_RECOMMENDED, subject="Chair")
    with transaction(session_factory) as db:
        ticket = db.get(Ticket, ticket_id)
        assert ticket is not None
        before = rules.escalation_hits(db=db, ticket=ticket, triage=None, repeat_days=7, repeat_threshold=2)
        assert before == rules.scan_text(f"{ticket.subject}\n{ticket.body}") and rules_of(before) == {"legal_threat"}


def test_escalation_hits_with_risk_uses_it_instead(session_factory, make_ticket, classifier):
    make_ticket(body="Where is my order?")
    ticket_id = make_ticket(body=f"{LAWYER_RECOMMENDED} This is unacceptable!!! I already told you.", subject="Chair")
    seen: list[str] = []

    def risk(text: str) -> list[rules.RuleHit]:
        seen.append(text)
        return rules.detect(text, classifier)

    with transaction(session_factory) as db:
        ticket = db.get(Ticket, ticket_id)
        assert ticket is not None
        hits = rules.escalation_hits(db=db, ticket=ticket, triage=None, repeat_days=7, repeat_threshold=2, risk=risk)
        assert seen == [f"Chair\n{ticket.body}"]
        assert rules_of(hits) == {"angry_repeat_contact"}  # the lawyer is overruled; the repeat rule is unchanged
        check = rules.risk_check(classifier)
        assert rules_of(rules.escalation_hits(db=db, ticket=ticket, triage=None, repeat_days=7, repeat_threshold=2, risk=check)) == rules_of(hits)


# -- the data -------------------------------------------------------------------------------------------------------------


def test_the_evaluation_set_is_apart_from_the_exemplars():
    rows = [json.loads(line) for line in EVAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    positives = Counter(label for row in rows for label in row["labels"])
    assert set(positives) == set(RISK_LABELS) and min(positives.values()) >= 25
    assert {STOLEN_CARD, LAWYER_RECOMMENDED} <= {row["text"] for row in rows}
    exemplars = own_examples()
    assert not {row["text"] for row in rows} & {e.text for e in exemplars}
    assert {e.label for e in exemplars} == set(LABELS) and {e.lang for e in exemplars} == {"en", "de", "es", "fr"}
    # The Bitext rows in the evaluation are exactly the ones the classifier leaves out of its exemplars.
    held_out = [e.text for i, e in enumerate(bitext_examples()) if i % BITEXT_EVAL_EVERY == 0]
    assert [row["text"] for row in rows if row["kind"] == "bitext"] == held_out
    assert not set(held_out) & {e.text for e in RiskClassifier(vectors=None).examples}
