"""Imports point one way: faces and workers -> crews -> tools -> core (import-linter contracts); and the repository
stands alone: no file reads a path beside the checkout."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import crewdesk

FACES = {"cli", "api"}
ROOT = Path(__file__).resolve().parent.parent


def core_modules() -> list[str]:
    names = sorted(f"crewdesk.{m.name}" for m in pkgutil.iter_modules(crewdesk.__path__) if m.name not in FACES)
    assert "crewdesk.tickets" in names and "crewdesk.llm" in names
    return names


def contracts() -> str:
    core = "\n    ".join(core_modules())
    return f"""
[importlinter]
root_packages =
    crewdesk
    crews
    tools
    workers
include_external_packages = False

[importlinter:contract:layers]
name = workers -> crews -> tools
type = layers
layers =
    workers
    crews
    tools

[importlinter:contract:core]
name = the core never imports crews, tools, workers or the faces
type = forbidden
source_modules =
    {core}
forbidden_modules =
    crews
    tools
    workers
    crewdesk.cli

[importlinter:contract:workers-not-faces]
name = workers do not import the faces
type = forbidden
source_modules =
    workers
    crews
    tools
forbidden_modules =
    crewdesk.cli
"""


def lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--config", str(config), "--no-cache"], cwd=ROOT, capture_output=True, text=True)


def test_import_direction(tmp_path):
    config = tmp_path / "importlinter.ini"
    config.write_text(contracts())
    result = lint(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_a_violation_is_caught(tmp_path):
    """The contract can fail: a core module importing crews breaks it."""
    bad = ROOT / "crewdesk" / "_linter_probe.py"
    bad.write_text("import crews.pipeline  # noqa\n")
    try:
        config = tmp_path / "importlinter.ini"
        config.write_text(contracts())
        result = lint(config)
    finally:
        bad.unlink()
    assert result.returncode != 0
    assert "crewdesk._linter_probe" in result.stdout


def test_yaml_dirs_are_not_python_packages():
    for folder in ("agents", "tasks"):
        assert not (ROOT / folder / "__init__.py").exists()
        assert not list((ROOT / folder).glob("*.py"))


# The repository stands alone: a clone has nothing beside it, so no file may read (or tell a user to read) a folder
# next to the checkout, such as the team's "shared" one with its datasets and fixtures. Only a benchmark under bench/
# that says it "optionally reads the CrewAI anchor" may name the anchor's bench folder there, and it must skip when
# the folder is absent. Words like "a shared instance" are fine: only path spellings are caught.
STANDALONE_DIRS = ("crewdesk", "crews", "tools", "workers", "tests", "scripts", "bench", "agents", "tasks", "examples", "migrations")
STANDALONE_FILES = ("README.md", "Dockerfile", "docker-compose.yml", "pyproject.toml", "alembic.ini")
ANCHOR_MARKER = "optionally reads the CrewAI anchor"
_Q = "[\"']"
OUTSIDE_PATH = re.compile(
    r"\.\.[/\\]shared\b"  # dot-dot-slash shared, either slash
    r"|\bshared[/\\](?:datasets|fixtures)\b"  # the shared datasets or fixtures folder, from any root
    rf"|{_Q}shared{_Q}\s*(?:/|,\s*{_Q})"  # the word as a Path or os.path.join component
    rf"|/\s*{_Q}shared{_Q}"
    r"|\b[A-Z_]*ROOT\.parent\b"  # the repository's parent folder
)
ANCHOR_PATH = re.compile(r"shared\W{0,6}bench\b")
ESCAPE = re.compile(r"__file__\)?(?:\.resolve\(\))?\.parents\[(\d+)\]")  # Path(this file).parents[k]


def outside_references(relative: str, text: str) -> list[str]:
    """Lines of `text` (a tracked file at `relative`) that name a path outside the repository."""
    depth = relative.count("/")  # parents[depth] of a file is the repository root; anything above is outside
    anchor_ok = relative.startswith("bench/") and ANCHOR_MARKER in text
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        hit = OUTSIDE_PATH.search(line) or any(int(k) > depth for k in ESCAPE.findall(line))
        if hit and not (anchor_ok and ANCHOR_PATH.search(line) and not re.search(r"datasets|fixtures", line)):
            found.append(f"{relative}:{number}: {line.strip()[:160]}")
    return found


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z", "--", *STANDALONE_DIRS, *STANDALONE_FILES], cwd=ROOT, capture_output=True)
    if listed.returncode == 0 and listed.stdout:
        return sorted(name for name in listed.stdout.decode().split("\0") if name)
    # not a git checkout (an unpacked sdist): every file under the same folders
    return sorted(
        str(p.relative_to(ROOT)) for folder in STANDALONE_DIRS for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts
    ) + [f for f in STANDALONE_FILES if (ROOT / f).exists()]


def test_nothing_reads_outside_the_repository():
    files = tracked_files()
    assert "crewdesk/store/tau2/db.json" in files and "tests/fixtures/email/SOURCES.md" in files
    offending = []
    for relative in files:
        path = ROOT / relative
        if path.is_file():
            offending += outside_references(relative, path.read_bytes().decode("utf-8", errors="replace"))
    assert not offending, "paths outside the repository (copy the file in, with its licence and SOURCES.md):\n" + "\n".join(offending)


def test_outside_references_are_caught_and_words_are_not():
    # spelled in pieces, so that this file does not contain what it looks for
    up, s, f, root = "..", "sha" + "red", "__fi" + "le__", "RO" + "OT"
    caught = [
        f'DB = Path("{up}/{s}/datasets/tau2-retail/db.json")',
        f"see /work/{s}/fixtures/email",
        f'FIXTURES = Path({f}).resolve().parents[2] / "{s}" / "fixtures"',
        f'p = os.path.join(BASE, "{s}", "datasets")',
        f"DEFAULT = PROJECT_{root}.parent / 'x'",
        f"Copied unchanged from `{up}/{s}/datasets/abcd/`",
        f"HERE = Path({f}).parents[2]",  # tests/ is one level deep: parents[2] is beside the clone
    ]
    for line in caught:
        assert outside_references("tests/test_x.py", line), line
    fine = [
        "Build one LLM per agent per ticket (a shared instance double-counts tokens).",
        "shared = set(db.execute(select(Attachment.sha256)).scalars())",
        "each use takes one delegation from the shared budget",
        "def test_every_shared_fixture_goes_through_the_poller():",
        f'FIXTURES = Path({f}).resolve().parent / "fixtures" / "email"',
    ]
    for line in fine:
        assert not outside_references("tests/test_x.py", line), line
    assert not outside_references("crewdesk/store/x.py", f"ROOT = Path({f}).resolve().parents[2]")  # the repository root
    anchor = f'ANCHOR = {root} / "{up}" / "{s}" / "bench"  # {ANCHOR_MARKER}; skipped when absent'
    assert not outside_references("bench/anchor.py", anchor)
    assert outside_references("tests/test_x.py", anchor)  # only a benchmark may
    assert outside_references("bench/anchor.py", anchor + f'\nDATA = "{up}/{s}/datasets/x"')  # and only the anchor
