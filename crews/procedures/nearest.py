"""A loose product name met by meaning: "the hoover" is the customer's Vacuum Cleaner, "my trainers" their Running Shoes.

The catalogue's words (crewdesk/store/lexicon.yaml) name most products the way customers do; a clause that asks for
something and names nothing the lexicon knows comes here. Its short phrases (one to three words) are compared with the
names of the products in this customer's own orders, by all-MiniLM-L6-v2 vectors (offline, the embedder the router
already loaded). A product is found only when one of the customer's products is clearly nearer than the others: a
cosine of at least MIN_SCORE and MARGIN ahead of the next. What is found is a reading the customer confirms before
anything is written (crews/procedures/flow.py), never a write on its own.

The model is English; German, Spanish and French names are met by the lexicon, or not at all (README, Not done yet)."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Sequence

import numpy as np

from crewdesk.store.lexicon import fold
from crews.procedures.state import Item
from crews.procedures.wording import words

MIN_SCORE = 0.42
MARGIN = 0.08
_WORD = re.compile(r"[^\W\d_]{3,}")
# Words no product is named by; phrases made only of them are not compared.
_PLAIN = frozenset(
    words(
        "the and for with that this those these from have has had was were are got get one ones them they their its it's "
        "please could would should can you your our my mine just also really very too bit lot much more less thanks thank "
        "hello dear want wanted like need swap exchange return change cancel send back refund take keep order ordered item "
        "items thing things stuff same other another instead about because but not all any some which what when where who "
        "how there here then than into onto over under after before again still only even well good great fine"
    )
)

Embed = Callable[[Sequence[str]], list[list[float]]]


def phrases(text: str) -> list[str]:
    """The clause's runs of one to three words, those with a word that could name a thing."""
    said = _WORD.findall(fold(text))
    out: list[str] = []
    for size in (1, 2, 3):
        for n in range(len(said) - size + 1):
            run = said[n : n + size]
            if any(w not in _PLAIN for w in run):
                out.append(" ".join(run))
    return list(dict.fromkeys(out))


def nearest(text: str, items: list[Item], *, language: str | None = "en", embed: Embed | None = None) -> list[Item]:
    """The customer's items of the one product the clause's words are clearly nearest to, or none. Only for English:
    the model's vectors of German, Spanish or French words are noise ("casco de bici" lands nearest the sunglasses)."""
    if language not in (None, "en"):
        return []
    names = sorted({i.name for i in items})
    candidates = phrases(text)
    if not names or not candidates:
        return []
    vectors = _vectors([*names, *candidates], embed)
    scores = (vectors[len(names) :] @ vectors[: len(names)].T).max(axis=0)  # each product's best phrase
    order = np.argsort(-scores)
    best = float(scores[order[0]])
    runner_up = float(scores[order[1]]) if len(names) > 1 else 0.0
    if best < MIN_SCORE or best - runner_up < MARGIN:
        return []
    return [i for i in items if i.name == names[int(order[0])]]


@functools.cache
def _embedder():
    from crewdesk.memory.embeddings import local_embedder

    return local_embedder()


# Vectors by text, per process: the catalogue's product names come back on every ticket, and a clause the reader
# compared (reading._names_another) is compared again when the flow meets it (flow._met_by_meaning).
_CACHE: dict[str, np.ndarray] = {}
_CACHE_LIMIT = 20_000
_LOCK = threading.Lock()


def _vectors(texts: list[str], embed: Embed | None) -> np.ndarray:
    if embed is not None:  # a test's own embedder: nothing cached
        return np.asarray(embed(texts), dtype=np.float32)
    with _LOCK:
        missing = [t for t in dict.fromkeys(texts) if t not in _CACHE]
        if missing:
            if len(_CACHE) + len(missing) > _CACHE_LIMIT:
                _CACHE.clear()
            _CACHE.update(zip(missing, np.asarray(_embedder().embed_documents(missing), dtype=np.float32), strict=True))
        return np.stack([_CACHE[t] for t in texts])
