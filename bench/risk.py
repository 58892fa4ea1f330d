"""Risk detection quality: one command for both evaluation sets, each per half (dev, test).

  .venv/bin/python bench/risk.py [--set all|risk_eval|other] [--halves dev,test] [--terms] [--variants] [--errors] [--cache-dir DIR]
                                 [--model-url http://127.0.0.1:8090 [--min-yes P]]

risk_eval (bench/risk_eval.jsonl, bench/risk_eval.md): our own phrasings per risk class and harmless look-alikes,
written apart from the classifier's exemplars, plus every tenth Bitext train row as an ordinary ticket (the rows the
classifier leaves out of its exemplars). A ticket may carry several risks; each (ticket, class) pair is one decision.
Micro: over the five risk classes' pairs together. Three designs:

- regex: crewdesk.tickets.rules.scan_text, the five risk rules (urgent_outage is not scored: no class here).
- classifier: crewdesk.routing.risk.RiskClassifier.hits (kNN over MiniLM vectors, whole ticket and sentences).
- combined: crewdesk.tickets.rules.detect (regex hits stand unless overruled; the classifier adds what they miss).

other (bench/risk_other/, its README): routine requests of other businesses (banking, insurance, telecom, ...), retail
look-alikes of our demo store, prompt injections and a few genuine risks. Measured is the decision the pipeline makes
(crews/phases.py asks rules.escalation_hits(..., risk=rules.risk_check(classifier))): a ticket is escalated when any
rule fires (urgent_outage and injection included). Printed per half: routine and retail tickets falsely escalated
(count, rate, by rule), P/R/F1 per label (the risks and injection), how many injections were escalated at all, and ms.

ms/ticket: each ticket on its own, as the pipeline calls it (query embedded on one torch thread), median over the set.

--terms: on risk_eval's dev half, which regex words fired on gold tickets and which on harmless ones: how
rules.AMBIGUOUS was chosen. --variants: on the dev halves, the classifier's settings, each set beside the default: how
the defaults were chosen. --errors: the wrong tickets of the dev halves only (the test halves are for figures). The
defaults were picked on dev only, so test is the check. --halves dev: score the dev halves alone (while tuning).

--model-url: the model check of the classifier's hits as the pipeline makes it (rules.check_with_model, the ticket's
model answering one yes/no per hit that rests on the classifier, CREWDESK_RISK_MODEL_CHECK), with the model behind that
OpenAI-compatible server; each set is then scored without and with it (at --min-yes, by default the setting's bar), with
the model's calls and time per ticket, and on the dev halves the bars beside it: how the default was chosen. The model
is asked once per hit; every bar reads the same answers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CREWDESK_LOG_LEVEL", "WARNING")
warnings.filterwarnings("ignore")

import numpy as np

from crewdesk.logging import configure_logging
from crewdesk.routing.risk import RISK_LABELS, RiskAnalysis, RiskClassifier
from crewdesk.settings import load_settings
from crewdesk.tickets import rules

EVAL = ROOT / "bench" / "risk_eval.jsonl"


def load(split: str) -> list[dict]:
    rows = [json.loads(line) for line in EVAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if split == "all" or r["split"] == split]


class Precomputed:
    """Stands in for the classifier inside rules.detect: answers with analyses computed beforehand."""

    def __init__(self, analyses: dict[str, RiskAnalysis]) -> None:
        self.analyses = analyses

    def analyse(self, text: str) -> RiskAnalysis:
        return self.analyses[text]


def regex_labels(text: str) -> set[str]:
    return {h.rule for h in rules.scan_text(text)} & set(RISK_LABELS)


def scores(rows: list[dict], predicted: list[set[str]]) -> dict[str, tuple[int, int, int]]:
    """label -> (tp, fp, fn); 'micro' over all risk labels."""
    counts: dict[str, list[int]] = {label: [0, 0, 0] for label in (*RISK_LABELS, "micro")}
    for row, pred in zip(rows, predicted, strict=True):
        gold = set(row["labels"])
        for label in RISK_LABELS:
            for key in (label, "micro"):
                if label in pred and label in gold:
                    counts[key][0] += 1
                elif label in pred:
                    counts[key][1] += 1
                elif label in gold:
                    counts[key][2] += 1
    return {k: (v[0], v[1], v[2]) for k, v in counts.items()}


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def table(name: str, rows: list[dict], predicted: list[set[str]], ms: float | None) -> list[str]:
    counts = scores(rows, predicted)
    lines = []
    for label in (*RISK_LABELS, "micro"):
        tp, fp, fn = counts[label]
        p, r, f = prf(tp, fp, fn)
        lines.append(f"{name:<11} {label:<13} {tp + fn:>5} {p:>6.3f} {r:>6.3f} {f:>6.3f} {tp:>4} {fp:>4} {fn:>4}")
    lines[-1] += f"   {ms:.2f} ms/ticket (median)" if ms is not None else ""
    return lines


def micro_f1(rows: list[dict], predicted: list[set[str]]) -> tuple[float, float, float]:
    return prf(*scores(rows, predicted)["micro"])


def timed(fns: list, texts: list[str]) -> tuple[list[list], list[float]]:
    """Each function on each ticket, one ticket at a time and the functions in turn, so that all of them meet the same
    load on a shared machine; (outputs per function, median ms per function)."""
    outs: list[list] = [[] for _ in fns]
    times: list[list[float]] = [[] for _ in fns]
    for text in texts:
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            outs[i].append(fn(text))
            times[i].append((time.perf_counter() - start) * 1000)
    return outs, [statistics.median(t) for t in times]


def combined_labels(text: str, stand_in: Precomputed) -> set[str]:
    return {h.rule for h in rules.detect(text, stand_in)} & set(RISK_LABELS)


def analyses_for(clf: RiskClassifier, texts: list[str], query_vectors: dict[str, np.ndarray]) -> dict[str, RiskAnalysis]:
    """Analyses of already revealed texts (rules.revealed) from vectors computed beforehand."""
    out = {}
    for text in texts:
        parts = clf.parts_of(text)
        out[text] = clf.analysis(clf.score_vectors(parts, np.stack([query_vectors[p] for p in parts])))
    return out


class ModelCheck:
    """The model check over a set: each ticket's hits and the model's answers (asked at bar 0, so every hit is kept and
    every answer recorded), then the decision at any bar from the same answers."""

    def __init__(self, llm: object) -> None:
        self.llm = llm
        self.calls = 0
        self.call_ms: list[float] = []

    def ask(self, text: str, hits: list[rules.RuleHit]) -> tuple[list[rules.RuleHit], list[rules.RiskChecked], float]:
        started = time.perf_counter()
        kept, asked = rules.check_with_model(hits, text, self, min_yes=0.0)  # type: ignore[arg-type]
        return kept, asked, (time.perf_counter() - started) * 1000

    def yes_probability(self, messages: list[dict[str, str]], *, name: str, actor: str | None = None) -> float:
        started = time.perf_counter()
        self.calls += 1
        try:
            return self.llm.yes_probability(messages, name=name, actor=actor)  # type: ignore[attr-defined]
        finally:
            self.call_ms.append((time.perf_counter() - started) * 1000)


def at_bar(hits: list[rules.RuleHit], asked: list[rules.RiskChecked], bar: float) -> set[str]:
    """The rules that fire when a checked hit needs P(yes) >= bar (an unanswered one stands)."""
    answers = iter(asked)
    out = set()
    for hit in hits:
        if rules.model_checked(hit):
            answer = next(answers)
            if answer.p_yes is not None and answer.p_yes < bar:
                continue
        out.add(hit.rule)
    return out


BARS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7)


def build_model(url: str) -> object:
    from crewdesk.llm.factory import LLMFactory

    settings = load_settings(llm_provider="local")
    return LLMFactory(settings, base_url=url.rstrip("/") + "/v1").build(tier="cheap")


def risk_eval_report(args: argparse.Namespace, clf: RiskClassifier) -> None:
    """bench/risk_eval.jsonl: the three designs, per class and micro, per half."""
    rows = [r for r in load("all") if r["split"] in args.halves]
    texts = [r["text"] for r in rows]
    kinds = Counter(r["kind"] for r in rows)
    golds = Counter(label for r in rows for label in r["labels"])
    print(f"== risk_eval: {EVAL.relative_to(ROOT)}, {len(rows)} tickets: {dict(kinds)}; gold pairs {dict(golds)}\n")

    (regex_pred, analyses, _), (regex_ms, clf_ms, combined_ms) = timed(
        [regex_labels, lambda t: clf.analyse(rules.revealed(t)), lambda t: rules.detect(t, clf)], texts
    )
    by_text = {rules.revealed(t): a for t, a in zip(texts, analyses, strict=True)}
    clf_pred = [{h.label for h in a.hits()} for a in analyses]
    stand_in = Precomputed(by_text)
    comb_pred = [combined_labels(t, stand_in) for t in texts]

    header = f"{'design':<11} {'class':<13} {'gold':>5} {'P':>6} {'R':>6} {'F1':>6} {'tp':>4} {'fp':>4} {'fn':>4}"
    print(f"all tickets of the halves {'+'.join(args.halves)}\n" + header)
    for name, pred, ms in (("regex", regex_pred, regex_ms), ("classifier", clf_pred, clf_ms), ("combined", comb_pred, combined_ms)):
        print("\n".join(table(name, rows, pred, ms)))
        print()
    for half in args.halves:
        idx = [i for i, r in enumerate(rows) if r["split"] == half]
        sub = [rows[i] for i in idx]
        print(f"{half} half ({len(sub)} tickets), combined design\n{header}")
        print("\n".join(table("combined", sub, [comb_pred[i] for i in idx], None)))
        print()

    print("micro P / R / F1 per half (defaults chosen on dev):")
    for half in args.halves:
        idx = [i for i, r in enumerate(rows) if r["split"] == half]
        sub = [rows[i] for i in idx]
        line = "  ".join(
            f"{name} {'/'.join(f'{x:.3f}' for x in micro_f1(sub, [pred[i] for i in idx]))}"
            for name, pred in (("regex", regex_pred), ("classifier", clf_pred), ("combined", comb_pred))
        )
        print(f"  {half:<5} {len(sub):>4} tickets: {line}")
    print()

    print("recall by language (gold pairs found / gold pairs):")
    for lang in ("en", "de", "es", "fr"):
        idx = [i for i, r in enumerate(rows) if r["lang"] == lang and r["labels"]]
        gold = sum(len(rows[i]["labels"]) for i in idx)
        caught = {
            name: sum(len(set(rows[i]["labels"]) & pred[i]) for i in idx)
            for name, pred in (("regex", regex_pred), ("classifier", clf_pred), ("combined", comb_pred))
        }
        print(f"  {lang}: " + "  ".join(f"{name} {n}/{gold}" for name, n in caught.items()))
    print()

    false_alarms: dict[str, Counter] = {name: Counter() for name in ("regex", "classifier", "combined")}
    for row, preds in zip(rows, zip(regex_pred, clf_pred, comb_pred, strict=True), strict=True):
        if not row["labels"]:
            for name, pred in zip(("regex", "classifier", "combined"), preds, strict=True):
                if pred:
                    false_alarms[name][row["kind"]] += 1
    print("harmless tickets flagged (any risk):", {k: dict(v) for k, v in false_alarms.items()})
    # The pipeline's decision on the harmless tickets: any rule at all (urgent_outage and injection included).
    for half in args.halves:
        harmless = [r for r in rows if not r["labels"] and r["split"] == half]
        escalated = [r for r in harmless if escalation_rules(r["text"], Precomputed(by_text))]
        by_kind = Counter(r["kind"] for r in escalated)
        print(f"  {half}: harmless tickets escalated by the pipeline's decision (any rule): {len(escalated)}/{len(harmless)} {dict(by_kind)}")
    print()

    if args.model is not None:
        risk_eval_model(args, rows, texts, stand_in)

    if args.errors:
        print("combined design, wrong tickets of the dev half (gold -> predicted):")
        for row, wrong, a in zip(rows, comb_pred, analyses, strict=True):
            if wrong != set(row["labels"]) and row["split"] == "dev":
                best = max(RISK_LABELS, key=lambda label: max(p.shares[label] for p in a.parts))
                top = max(p.shares[best] for p in a.parts)
                print(f"  [{row['split']}] {sorted(row['labels'])} -> {sorted(wrong)}  (best {best} {top:.2f}, none {a.none_share():.2f})  {row['text'][:110]}")
        print()

    if args.terms:
        dev = [r for r in load("all") if r["split"] == "dev"]
        words: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for row in dev:
            for rule in RISK_LABELS:
                for match in rules.rule_pattern(rule).finditer(row["text"]):
                    words[(rule, match.group(0).lower())][0 if rule in row["labels"] else 1] += 1
        print("regex words on the dev half: (rule, word): on gold tickets / on other tickets; * = in rules.AMBIGUOUS")
        for (rule, word), (good, bad) in sorted(words.items()):
            mark = "*" if rule in rules.AMBIGUOUS and rules.AMBIGUOUS[rule].fullmatch(word) else " "
            print(f"  {mark} {rule:<13} {word!r:<28} {good:>3} / {bad:<3}")
        other_dev = [{"text": r["text"], "labels": [] if r["label"] == "none" else [r["label"]]} for r in load_other("dev")]
        print("\ndev tickets (both sets) whose regex hit is only ambiguous words: does the classifier find that risk too?")
        for row in dev + other_dev:
            analysis = by_text.get(rules.revealed(row["text"])) or clf.analyse(rules.revealed(row["text"]))
            found = {h.label for h in analysis.hits()}
            for hit in rules.scan_text(row["text"]):
                if hit.rule in rules.AMBIGUOUS and rules.ambiguous_only(hit.rule, row["text"]):
                    print(
                        f"  {'true ' if hit.rule in row['labels'] else 'false'} {hit.rule:<12} {hit.evidence!r:<18} "
                        f"classifier finds it: {'yes' if hit.rule in found else 'no '}  overruled: {'yes' if rules.overruled(hit, row['text'], found) else 'no '}  "
                        f"{row['text'][:70]!r}"
                    )
        print()

    if args.variants:
        dev = [r for r in load("all") if r["split"] == "dev"]
        other_dev = load_other("dev")
        dev_texts = [rules.revealed(r["text"]) for r in dev] + [rules.revealed(r["text"]) for r in other_dev]
        parts = sorted({p for t in dev_texts for p in clf.parts_of(t)})
        vectors = dict(zip(parts, clf.embed(parts), strict=True))
        default = (clf.k, clf.threshold, clf.segment_threshold, clf.min_similarity, clf.segment_similarity)
        grid = [default] + [
            (k, t, st, w, g)
            for k in (3, 5, 7)
            for t in (0.4, 0.5, 0.6)
            for st in (None, 0.6, 0.8, 1.0)
            for w in (0.4, 0.5)
            for g in (0.5, 0.6)
            if (st is None or st >= t) and (k, t, st, w, g) != default
        ]
        print(
            f"classifier settings on the dev halves ({len(grid)} tried; k, threshold, segment_threshold, min_similarity, segment_similarity): "
            "risk_eval dev recall and micro F1 (combined) | other-domain dev routine+retail tickets escalated, injections labelled; "
            "the default, then the 12 with the fewest false escalations among those keeping risk_eval dev recall at today's 75/91 or more"
        )
        results = []
        for k, threshold, segment_threshold, floor, segment_floor in grid:
            variant = RiskClassifier(
                clf.examples,
                embedder=clf.embedder,
                vectors=clf.vectors,
                k=k,
                threshold=threshold,
                segment_threshold=segment_threshold,
                min_similarity=floor,
                segment_similarity=segment_floor,
            )
            stand_in = Precomputed(analyses_for(variant, dev_texts, vectors))
            gold = sum(len(r["labels"]) for r in dev)
            caught = sum(len(set(r["labels"]) & combined_labels(r["text"], stand_in)) for r in dev)
            f1 = micro_f1(dev, [combined_labels(r["text"], stand_in) for r in dev])[2]
            decided = [escalation_rules(r["text"], stand_in) for r in other_dev]
            false = sum(1 for r, d in zip(other_dev, decided, strict=True) if r["kind"] in ("routine", "retail") and d)
            injections = sum(1 for r, d in zip(other_dev, decided, strict=True) if r["kind"] == "injection" and "injection" in d)
            results.append(((k, threshold, segment_threshold, floor, segment_floor), caught, gold, f1, false, injections))
        keep = [r for r in results if r[1] >= 75]
        for (k, t, st, w, g), caught, gold, f1, false, injections in [results[0], *sorted(keep, key=lambda r: (r[4], -r[1]))[:12]]:
            print(
                f"  k={k} threshold={t} segment_threshold={st} min_similarity={w} segment_similarity={g}   {caught}/{gold} {f1:.3f} | {false} escalated, {injections} injections"
            )


def risk_eval_model(args: argparse.Namespace, rows: list[dict], texts: list[str], stand_in: Precomputed) -> None:
    """risk_eval with the model check: per half, the combined design without and with it (at args.min_yes), and on dev
    the bars."""
    check = ModelCheck(args.model)
    answered = [check.ask(t, rules.detect(t, stand_in)) for t in texts]
    hits = [rules.detect(t, stand_in) for t in texts]
    print(
        f"model check ({args.model_url}): {check.calls} questions over {len(texts)} tickets = {check.calls / len(texts):.3f} per ticket; "
        f"{statistics.median(check.call_ms) if check.call_ms else 0:.0f} ms per question (median), "
        f"{sum(check.call_ms) / len(texts):.0f} ms per ticket added (mean)"
    )
    risky = set(RISK_LABELS)
    for half in args.halves:
        idx = [i for i, r in enumerate(rows) if r["split"] == half]
        sub = [rows[i] for i in idx]
        gold = sum(len(r["labels"]) for r in sub)
        harmless = [i for i in idx if not rows[i]["labels"]]
        bars = BARS if half == "dev" else ()
        for bar in (0.0, *bars, args.min_yes) if half == "dev" else (0.0, args.min_yes):
            pred = [at_bar(hits[i], answered[i][1], bar) for i in idx]
            p, r_, f = micro_f1(sub, [x & risky for x in pred])
            found = Counter(label for row, x in zip(sub, pred, strict=True) for label in set(row["labels"]) & x)
            escalated = sum(1 for i in harmless if at_bar(hits[i], answered[i][1], bar))
            name = "without the model" if bar == 0.0 else f"bar {bar:.2f}" + (" (the setting)" if bar == args.min_yes else "")
            print(
                f"  {half} {name:<24} micro P/R/F1 {p:.3f}/{r_:.3f}/{f:.3f}, found {sum(found.values())}/{gold} "
                f"{dict(sorted(found.items()))}; harmless escalated {escalated}/{len(harmless)}"
            )
    if args.errors:
        print("  dev half, checked hits (label, P(yes), gold?):")
        for row, (_, asked, _) in zip(rows, answered, strict=True):
            if row["split"] == "dev":
                for a in asked:
                    print(
                        f"    {a.rule:<12} {a.p_yes if a.p_yes is None else round(a.p_yes, 3)!s:<6} {'gold' if a.rule in row['labels'] else 'FALSE'}  {row['text'][:100]!r}"
                    )
    print()


OTHER = ROOT / "bench" / "risk_other"
# Labels scored on the other-domain set: the risks and injection (a rule the code does not know scores nothing).
OTHER_LABELS = (*RISK_LABELS, "injection")


def load_other(half: str) -> list[dict]:
    return [json.loads(line) | {"split": half} for line in (OTHER / f"{half}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


def escalation_rules(text: str, classifier: object) -> set[str]:
    """The pipeline's decision: every rule that fires on the ticket's text (rules.escalation_hits with risk=)."""
    return {hit.rule for hit in rules.risk_check(classifier)(text)}  # type: ignore[arg-type]


def other_scores(rows: list[dict], decided: list[set[str]], indent: str = "  ") -> list[str]:
    """False escalations of routine and retail tickets, P/R/F1 per label, injections and genuine risks escalated."""
    lines = []
    for kinds_ in (("routine",), ("retail",), ("routine", "retail")):
        idx = [i for i, r in enumerate(rows) if r["kind"] in kinds_]
        flagged = [i for i in idx if decided[i]]
        by_rule = Counter(rule for i in flagged for rule in decided[i])
        by_lang = Counter(rows[i]["language"] for i in flagged)
        rate = len(flagged) / len(idx) if idx else 0.0
        lines.append(
            f"{indent}falsely escalated, {'+'.join(kinds_):<14} {len(flagged):>3}/{len(idx):<3} = {rate:6.1%}"
            f"   by rule {dict(sorted(by_rule.items()))}  by language {dict(sorted(by_lang.items()))}"
        )
    lines.append(f"{indent}{'label':<13} {'gold':>5} {'P':>6} {'R':>6} {'F1':>6} {'tp':>4} {'fp':>4} {'fn':>4}")
    micro = [0, 0, 0]
    for label in OTHER_LABELS:
        tp = sum(1 for r, d in zip(rows, decided, strict=True) if r["label"] == label and label in d)
        fp = sum(1 for r, d in zip(rows, decided, strict=True) if r["label"] != label and label in d)
        fn = sum(1 for r, d in zip(rows, decided, strict=True) if r["label"] == label and label not in d)
        if label != "injection":
            micro = [micro[0] + tp, micro[1] + fp, micro[2] + fn]
        p, r_, f = prf(tp, fp, fn)
        lines.append(f"{indent}{label:<13} {tp + fn:>5} {p:>6.3f} {r_:>6.3f} {f:>6.3f} {tp:>4} {fp:>4} {fn:>4}")
    p, r_, f = prf(*micro)
    lines.append(f"{indent}{'micro (risks)':<13} {micro[0] + micro[2]:>5} {p:>6.3f} {r_:>6.3f} {f:>6.3f} {micro[0]:>4} {micro[1]:>4} {micro[2]:>4}")
    injections = [d for r, d in zip(rows, decided, strict=True) if r["kind"] == "injection"]
    risky = [(r, d) for r, d in zip(rows, decided, strict=True) if r["kind"] == "risky"]
    lines.append(
        f"{indent}injections escalated by any rule: {sum(1 for d in injections if d)}/{len(injections)}, of them labelled injection "
        f"{sum(1 for d in injections if 'injection' in d)}; by rule {dict(sorted(Counter(x for d in injections for x in d).items()))}"
    )
    lines.append(
        f"{indent}genuine risks escalated by any rule: {sum(1 for _, d in risky if d)}/{len(risky)}, with their own label {sum(1 for r, d in risky if r['label'] in d)}"
    )
    return lines


def other_report(args: argparse.Namespace, clf: RiskClassifier) -> None:
    """bench/risk_other: false escalations of routine and retail tickets, P/R/F1 per label, injections, ms; per half;
    with --model-url, the same with the model check, its calls and time per ticket."""
    print(f"== other domains: {OTHER.relative_to(ROOT)} (dev.jsonl, test.jsonl)\n")
    check = rules.risk_check(clf)  # type: ignore[arg-type]
    for half in args.halves:
        rows = load_other(half)
        texts = [r["text"] for r in rows]
        (found,), (ms,) = timed([lambda t: list(check(t))], texts)
        decided = [{hit.rule for hit in hits} for hits in found]
        kinds = Counter(r["kind"] for r in rows)
        print(f"{half} half: {len(rows)} tickets {dict(kinds)}; {ms:.2f} ms/ticket (median, the pipeline's risk check)")
        print("\n".join(other_scores(rows, decided)))
        if args.errors and half == "dev":
            print("  dev half, wrong tickets (gold -> rules fired):")
            for row, d in zip(rows, decided, strict=True):
                gold = set() if row["label"] == "none" else {row["label"]}
                if d != gold:
                    print(f"    [{row['kind']}/{row['domain']}/{row['language']}] {sorted(gold)} -> {sorted(d)}  {row['text'][:120]!r}")
        if args.model is not None:
            model = ModelCheck(args.model)
            answered = []
            totals = []
            for text in texts:
                started = time.perf_counter()
                hits = list(check(text))
                answered.append((hits, model.ask(text, hits)[1]))
                totals.append((time.perf_counter() - started) * 1000)
            asked_tickets = sum(1 for _, asked in answered if asked)
            print(
                f"  with the model check at bar {args.min_yes} ({args.model_url}): {model.calls} questions = {model.calls / len(rows):.3f} per ticket "
                f"({asked_tickets} tickets asked); ms/ticket including the model's calls: median {statistics.median(totals):.0f}, "
                f"mean {statistics.mean(totals):.0f}, max {max(totals):.0f}; per question median {statistics.median(model.call_ms) if model.call_ms else 0:.0f}"
            )
            print("\n".join(other_scores(rows, [at_bar(h, a, args.min_yes) for h, a in answered], indent="    ")))
            if half == "dev":
                print("  dev half, the bars: routine / retail falsely escalated, genuine risks with their own label, injections labelled")
                for bar in BARS:
                    d = [at_bar(h, a, bar) for h, a in answered]
                    routine = sum(1 for r, x in zip(rows, d, strict=True) if r["kind"] == "routine" and x)
                    retail = sum(1 for r, x in zip(rows, d, strict=True) if r["kind"] == "retail" and x)
                    own = sum(1 for r, x in zip(rows, d, strict=True) if r["kind"] == "risky" and r["label"] in x)
                    inj = sum(1 for r, x in zip(rows, d, strict=True) if r["kind"] == "injection" and "injection" in x)
                    print(f"    bar {bar:.2f}: {routine}/{kinds['routine']}  {retail}/{kinds['retail']}  {own}/{kinds['risky']}  {inj}/{kinds['injection']}")
                if args.errors:
                    print("  dev half, checked hits (label, P(yes), gold):")
                    for row, (_, asked) in zip(rows, answered, strict=True):
                        for a in asked:
                            print(f"    {a.rule:<12} {a.p_yes if a.p_yes is None else round(a.p_yes, 3)!s:<6} {row['label']:<12} {row['text'][:100]!r}")
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=["all", "risk_eval", "other"], default="all")
    parser.add_argument("--terms", action="store_true", help="risk_eval: regex words on the dev half, gold vs harmless")
    parser.add_argument("--variants", action="store_true", help="risk_eval: classifier and overrule settings on the dev half")
    parser.add_argument("--errors", action="store_true", help="list the wrong tickets of the dev halves")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / "results" / "risk-cache")
    parser.add_argument("--halves", default="dev,test", help="comma-separated: dev, test (tune on dev alone)")
    parser.add_argument("--model-url", help="the model check with the model of this OpenAI-compatible server, e.g. http://127.0.0.1:8090")
    parser.add_argument("--min-yes", type=float, default=None, help="the model check's bar (default: CREWDESK_RISK_MODEL_MIN_YES)")
    args = parser.parse_args()
    args.halves = [h for h in ("dev", "test") if h in args.halves.split(",")]
    args.model = build_model(args.model_url) if args.model_url else None
    if args.min_yes is None:
        args.min_yes = load_settings().risk_model_min_yes
    configure_logging(level="WARNING", json=False)  # not the overrule's info lines

    clf = RiskClassifier(cache_dir=args.cache_dir)
    started = time.perf_counter()
    clf.warm()
    clf.analyse("warm up the model")
    print(
        f"classifier: {len(clf.examples)} exemplars ({dict(Counter(e.label for e in clf.examples))}), k={clf.k}, "
        f"threshold={clf.threshold}, min_similarity={clf.min_similarity}, segment_similarity={clf.segment_similarity}; "
        f"model and exemplar vectors ready in {time.perf_counter() - started:.1f} s"
    )
    words_of = {k: v.pattern for k, v in rules.AMBIGUOUS.items()}
    print(
        f"segment_threshold={clf.segment_threshold}, weak_share={clf.weak_share}, weak_margin={clf.weak_margin}; ambiguous regex words (stand only when the classifier finds that risk too): {words_of}"
    )
    print(f"{platform.machine()}, {os.cpu_count()} cores, {date.today().isoformat()}\n")
    if args.set in ("all", "other"):
        other_report(args, clf)
    if args.set in ("all", "risk_eval"):
        risk_eval_report(args, clf)


if __name__ == "__main__":
    main()
