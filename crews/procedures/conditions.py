"""What the customer wants when their first wish cannot be met. Customers write their fallback beside the request: "if
there is no clicky one, only exchange the thermostat", "if that is not possible, cancel the whole order", "if you cannot
refund it to my card, transfer me to a person". Those sentences are taken out of the request (so their words do not
steer the first attempt), each is tied to the request it follows, and it is used only when that request was refused by
the policy or found nothing that fits.

A fallback's consequence is read in code:
  handoff  "... a human / representative / a real person": hand the ticket over;
  nothing  "... do not do anything", "no cancellation at all", "keep the order": leave it, and say why;
  redo     anything else: the same procedures run again on the consequence ("only exchange the thermostat", "cancel the
           whole order", "refund to the gift card", "I would go for no backlight") in the scope of what failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
# A condition that says the first wish failed: "if ... not / no / cannot / unavailable ...", "otherwise", "if not".
_NEGATED = (
    r"(?:not (?:be )?(?:possible|available|allowed|found|work|exist|in stock)|\bno\b[^,.]{0,40}\b(?:available|possible|way|option|exact)|"
    r"\bno (?:such )?\w+ (?:that|which|with)\b|there (?:is|are) no\b|cannot|can't|can not|unable|impossible|unavailable|doesn't (?:work|allow|exist)|"
    r"(?:does|do|did|is|are|will) not (?:work|allow|exist)|isn't (?:possible|available)|aren't (?:possible|available)|fails?\b)"
)
# The consequence starts after the comma that is followed by who acts or what to do.
_THEN = (
    r",\s*(?:then\s+)?(?=(?:you|i|i'd|i'll|you'd|we|just|please|only|simply|cancel|return|exchange|keep|transfer|ask|get|tell|change|modify|"
    r"refund|go|use|no|do|don't|agree|say|mention|see|proceed|leave|forget)\b)"
)
_IF_NOT = re.compile(rf"^(?:but |and |however,? )?(?:if|in case|should)\b(?P<cond>.*?{_NEGATED}.*?){_THEN}(?P<then>.+)$", re.I | re.S)
_OTHERWISE = re.compile(r"^(?:but |and )?(?:otherwise|if not|failing that|else|if that fails|if that doesn't work),?\s+(?:then\s+)?(?P<then>.+)$", re.I | re.S)
# A fallback inside a sentence: "I prefer an exchange, but if it is not available just return it".
_INNER = re.compile(rf"[,;]?\s+(?:but|and)\s+(?=if\b[^,]*?{_NEGATED}[^,]*,)", re.I)

HANDOFF = re.compile(
    r"\bhuman\b|representative|real person|\ba person\b|supervisor|manager|transfer|Mitarbeiter|persona real|humano|une personne|conseiller", re.I
)
NOTHING = re.compile(
    r"^(?:then )?no (?:\w+ )?(?:cancel|exchang|return|chang|modif)\w*\b|do(?:n't| not) do anything|not do anything|do nothing|no (?:\w+ )?(?:cancel|exchange|return|change|modification)\w* at all|"
    r"keep (?:the|that|this|my) order|(?:tell .{0,20})?not to do it|leave it|nothing (?:else )?(?:should|to) (?:be )?(?:do|change)",
    re.I,
)

# "cancel the whole order", "return everything on that order": the fallback's scope is the failed items' whole orders.
WHOLE = re.compile(r"\b(whole|entire|all of (?:the|that) order|everything (?:on|in|from) (?:that|the|this) order|(?:the|that|this) (?:whole )?order)\b", re.I)


@dataclass
class Fallback:
    condition: str
    then: str
    anchor: int  # index of the sentence (request or earlier fallback) it follows
    index: int  # its own sentence index

    @property
    def kind(self) -> str:
        if HANDOFF.search(self.then):
            return "handoff"
        if NOTHING.search(self.then):
            return "nothing"
        return "redo"


@dataclass
class Reading:
    """The ticket split into what is asked first and what to do if that cannot be done."""

    sentences: list[str]
    fallbacks: list[Fallback] = field(default_factory=list)

    @property
    def request(self) -> str:
        """The ticket without its fallback sentences: what the first attempt reads."""
        skipped = {f.index for f in self.fallbacks}
        return "\n".join(s for i, s in enumerate(self.sentences) if i not in skipped)  # one per line: the reader splits clauses there

    def anchor_text(self, fallback: Fallback) -> str:
        return self.sentences[fallback.anchor]

    def after(self, anchor: int) -> list[Fallback]:
        return [f for f in self.fallbacks if f.anchor == anchor]


def _split(text: str) -> list[str]:
    sentences: list[str] = []
    for sentence in _SENTENCE.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        parts = _INNER.split(sentence)
        sentences.extend(p.strip() for p in parts if p.strip())
    return sentences


def read(text: str) -> Reading:
    sentences = _split(text)
    fallbacks: list[Fallback] = []
    last_request = -1
    for index, sentence in enumerate(sentences):
        match = _IF_NOT.match(sentence) or _OTHERWISE.match(sentence)
        if match is None or last_request < 0:
            last_request = index
            continue
        then = match.group("then").strip()
        condition = match.groupdict().get("cond") or ""
        anchor = fallbacks[-1].index if fallbacks and fallbacks[-1].index == index - 1 and _chains(condition, fallbacks[-1]) else last_request
        fallbacks.append(Fallback(condition=condition.strip(), then=then, anchor=anchor, index=index))
    return Reading(sentences=sentences, fallbacks=fallbacks)


def _chains(condition: str, previous: Fallback) -> bool:
    """ "If 9 bar is not possible, 7 bar" after "If 8 bar is not possible, 9 bar": the condition speaks of the previous
    fallback's own wish (shares a word with it), so it applies when that fallback fails too."""
    words = {w.lower() for w in re.findall(r"[^\W_]{2,}", previous.then)} - {"you", "want", "the", "would", "then", "just", "and", "is"}
    return bool(words & {w.lower() for w in re.findall(r"[^\W_]{2,}", condition)}) or bool(re.search(r"\b(that|this|it)\b", condition, re.I))
