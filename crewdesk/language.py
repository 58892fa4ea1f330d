"""Which language a customer wrote in, detected (lingua, offline, no model call) rather than guessed by the model.
Restricted to the languages crewdesk has reply templates for, plus a few neighbours so that those are not mistaken."""

from __future__ import annotations

import threading
from functools import cache

SUPPORTED = ("en", "de", "es", "fr", "it", "pt", "nl")
_lock = threading.Lock()


@cache
def _detector():
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    codes = [getattr(IsoCode639_1, code.upper()) for code in SUPPORTED]
    return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_preloaded_language_models().build()


def detect(text: str, default: str = "en") -> str:
    """ISO 639-1 code of `text`; `default` when it is too short or too mixed to tell."""
    words = [w for w in text.split() if any(c.isalpha() for c in w)]
    if len(words) < 3:
        return default
    with _lock:
        found = _detector().detect_language_of(text)
    return found.iso_code_639_1.name.lower() if found is not None else default
