"""docker-compose.yml cannot run here (no Docker engine), so check it against the code instead."""

from __future__ import annotations

from pathlib import Path

import yaml

from crewdesk.cli import app
from crewdesk.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_compose_env_names_are_real_settings_and_commands_exist():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "weaviate", "worker", "api", "llm"} <= set(services)
    known = {f"CREWDESK_{name.upper()}" for name in Settings.model_fields}
    commands = {c.name or c.callback.__name__ for c in app.registered_commands} | {g.name for g in app.registered_groups}
    for name, service in services.items():
        env = service.get("environment") or {}
        for key in env:
            if key.startswith("CREWDESK_"):
                assert key.removesuffix("_FILE") in known, f"{name}: {key} is not a setting (nor a setting's _FILE)"
        if service.get("build"):
            assert service["command"][0] in commands, f"{name}: crewdesk has no command {service['command'][0]!r}"
    settings = Settings(**{k[len("CREWDESK_") :].lower(): v for k, v in services["worker"]["environment"].items()})
    assert settings.visibility_timeout > settings.task_time_limit  # a running ticket is never redelivered
    assert settings.database_url.startswith("postgresql+psycopg://")


def test_redis_keeps_the_queue_across_a_restart():
    """AOF persistence on a volume: a restarted Redis still holds queued tickets (the reconciler is the second line)."""
    redis_service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"]
    command = redis_service["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis_service["volumes"])
