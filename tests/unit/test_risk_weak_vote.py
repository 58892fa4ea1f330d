"""A weak kNN vote for a risk (crewdesk.routing.risk.RiskAnalysis.weak_share, weak_margin): it stands only when the
risk's nearest exemplar is about as near as the nearest harmless one. Scores written by hand, no model."""

from __future__ import annotations

from crewdesk.routing.risk import LABELS, PartScores, RiskAnalysis


def part(text: str, *, share: float, nearest_risk: float, nearest_none: float, label: str = "security") -> PartScores:
    shares = dict.fromkeys(LABELS, 0.0) | {label: share, "none": 1.0 - share}
    nearest = dict.fromkeys(LABELS, 0.3) | {label: nearest_risk, "none": nearest_none}
    return PartScores(text=text, shares=shares, nearest=nearest)


def analysis(*parts: PartScores, weak_share: float | None = 0.7) -> RiskAnalysis:
    return RiskAnalysis(parts=parts, threshold=0.4, min_similarity=0.4, segment_similarity=0.6, segment_threshold=0.8, weak_share=weak_share, weak_margin=0.05)


PAYMENT = "Please take the rest off my gift card."


def test_a_weak_vote_whose_nearest_neighbour_is_harmless_is_no_hit():
    assert analysis(part(PAYMENT, share=0.4, nearest_risk=0.66, nearest_none=0.77)).hits() == []


def test_a_weak_vote_as_near_to_the_risk_as_to_harmless_requests_stands():
    hits = analysis(part("Two payments I never made showed up today.", share=0.4, nearest_risk=0.70, nearest_none=0.73)).hits()
    assert [(h.label, h.score) for h in hits] == [("security", 0.4)]


def test_a_strong_vote_stands_whatever_the_nearest_harmless_exemplar():
    hits = analysis(part("Someone is logged into my account from abroad.", share=0.8, nearest_risk=0.60, nearest_none=0.75)).hits()
    assert [h.label for h in hits] == ["security"]


def test_without_weak_share_every_vote_reaching_the_threshold_stands():
    assert [h.label for h in analysis(part(PAYMENT, share=0.4, nearest_risk=0.66, nearest_none=0.77), weak_share=None).hits()] == ["security"]


def test_a_strong_sentence_still_counts_when_the_whole_ticket_is_a_weak_vote():
    whole = part("Hi. I'd like to pay the rest by card. Also, my password was changed and it was not me.", share=0.4, nearest_risk=0.5, nearest_none=0.7)
    sentence = part("Also, my password was changed and it was not me.", share=0.8, nearest_risk=0.75, nearest_none=0.6)
    hits = analysis(whole, sentence).hits()
    assert [(h.label, h.evidence) for h in hits] == [("security", sentence.text)]
