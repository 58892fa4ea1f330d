"""Routing quality: one command, prints intent and category accuracy and macro-F1 per design on Bitext's train split.

  .venv/bin/python bench/routing.py [--folds 5] [--model-url http://127.0.0.1:8765/v1] [--model-sample 270] [--margin 0.3]

Stratified k-fold cross-validation on the packaged crewdesk/routing/bitext/train.jsonl: for each fold the embedding
router is rebuilt from the other k-1 folds plus our seed examples and never sees the fold it is scored on. Gold is
Bitext's label mapped to ours (crewdesk/routing/mapping.py); category follows from the intent. Macro-F1 is averaged
over the classes present in the gold labels. Printed per design:

- embedding: every row, through the router's full route() (query embedded on one torch thread, segments, cues);
  also accuracy on Bitext's own 27 intents (the best fine label), and a table of the classifier variants (kNN k, class
  centroids) scored on the whole text with the same folds, which is how the default was picked.
- model (one constrained call) and hybrid (embedding, the model breaking ties below --margin): need a model server
  (--model-url, OpenAI-compatible) and an LLM class with decide(); scored on a stratified sample of --model-sample rows
  (a 1.5B model on CPU takes 1-3 s per call), each row by the router of the fold it belongs to.

Then every design routes bench/routing_probes.jsonl, 30 tickets we wrote (English, German, Spanish; two asking two
things), none in Bitext or the seed examples, with a router built on all the examples: primary intent right, per
language, and all intents exactly right. --probes-only skips the cross-validation.

The example vectors are cached under --cache-dir (default bench/results/routing-cache), so a second run embeds only
the queries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CREWDESK_LOG_LEVEL", "WARNING")
warnings.filterwarnings("ignore")

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from crewdesk.errors import ModelOutputError
from crewdesk.memory.embeddings import local_embedder
from crewdesk.routing.embedding import EmbeddingRouter
from crewdesk.routing.examples import Example, bitext_examples, seed_examples
from crewdesk.routing.model import HybridRouter, LLMRouter
from crewdesk.routing.schemas import CATEGORY_OF, Intent

VALUES = {i.value for i in Intent}
PROBES = ROOT / "bench" / "routing_probes.jsonl"
VARIANTS = [("knn", 1), ("knn", 3), ("knn", 5), ("knn", 7), ("knn", 10), ("knn", 15), ("centroid", 0)]


def scores(gold: list[str], pred: list[str]) -> tuple[float, float]:
    accuracy = sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)
    return accuracy, float(f1_score(gold, pred, labels=sorted(set(gold)), average="macro", zero_division=0))


def report(name: str, gold: list[Example], intents: list[str], labels: list[str] | None, ms: list[float]) -> str:
    intent_acc, intent_f1 = scores([g.intent.value for g in gold], intents)
    cat_acc, cat_f1 = scores([CATEGORY_OF[g.intent].value for g in gold], [CATEGORY_OF[Intent(i)].value if i in VALUES else i for i in intents])
    fine = f"{scores([g.label for g in gold], labels)[0]:>10.3f}" if labels is not None else f"{'-':>10}"
    timing = f"{statistics.median(ms):>10.0f}" if ms else f"{'-':>10}"
    return f"{name:<18}{len(gold):>6}{intent_acc:>11.3f}{intent_f1:>11.3f}{cat_acc:>9.3f}{cat_f1:>9.3f}{fine}{timing}"


HEADER = f"{'design':<18}{'rows':>6}{'intent acc':>11}{'intent F1':>11}{'cat acc':>9}{'cat F1':>9}{'bitext-27':>10}{'ms/ticket':>10}"


def stratified_sample(rows: list[Example], n: int, seed: int) -> set[int]:
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_label[row.label].append(i)
    rng = np.random.default_rng(seed)
    per_label = max(1, n // len(by_label))
    return {int(i) for idx in by_label.values() for i in rng.choice(idx, size=min(per_label, len(idx)), replace=False)}


def model_llm(url: str | None):
    """The LLM for the model designs, or the reason there is none."""
    if not url:
        return None, "no --model-url given"
    import httpx

    try:
        httpx.get(url.rstrip("/") + "/models", timeout=5).raise_for_status()
    except Exception as exc:  # noqa: BLE001 - any failure means: not measured
        return None, f"no model server at {url} ({type(exc).__name__})"
    from crewdesk.llm.factory import LLMFactory
    from crewdesk.settings import LLMProvider, Settings

    llm = LLMFactory(Settings(home=Path(tempfile.mkdtemp(prefix="crewdesk-bench-routing-")), llm_provider=LLMProvider.local), base_url=url).build(tier="cheap")
    if not hasattr(llm, "decide"):
        return None, f"{type(llm).__name__} has no decide() yet"
    return llm, ""


def intents_of(route, text: str) -> list[str]:
    """The route's intents, or ["error"] when the model's answer could not be read (it counts as wrong)."""
    try:
        return [i.value for i in route(text).intents]
    except ModelOutputError:
        return ["error"]


def probe_report(name: str, route, probes: list[dict]) -> str:
    right: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    exact = 0
    for probe in probes:
        intents = intents_of(route, probe["text"])
        right[probe["lang"]][0] += intents[0] in probe["intents"]
        right[probe["lang"]][1] += 1
        exact += set(intents) == set(probe["intents"])
    langs = ", ".join(f"{lang} {ok}/{n}" for lang, (ok, n) in right.items())
    return f"{name:<18}primary right: {langs}; all intents exactly right: {exact}/{len(probes)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-url", default=os.environ.get("CREWDESK_ROUTING_MODEL_URL", ""), help="OpenAI-compatible base URL of a running model server")
    parser.add_argument("--model-sample", type=int, default=270, help="rows scored by the model designs (stratified)")
    parser.add_argument("--margin", type=float, default=0.3, help="hybrid: the model breaks ties below this embedding margin")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / "results" / "routing-cache")
    parser.add_argument("--no-variants", action="store_true", help="skip the classifier-variant table")
    parser.add_argument("--probes-only", action="store_true", help="only route the probe tickets, no cross-validation")
    args = parser.parse_args()

    rows, seeds = bitext_examples(), seed_examples()
    embedder = local_embedder()
    started = time.perf_counter()
    everything = EmbeddingRouter(rows + seeds, embedder=embedder, cache_dir=args.cache_dir)
    bitext_vectors, seed_vectors = everything.vectors[: len(rows)], everything.vectors[len(rows) :]
    print(
        f"examples: {len(rows)} Bitext rows ({len({r.label for r in rows})} intents) + {len(seeds)} seed rows; vectors ready in "
        f"{time.perf_counter() - started:.1f} s; {platform.machine()}, {os.cpu_count()} cores, {date.today().isoformat()}"
    )

    llm, why_not = model_llm(args.model_url)
    model_router = LLMRouter(llm) if llm is not None else None

    if not args.probes_only:
        cross_validate(args, rows, seeds, embedder, bitext_vectors, seed_vectors, llm, why_not, model_router)

    probes = [json.loads(line) for line in PROBES.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(f"\nprobe tickets ({len(probes)}), router built on all {len(rows) + len(seeds)} examples:")
    print(probe_report("embedding", everything.route, probes))
    if model_router is None:
        print(f"{'model, hybrid':<18}not measured: {why_not}")
    else:
        print(probe_report("model", model_router.route, probes))
        print(probe_report("hybrid", HybridRouter(everything, model_router, margin_below=args.margin).route, probes))


def cross_validate(args, rows, seeds, embedder, bitext_vectors, seed_vectors, llm, why_not, model_router) -> None:
    sample = stratified_sample(rows, args.model_sample, args.seed) if llm is not None else set()
    folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    design: dict[str, dict[int, tuple[str, str | None, float]]] = defaultdict(dict)  # design -> row -> (intent, label, ms)
    variant_pred: dict[tuple[str, int], dict[int, tuple[str, str]]] = defaultdict(dict)
    margins: dict[int, float] = {}
    extra_intents = unknown = model_calls = 0
    for fold, (train, test) in enumerate(folds.split(np.zeros(len(rows)), [r.label for r in rows]), 1):
        examples = [rows[i] for i in train] + seeds
        vectors = np.vstack([bitext_vectors[train], seed_vectors])
        if not args.no_variants:
            for method, k in VARIANTS:
                variant = EmbeddingRouter(examples, embedder=embedder, vectors=vectors, method=method, k=k or 7)  # type: ignore[arg-type]
                for i, s in zip(test, variant.score_vectors(bitext_vectors[test]), strict=True):
                    variant_pred[(method, k)][int(i)] = (s.intent.value, s.label)
        router = EmbeddingRouter(examples, embedder=embedder, vectors=vectors)
        hybrid = HybridRouter(router, model_router, margin_below=args.margin) if model_router is not None else None
        for i in test:
            text = rows[i].text
            t0 = time.perf_counter()
            analysis = router.analyse(text)
            route = router.route_analysis(text, analysis)
            design["embedding"][int(i)] = (route.intent.value, analysis.whole.label, (time.perf_counter() - t0) * 1000)
            margins[int(i)] = analysis.whole.margin
            extra_intents += len(route.intents) > 1
            unknown += route.confidence == 0.0
            if int(i) in sample:
                t0 = time.perf_counter()
                design["model"][int(i)] = (intents_of(model_router.route, text)[0], None, (time.perf_counter() - t0) * 1000)  # type: ignore[union-attr]
                t0 = time.perf_counter()
                design["hybrid"][int(i)] = (intents_of(hybrid.route, text)[0], None, (time.perf_counter() - t0) * 1000)  # type: ignore[union-attr]
                model_calls += analysis.whole.margin < args.margin or analysis.whole.similarity < router.other_below
        print(f"  fold {fold}/{args.folds} done", file=sys.stderr)

    print(f"\n{args.folds}-fold stratified cross-validation on the Bitext rows")
    print(HEADER)
    for name in ("embedding", "model", "hybrid"):
        if name != "embedding" and llm is None:
            print(f"{name:<18}not measured: {why_not}")
            continue
        got = design[name]
        idx = sorted(got)
        labels = [got[i][1] for i in idx] if name == "embedding" else None
        print(report(name, [rows[i] for i in idx], [got[i][0] for i in idx], labels, [got[i][2] for i in idx]))  # type: ignore[arg-type]
        if name == "embedding" and sample:  # the same rows the model designs are scored on
            idx = sorted(sample)
            print(report("embedding, sample", [rows[i] for i in idx], [got[i][0] for i in idx], [got[i][1] for i in idx], [got[i][2] for i in idx]))  # type: ignore[misc]
    if llm is not None:
        print(f"hybrid: the model was asked on {model_calls} of {len(design['hybrid'])} sampled tickets (margin < {args.margin})")
    print(f"embedding: {extra_intents} of {len(rows)} single-intent rows got a second intent; {unknown} routed `other` for nothing near")

    correct = {i: design["embedding"][i][0] == rows[i].intent.value for i in margins}
    print("\nembedding margin (top intent's vote share minus the runner-up's): share of rows below, accuracy below / at or above")
    for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        below = [correct[i] for i in margins if margins[i] < t]
        above = [correct[i] for i in margins if margins[i] >= t]
        print(
            f"  < {t:.1f}: {len(below) / len(margins):6.1%} of rows, {np.mean(below) if below else float('nan'):.3f} / {np.mean(above) if above else float('nan'):.3f}"
        )

    if not args.no_variants:
        print("\nclassifier variants (whole text only, same folds; the default is knn k=7):")
        print(HEADER)
        for (method, k), got in variant_pred.items():
            idx = sorted(got)
            print(report(f"{method} k={k}" if method == "knn" else method, [rows[i] for i in idx], [got[i][0] for i in idx], [got[i][1] for i in idx], []))


if __name__ == "__main__":
    main()
