"""Regenerate .env.example from crewdesk/settings.py (tests/unit/test_units.py checks they agree)."""

from pathlib import Path

from crewdesk.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHOWN = {"home": "~/.crewdesk", "agents_dir": "./agents", "tasks_dir": "./tasks"}

lines = [
    "# crewdesk settings: every name crewdesk reads. Copy to .env and uncomment what you change; defaults are shown.",
    "# Any of them may come from a file instead (a Docker secret): CREWDESK_<NAME>_FILE=/run/secrets/... in the environment,",
    "# the file's content stripped; not both. The database's and the broker's passwords go into their URLs.",
    "",
]
for name, field in Settings.model_fields.items():
    default = SHOWN.get(name, field.default)
    if hasattr(default, "get_secret_value") or default is None:
        default = ""
    default = getattr(default, "value", default)
    if field.description:
        lines.append(f"# {field.description}")
    lines.append(f"# CREWDESK_{name.upper()}={default}")
(ROOT / ".env.example").write_text("\n".join(lines) + "\n")
