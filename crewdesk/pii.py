"""Personal data stays out of prompts: emails, phone numbers, card numbers (Luhn-checked), IBANs (checksum)
and street addresses become reversible tokens such as <EMAIL_1> before text reaches a model. Tokens are
resolved only at the tool boundary and in the reply sent to the customer. Detection uses presidio-analyzer's
pattern recognizers (no NLP model needed) plus one for street addresses."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from crewdesk.db import Base, transaction

TOKEN = re.compile(r"<(EMAIL|PHONE|CARD|IBAN|ADDRESS)_(\d+)>")
PHONE_REGIONS = ("US", "CA", "GB", "IE", "DE", "FR", "ES", "IT", "NL", "IN", "AU")
_LABEL = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CARD", "IBAN_CODE": "IBAN", "STREET_ADDRESS": "ADDRESS"}
_PRIORITY = {"CARD": 0, "IBAN": 1, "EMAIL": 2, "ADDRESS": 3, "PHONE": 4}  # a card number is not also a phone number


class PIIToken(Base):
    __tablename__ = "pii_tokens"
    __table_args__ = (UniqueConstraint("ticket_id", "token", name="uq_pii_tokens_ticket_token"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    token: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(Text)


@dataclass(frozen=True)
class Span:
    label: str
    start: int
    end: int


@cache
def _recognizers():
    import tldextract
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, EmailRecognizer, IbanRecognizer, PhoneRecognizer

    offline_tld = tldextract.TLDExtract(suffix_list_urls=())  # the bundled suffix list; never fetch it

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return bool(offline_tld(pattern_text).fqdn)

    street = PatternRecognizer(
        supported_entity="STREET_ADDRESS",
        patterns=[
            Pattern(
                "street_en",
                r"\b\d{1,6}\s+(?:[A-Z][A-Za-z'-]+\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Drive|Dr|Lane|Ln|Boulevard|Blvd|Court|Ct|Way|Place|Pl|Terrace|Parkway|Pkwy|Circle|Cir|Highway|Hwy)\b\.?",
                0.6,
            ),
            Pattern("street_de", r"\b[A-ZÄÖÜ][a-zäöüß]+(?:straße|strasse|weg|gasse|platz|allee)\s+\d{1,4}[a-z]?\b", 0.6),
        ],
    )
    return [OfflineEmailRecognizer(), PhoneRecognizer(supported_regions=PHONE_REGIONS), CreditCardRecognizer(), IbanRecognizer(), street]


_ID_CONTEXT = re.compile(r"\b(item|product|order|variant|article|sku|id)\s*(number|no\.?|#|id)?\s*:?\s*$", re.I)  # "item number 9844888101"
_PHONE_CONTEXT = re.compile(r"\b(phone|call|tel|mobile|cell|number|reach me|text me|whatsapp|telefon|handy)\b", re.I)


def _bare_digits_without_phone_context(text: str, span: Span) -> bool:
    """Order, item and product ids are bare digit runs too: count those as phones only near a phone word."""
    if span.label != "PHONE" or not text[span.start : span.end].isdigit():
        return False
    before = text[max(0, span.start - 30) : span.start]
    return not _PHONE_CONTEXT.search(before) or bool(_ID_CONTEXT.search(before))


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


@lru_cache(maxsize=512)
def _paragraph_spans(paragraph: str) -> tuple[Span, ...]:
    """What the recognizers find in one paragraph. Cached per process: a ticket's paragraphs come back in every phase's
    prompt and the task templates' in every ticket's, and the phone recognizer alone takes about 15 ms per 1,000
    characters."""
    spans = []
    for recognizer in _recognizers():
        for result in recognizer.analyze(paragraph, entities=recognizer.supported_entities, nlp_artifacts=None):
            if result.score >= 0.4:
                spans.append(Span(_LABEL[result.entity_type], result.start, result.end))
    return tuple(spans)


def _paragraphs(text: str) -> list[tuple[int, str]]:
    """(offset, paragraph) pieces of the text, split at blank lines (no e-mail, number or address spans one)."""
    pieces, start = [], 0
    for gap in _PARAGRAPH_BREAK.finditer(text):
        pieces.append((start, text[start : gap.start()]))
        start = gap.end()
    pieces.append((start, text[start:]))
    return [(offset, piece) for offset, piece in pieces if piece.strip()]


def find(text: str) -> list[Span]:
    """Non-overlapping personal-data spans, left to right. Recognizers run per paragraph (cached); the phone-context
    check reads the whole text around each span."""
    found: list[Span] = []
    for offset, paragraph in _paragraphs(text):
        for raw in _paragraph_spans(paragraph):
            span = Span(raw.label, raw.start + offset, raw.end + offset)
            if not _bare_digits_without_phone_context(text, span):
                found.append(span)
    found.sort(key=lambda s: (s.start, _PRIORITY[s.label], -(s.end - s.start)))
    kept: list[Span] = []
    for span in found:
        if not kept or span.start >= kept[-1].end:
            kept.append(span)
    return kept


class Vault:
    """Per-ticket token table. conceal() before the model, reveal() at the tool boundary and for the customer."""

    def __init__(self, *, session_factory: sessionmaker[Session] | None = None, ticket_id: int | None = None) -> None:
        self.session_factory = session_factory
        self.ticket_id = ticket_id
        self._by_value: dict[str, str] = {}
        self._by_token: dict[str, str] = {}
        self._lock = threading.Lock()
        if session_factory is not None and ticket_id is not None:
            with session_factory() as db:
                for row in db.execute(select(PIIToken).where(PIIToken.ticket_id == ticket_id)).scalars():
                    self._by_token[row.token] = row.value
                    self._by_value[row.value] = row.token

    def _token_for(self, label: str, value: str) -> str:
        with self._lock:
            token = self._by_value.get(value)
            if token is not None:
                return token
            number = 1 + sum(1 for t in self._by_token if t.startswith(f"<{label}_"))
            token = f"<{label}_{number}>"
            if self.session_factory is not None and self.ticket_id is not None:
                with transaction(self.session_factory) as db:
                    db.add(PIIToken(ticket_id=self.ticket_id, token=token, value=value))
            self._by_token[token] = value
            self._by_value[value] = token
            return token

    def _conceal_text(self, text: str) -> str:
        out, last = [], 0
        for span in find(text):
            out.append(text[last : span.start])
            out.append(self._token_for(span.label, text[span.start : span.end]))
            last = span.end
        out.append(text[last:])
        return "".join(out)

    def _reveal_text(self, text: str) -> str:
        return TOKEN.sub(lambda m: self._by_token.get(m.group(0), m.group(0)), text)

    def conceal(self, value: Any) -> Any:
        return _map_strings(value, self._conceal_text)

    def reveal(self, value: Any) -> Any:
        return _map_strings(value, self._reveal_text)


def _map_strings(value: Any, change) -> Any:
    """Apply `change` to every string inside dicts and lists; other values pass through."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {k: _map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, change) for v in value]
    return value
