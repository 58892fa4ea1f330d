"""Split the other-domain risk set once into dev and test halves, and write their checksums.

  .venv/bin/python bench/risk_other/split.py AUTHORED.jsonl

AUTHORED.jsonl: every row we wrote, one object a line ({"id", "text", "label", "domain", "language", "kind", "note"}).
Stratified: the rows of each (kind, domain, language) group are shuffled with one seeded generator and dealt
alternately to dev and test, the first of each group going to the half that has fewer rows so far, so both halves
hold every domain and language in the same proportions. Writes dev.jsonl, test.jsonl (rows in id order) and
SHA256SUMS beside this file. Run once, before any rule or exemplar was changed (bench/risk_other/README.md); running it
again on the same file gives the same halves."""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261206
FIELDS = ("id", "text", "label", "domain", "language", "kind", "note")


def split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["kind"], row["domain"], row["language"])].append(row)
    rng = random.Random(SEED)
    halves: tuple[list[dict], list[dict]] = ([], [])
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda r: r["id"])
        rng.shuffle(members)
        first = 0 if len(halves[0]) <= len(halves[1]) else 1
        for n, row in enumerate(members):
            halves[(first + n) % 2].append(row)
    return sorted(halves[0], key=lambda r: r["id"]), sorted(halves[1], key=lambda r: r["id"])


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps({k: row[k] for k in FIELDS}, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def main() -> None:
    rows = [json.loads(line) for line in Path(sys.argv[1]).read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = [row["id"] for row in rows]
    texts = [row["text"] for row in rows]
    if len(set(ids)) != len(ids) or len(set(texts)) != len(texts):
        raise SystemExit("duplicate ids or texts")
    dev, test = split(rows)
    write(HERE / "dev.jsonl", dev)
    write(HERE / "test.jsonl", test)
    sums = "".join(f"{hashlib.sha256((HERE / name).read_bytes()).hexdigest()}  {name}\n" for name in ("dev.jsonl", "test.jsonl"))
    (HERE / "SHA256SUMS").write_text(sums, encoding="utf-8")
    print(f"{len(rows)} rows: dev {len(dev)}, test {len(test)}\n{sums}", end="")


if __name__ == "__main__":
    main()
