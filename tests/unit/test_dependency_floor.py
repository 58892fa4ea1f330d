"""The weaviate-client floor in pyproject.toml is the first release with every API the Weaviate backend uses
(Configure.Vectors and create(vector_config=) arrived in 4.16.0; 4.15.4 already had collections.use, 4.9 had neither),
and the installed client meets it (issue 23)."""

from __future__ import annotations

import importlib.metadata
import inspect
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
FIRST_WITH_EVERY_API = Version("4.16")


def _requirement(name: str) -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [found] = [Requirement(line) for line in project["dependencies"] if Requirement(line).name == name]
    return found


def test_weaviate_client_floor_is_the_first_version_with_every_api_used():
    requirement = _requirement("weaviate-client")
    floors = [Version(spec.version) for spec in requirement.specifier if spec.operator in (">=", "==", "~=")]
    assert floors and min(floors) >= FIRST_WITH_EVERY_API, f"{requirement}: the backend needs {FIRST_WITH_EVERY_API} or later"
    assert Version("4.15.4") not in requirement.specifier  # the last release without Configure.Vectors
    assert Version("5.0") not in requirement.specifier  # v5 may change the API again


def test_the_installed_client_meets_the_floor_and_has_the_apis():
    requirement = _requirement("weaviate-client")
    installed = importlib.metadata.version("weaviate-client")
    assert requirement.specifier.contains(installed, prereleases=True), f"weaviate-client {installed} installed, pyproject asks {requirement}"
    from weaviate.classes.config import Configure
    from weaviate.collections.collections.sync import _Collections

    assert hasattr(Configure, "Vectors") and hasattr(Configure.Vectors, "self_provided")
    assert "vector_config" in inspect.signature(_Collections.create).parameters
    assert hasattr(_Collections, "use")
