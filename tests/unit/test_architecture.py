"""The house: imports point one way, down layers a newcomer can read top to bottom (import-linter contracts, built
below from LAYERS); and the repository stands alone: no file reads a path beside the checkout.

A module may import from its own layer and the layers below it, never from a layer above; every top-level module and
package of crewdesk is in exactly one layer (no exemption by name: a new one fails test_every_module_has_a_layer
until it is placed). Top to bottom:

faces     crewdesk.cli, crewdesk.api, crewdesk.console (modules or packages alike): what people and programs talk to.
          They enqueue through workers.app and run crews in process (`crewdesk run`, a decided approval resuming its
          ticket), so they sit above everything; the CLI serves the API, and the API mounts the console (the support
          console's pages for people, issue 22), so the three share a layer. The console takes what it needs from the
          API as arguments and imports nothing of it (the acyclic contract holds).
workers   the Celery app and its thin tasks: take ids, call one service, return.
crews     the CrewAI crews built per ticket from agents/ and tasks/ (routing, a specialist, escalation).
tools     the CrewAI tools the crews call, every one through tools.gate.
channels  the edges to the outside: crewdesk.intake (e-mail, Jira webhooks and backlog files in), crewdesk.delivery
          (replies and notes out), crewdesk.connectors (IMAP, SMTP, Jira, Stripe, the built-in store: plugins behind
          small interfaces). Intake and delivery use connectors, never the other way.
schema    crewdesk.models: every table in one place, for Alembic and schema creation. It imports each domain that has
          tables, so it sits above them and no domain may import it.
domains   what the service keeps and decides, each in its own package (pii is one module): tickets (the thread, the state machine,
          erasure), inbound (the record of every inbound item, mailbox cursors and backlog imports: the channels fill
          these tables, and tickets refer to them), runs, audit, approvals, effects, pii (tokens for personal data),
          store (the built-in system of record and the RetailStore interface its operations run against), memory,
          routing (uses memory), llm (the model clients) and metrics (KPIs and gauges read from tickets, runs and
          approvals), auth (API keys and the scopes they grant; the API's faces check them). Domains may use one another,
          but never in a cycle.
core      crewdesk.settings, crewdesk.db (engine, sessions, the declarative base and no model), crewdesk.logging,
          crewdesk.errors, and small helpers that import nothing above: language, ratelimit, queues (task names and
          queues), migrate (runs Alembic, which reaches the tables through migrations/env.py, a script, not an
          import).

Inside a layer, siblings may import one another; the second contract forbids cycles among crewdesk's top-level
packages, so the domains (and the channels, and the core) form no loop."""

from __future__ import annotations

import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOT_PACKAGES = ("crewdesk", "crews", "tools", "workers")

# Top to bottom; see the module docstring for why each module sits where it does.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("faces", ("crewdesk.cli", "crewdesk.api", "crewdesk.console")),
    ("workers", ("workers",)),
    ("crews", ("crews",)),
    ("tools", ("tools",)),
    ("channels", ("crewdesk.intake", "crewdesk.delivery", "crewdesk.connectors")),
    ("schema", ("crewdesk.models",)),
    (
        "domains",
        (
            "crewdesk.tickets",
            "crewdesk.inbound",
            "crewdesk.runs",
            "crewdesk.audit",
            "crewdesk.approvals",
            "crewdesk.effects",
            "crewdesk.pii",
            "crewdesk.store",
            "crewdesk.memory",
            "crewdesk.routing",
            "crewdesk.llm",
            "crewdesk.metrics",
            "crewdesk.auth",
        ),
    ),
    (
        "core",
        (
            "crewdesk.settings",
            "crewdesk.db",
            "crewdesk.logging",
            "crewdesk.errors",
            "crewdesk.language",
            "crewdesk.ratelimit",
            "crewdesk.queues",
            "crewdesk.migrate",
        ),
    ),
)


def modules_of(root: Path) -> set[str]:
    """crewdesk's top-level modules and packages under `root` (a checkout or a copy of one)."""
    return {f"crewdesk.{m.name}" for m in pkgutil.iter_modules([str(root / "crewdesk")])}


def contracts(root: Path = ROOT) -> str:
    present = modules_of(root) | {"workers", "crews", "tools"}  # a listed module that does not exist yet is skipped
    layers = "\n    ".join(" : ".join(m for m in members if m in present) for _, members in LAYERS)
    packages = "\n    ".join(ROOT_PACKAGES)
    return f"""
[importlinter]
root_packages =
    {packages}
include_external_packages = False

[importlinter:contract:layers]
name = {" -> ".join(name for name, _ in LAYERS)}
type = layers
layers =
    {layers}

[importlinter:contract:acyclic]
name = no cycles among crewdesk's packages (the domains, the channels, the core)
type = acyclic_siblings
ancestors =
    crewdesk
depth = 0
"""


def lint(config: Path, root: Path = ROOT) -> subprocess.CompletedProcess:
    """lint-imports over the packages under `root` (it puts its working directory first on sys.path)."""
    return subprocess.run([str(Path(sys.executable).parent / "lint-imports"), str(config), "--no-cache", "--no-logo"], cwd=root, capture_output=True, text=True)


def test_import_direction(tmp_path):
    config = tmp_path / "importlinter.ini"
    config.write_text(contracts())
    result = lint(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_every_module_has_a_layer():
    placed = [m for _, members in LAYERS for m in members]
    assert len(placed) == len(set(placed)), "a module is in two layers"
    unplaced = sorted(modules_of(ROOT) - set(placed))
    assert not unplaced, f"put each in a layer of LAYERS (and say why in the docstring): {unplaced}"
    assert {"crewdesk.cli", "crewdesk.api", "crewdesk.tickets", "crewdesk.db"} <= modules_of(ROOT)


def _not_python(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n == "__pycache__" or (not n.endswith(".py") and (Path(folder) / n).is_file())}


def test_a_violation_is_caught(tmp_path):
    """The contracts can fail, in a copy of the packages (the checkout is never written): a domain importing a crew or
    a face, a worker importing a face, and two domains importing each other are each caught."""
    copy = tmp_path / "src"
    for package in ROOT_PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=_not_python)
    probes = {
        "crewdesk/tickets/_linter_probe.py": "import crews.pipeline\n",
        "crewdesk/llm/_linter_probe.py": "import crewdesk.api\n",
        "workers/_linter_probe.py": "import crewdesk.cli\n",
        "crewdesk/runs/_linter_probe.py": "import crewdesk.tickets.models\n",  # tickets already import runs
    }
    for relative, text in probes.items():
        (copy / relative).write_text(text)
    config = tmp_path / "importlinter.ini"
    config.write_text(contracts(copy))
    result = lint(config, root=copy)
    assert result.returncode != 0
    assert "0 kept, 2 broken" in result.stdout, result.stdout + result.stderr
    for caught in ("crewdesk.tickets._linter_probe -> crews.pipeline", "crewdesk.llm._linter_probe -> crewdesk.api", "workers._linter_probe -> crewdesk.cli"):
        assert caught in result.stdout, result.stdout
    assert "No cycles are allowed in crewdesk." in result.stdout
    assert "- .tickets -> .runs" in result.stdout or "- .runs -> .tickets" in result.stdout, result.stdout
    assert not list(ROOT.rglob("_linter_probe.py"))


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
        f"HERE = Path({f}).parents[3]",  # tests/integration/ is two levels deep: parents[3] is beside the clone
    ]
    for line in caught:
        assert outside_references("tests/integration/test_x.py", line), line
    fine = [
        "Build one LLM per agent per ticket (a shared instance double-counts tokens).",
        "shared = set(db.execute(select(Attachment.sha256)).scalars())",
        "each use takes one delegation from the shared budget",
        "def test_every_shared_fixture_goes_through_the_poller():",
        f'FIXTURES = Path({f}).resolve().parent / "fixtures" / "email"',
    ]
    for line in fine:
        assert not outside_references("tests/integration/test_x.py", line), line
    assert not outside_references("crewdesk/store/x.py", f"ROOT = Path({f}).resolve().parents[2]")  # the repository root
    anchor = f'ANCHOR = {root} / "{up}" / "{s}" / "bench"  # {ANCHOR_MARKER}; skipped when absent'
    assert not outside_references("bench/anchor.py", anchor)
    assert outside_references("tests/integration/test_x.py", anchor)  # only a benchmark may
    assert outside_references("bench/anchor.py", anchor + f'\nDATA = "{up}/{s}/datasets/x"')  # and only the anchor
