"""Imports point one way: faces and workers -> crews -> tools -> core (import-linter contracts)."""

from __future__ import annotations

import pkgutil
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
