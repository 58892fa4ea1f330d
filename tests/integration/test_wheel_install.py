"""A non-editable install works away from the checkout: the wheel carries agents/, tasks/, migrations/ and alembic.ini
under crewdesk/_bundled, and an installed `crewdesk` migrates SQLite and runs one ticket from those copies.

The wheel is built from a copy of the working tree (a build writes build/ and *.egg-info beside its sources; the checkout
is never written) and installed with --no-deps into a fresh venv. The dependencies are not installed again: the new
venv sees this venv's site-packages through a .pth line that names the directory only, so this venv's own .pth files
(the editable finder among them) never run and crewdesk can only come from the wheel."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from contextlib import closing
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ("agents", "tasks", "migrations", "alembic.ini")  # the checkout's, shipped as crewdesk/_bundled/<the same path>
TICKET = {
    "id": "WHEEL-1",
    "customer": "mason.li4862@example.com",
    "subject": "Return the jigsaw puzzle",
    "body": "Hi, please take back the jigsaw puzzle from my last delivery and put the refund on my gift card. Thanks, Mason",
}


def _run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _not_copied(folder: str, names: list[str]) -> set[str]:
    """What a build must not see: caches, earlier build output, and the checkout's own dot-folders (.git, .venv, .env)."""
    top = Path(folder) == ROOT
    return {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".egg-info")) or (top and (n.startswith(".") or n in ("build", "dist")))}


def _build_isolation() -> list[str]:
    """Build with this venv's setuptools when it meets pyproject.toml's floor (offline, fast; scripts/setup.sh installs
    it), else let pip fetch the build requirements into an isolated environment."""
    try:
        enough = int(version("setuptools").split(".")[0]) >= 69
    except PackageNotFoundError:
        enough = False
    return ["--no-build-isolation"] if enough else []


def _checkout_files(name: str) -> set[str]:
    path = ROOT / name
    if path.is_file():
        return {name}
    return {p.relative_to(ROOT).as_posix() for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_the_wheel_runs_one_ticket_from_a_fresh_venv(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=_not_copied)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", *_build_isolation(), "-w", str(wheels)], cwd=tmp_path)
    (wheel,) = wheels.glob("crewdesk-*.whl")

    # What the wheel holds: every file of the data folders under crewdesk/_bundled, and no top-level agents or tasks.
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"crewdesk/_bundled/{path}" for name in BUNDLED for path in _checkout_files(name)}
    assert {n for n in names if n.startswith("crewdesk/_bundled/")} == expected
    assert not [n for n in names if n.split("/")[0] in ("agents", "tasks", "migrations")]
    (top_level,) = (n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["crewdesk", "crews", "tools", "workers"]

    # A fresh venv, the wheel installed into it before it can see anything else, then this venv's packages by path.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=tmp_path)
    site_packages = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site_packages / "_crewdesk_test_deps.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))

    home = tmp_path / "crewdesk-home"
    database = home / "crewdesk.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CREWDESK_", "CREWAI_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        HOME=str(tmp_path / "user"),  # importing CrewAI writes under ~/.local/share
        CREWDESK_HOME=str(home),
        CREWDESK_DATABASE_URL=f"sqlite:///{database}",
        CREWDESK_LLM_PROVIDER="scripted",
        CREWDESK_MEMORY_BACKEND="off",
        CREWDESK_ROUTER="model",  # one scripted call, not MiniLM over every routing example (a minute of CPU, no packaging question)
        CREWDESK_BROKER_URL="memory://",  # no Redis: the in-process quickstart keeps its breakers in memory
        CREWDESK_LOG_LEVEL="WARNING",
        CREWAI_DISABLE_TELEMETRY="true",
        OTEL_SDK_DISABLED="true",
        CREWAI_TRACING_ENABLED="false",
        CREWAI_TESTING="true",
        CREWAI_STORAGE_DIR=str(tmp_path / "crewai"),
        HF_HUB_OFFLINE="1",
    )

    imported = _run([str(python), "-c", "import crewdesk, crews; print(crewdesk.__file__); print(crews.__file__)"], cwd=tmp_path, env=env).stdout.split()
    assert len(imported) == 2 and all(Path(p).is_relative_to(site_packages) for p in imported), imported
    where = "from crewdesk.settings import load_settings, project_path; s = load_settings(); print(s.agents_dir, s.tasks_dir, project_path('migrations'), project_path('alembic.ini'))"
    paths = [Path(p) for p in _run([str(python), "-c", where], cwd=tmp_path, env=env).stdout.split()]
    assert paths == [site_packages / "crewdesk" / "_bundled" / name for name in ("agents", "tasks", "migrations", "alembic.ini")]
    assert all(p.exists() for p in paths)

    # One ticket end to end with the installed command, in its process (no worker): the schema from the bundled
    # migrations, the demo store from the package data, the crew (agents, tasks) and the procedures and their replies
    # from the bundled YAML.
    crewdesk = str(venv / "bin" / "crewdesk")
    _run([crewdesk, "demo", "load"], cwd=tmp_path, env=env)
    tickets = tmp_path / "ticket.jsonl"
    tickets.write_text(json.dumps(TICKET) + "\n")
    ran = _run([crewdesk, "run", str(tickets), "--provider", "scripted"], cwd=tmp_path, env=env)
    assert TICKET["id"] in ran.stdout, ran.stdout

    with closing(sqlite3.connect(database)) as db:
        (head,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
        status, resolution = db.execute("SELECT status, resolution FROM tickets WHERE external_id = ?", (TICKET["id"],)).fetchone()
    # the schema is at the newest of the bundled revisions: the one no other revises
    texts = [p.read_text() for p in (site_packages / "crewdesk" / "_bundled" / "migrations" / "versions").glob("*.py")]
    revisions = {m.group(1) for t in texts for m in [re.search(r'^revision = "(\w+)"', t, re.M)] if m}
    revised = {m.group(1) for t in texts for m in [re.search(r'^down_revision = "(\w+)"', t, re.M)] if m}
    assert revisions - revised == {head}, (head, sorted(revisions))
    # waiting_on_customer: the store's policy states a write whole and waits for the customer's yes (CREWDESK_CONFIRM_WRITES)
    assert status in ("resolved", "escalated", "waiting_on_customer"), status
    assert json.loads(resolution)["customer_reply"].strip(), resolution
