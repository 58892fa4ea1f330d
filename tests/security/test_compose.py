"""docker-compose.yml as a secure default (issue 20): one published port (the API's), no anonymous access, no literal
password or key anywhere in the file (Docker secrets under deploy/secrets/ instead), Redis with a password, Grafana's
admin password from a secret, our image running as a non-root user, and the API and workers on a database role that
is not the tables' owner.

`compose_problems` is the checker; each hole is shown caught twice: in the file as it was before this issue (from git)
and by one fault put into today's file. `docker compose config` runs only where a compose binary is installed (no
Docker engine is needed for it)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BEFORE_ISSUE_20 = "a7459f40f33a8d5b8a318b11e6681801f6d2aec5"  # the last commit with the old docker-compose.yml and Dockerfile

API = ("api", 8000)  # the one service and container port that may be published
SECRET_WORDS = {"PASSWORD", "PASSWD", "PASS", "SECRET", "TOKEN", "KEY", "KEYS"}
# A value that is not a literal: a variable from .env without a default (${VAR}, ${VAR:?message}) ...
REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}$")
# ... or, inside a shell command, a secret file read when the container starts.
SECRET_READ = r"\$\$\(cat /run/secrets/[\w.-]+\)"
URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^:/@\s\"']*:(?P<password>" + SECRET_READ + r"|\$\{\w+\}|[^@\s/\"']+)@")
FLAG_SECRET = re.compile(r"--(?:requirepass|basic[-_]auth|password|pass)[= ](?P<value>\S+)")
TRUE = {"true", "1", "yes", "on"}


def _strings(value: Any) -> list[str]:
    """Every string in a service (environment values, commands, entrypoints, healthchecks), nested lists and maps."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _is_secret_name(key: str) -> bool:
    words = key.upper().split("_")
    return "PASSWORD" in key.upper() or words[-1] in SECRET_WORDS


def _published(service: dict) -> list[tuple[str, int]]:
    """(host binding, container port) of every published port."""
    found = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            found.append((str(port.get("host_ip", "")), int(port["target"])))
            continue
        parts = str(port).split("/")[0].split(":")
        if len(parts) == 1:  # a container port alone: Docker publishes it on a random host port
            found.append(("", int(parts[0])))
        else:
            found.append((":".join(parts[:-1]), int(parts[-1])))
    return found


def _runs_as_root(dockerfile: str) -> bool:
    users = [line.split(None, 1)[1].strip() for line in dockerfile.splitlines() if line.strip().upper().startswith("USER ")]
    return not users or users[-1].split(":")[0] in {"root", "0"}


def compose_problems(compose: dict, dockerfile: str) -> list[str]:
    """What makes the compose file an insecure default; [] when nothing does."""
    problems: list[str] = []
    services: dict[str, dict] = compose.get("services") or {}
    defined_secrets: dict[str, dict] = compose.get("secrets") or {}
    published = [(name, bind, port) for name, service in services.items() for bind, port in _published(service)]
    for name, _bind, port in published:
        if (name, port) != API:
            problems.append(f"published: {name} port {port}")
    if not any((name, port) == API for name, _, port in published):
        problems.append("published: the API is not")
    if len(published) > 1:
        problems.append(f"published: {len(published)} ports, one allowed")
    owner = ""
    for name, service in services.items():
        env = _environment(service)
        image = str(service.get("image", ""))
        if service.get("network_mode") == "host":
            problems.append(f"published: {name} shares the host's network")
        for key, value in env.items():
            if "ANONYMOUS" in key.upper() and "ROLE" not in key.upper() and value.strip().lower() in TRUE:
                problems.append(f"anonymous access: {name} {key}={value}")
            if key.upper() == "POSTGRES_HOST_AUTH_METHOD" and value.strip().lower() == "trust":
                problems.append(f"anonymous access: {name} {key}=trust")
            if key.upper().endswith("_FILE"):
                if not value.startswith("/run/secrets/"):
                    problems.append(f"secret file: {name} {key} is not a Docker secret ({value})")
            elif _is_secret_name(key) and not REFERENCE.match(value):
                problems.append(f"literal secret: {name} {key}")
        for text in _strings({k: v for k, v in service.items() if k != "environment"}) + list(env.values()):
            for match in URL_PASSWORD.finditer(text):
                if not re.fullmatch(SECRET_READ + r"|\$\{\w+\}", match["password"]):
                    problems.append(f"literal secret: {name} has a password in a URL")
            for match in FLAG_SECRET.finditer(text):
                if not re.match(r"\$\{\w+\}|\$\$\(cat /run/secrets/|\"?\$\$\(cat /run/secrets/", match["value"]):
                    problems.append(f"literal secret: {name} passes a password on its command line")
        mounted = {s if isinstance(s, str) else s["source"] for s in service.get("secrets") or []}
        for secret in sorted(set(re.findall(r"/run/secrets/([\w.-]+)", " ".join(_strings(service))))):
            if secret not in mounted:
                problems.append(f"secret file: {name} reads /run/secrets/{secret} but does not mount it")
        for secret in mounted:
            file = str((defined_secrets.get(secret) or {}).get("file", ""))
            if not file or not Path(file).parent.as_posix().endswith("deploy/secrets"):  # `compose config` makes the path absolute
                problems.append(f"secret file: {secret} is not a file under ./deploy/secrets/ (kept out of git)")
        if str(service.get("user", "")).split(":")[0] in {"root", "0"}:
            problems.append(f"root: {name} runs as root")
        if service.get("build") and _runs_as_root(dockerfile):
            problems.append(f"root: {name} is built from a Dockerfile that runs as root")
        if image.startswith("redis"):
            command = " ".join(_strings(service.get("command")))
            if "requirepass" not in command or "/run/secrets/" not in command:
                problems.append(f"redis: {name} has no password (requirepass from a secret)")
        if "weaviate" in image and env.get("AUTHENTICATION_APIKEY_ENABLED", "").lower() not in TRUE:
            problems.append(f"anonymous access: {name} (Weaviate) without API-key authentication")
        if image.startswith("grafana/") and "GF_SECURITY_ADMIN_PASSWORD__FILE" not in env:
            problems.append(f"literal secret: {name} (Grafana) keeps its default admin password")
        if image.startswith("postgres"):
            owner = env.get("POSTGRES_USER", "postgres")
        broker = env.get("CREWDESK_BROKER_URL", "") if service.get("build") else ""
        if broker and urlsplit(broker).password is None and not {"CREWDESK_BROKER_PASSWORD", "CREWDESK_BROKER_PASSWORD_FILE"} & set(env):
            problems.append(f"redis: {name} connects to the broker without a password")
    for name, service in services.items():
        env = _environment(service)
        command = (service.get("command") or [""])[0] if service.get("build") else ""
        if command in {"api", "worker"} and owner:
            user = urlsplit(env.get("CREWDESK_DATABASE_URL", "postgresql://")).username
            if user in {owner, None}:
                problems.append(f"database: {name} connects as the tables' owner ({owner})")
    return problems


def load(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text())


def test_the_compose_file_is_a_secure_default():
    assert compose_problems(load("docker-compose.yml"), (ROOT / "Dockerfile").read_text()) == []


def test_the_operators_ports_are_on_loopback_only():
    """deploy/compose.ops.yml publishes Grafana, Prometheus and Flower for an SSH tunnel: on 127.0.0.1, nothing else."""
    ops = load("deploy/compose.ops.yml")["services"]
    main = load("docker-compose.yml")["services"]
    assert set(ops) == {"grafana", "prometheus", "flower"}
    for name, service in ops.items():
        assert _published(service) and all(bind.startswith("127.0.0.1:") for bind, _ in _published(service)), name
    grafana, flower = _environment(main["grafana"]), main["flower"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    assert "FLOWER_BASIC_AUTH=" in " ".join(_strings(flower["command"]))  # a login even on loopback


def _git_show(revision: str, path: str) -> str:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    shown = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode != 0:
        pytest.skip(f"{revision[:7]} is not in this clone's history: {shown.stderr.strip()}")
    return shown.stdout


def test_every_check_catches_the_file_before_issue_20():
    problems = compose_problems(yaml.safe_load(_git_show(BEFORE_ISSUE_20, "docker-compose.yml")), _git_show(BEFORE_ISSUE_20, "Dockerfile"))
    for expected in (
        "published: weaviate port 8080",
        "published: weaviate port 50051",
        "published: prometheus port 9090",
        "published: grafana port 3000",
        "published: flower port 5555",
        "anonymous access: weaviate AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED=true",
        "anonymous access: weaviate (Weaviate) without API-key authentication",
        "anonymous access: grafana GF_AUTH_ANONYMOUS_ENABLED=true",
        "literal secret: grafana (Grafana) keeps its default admin password",
        "literal secret: postgres POSTGRES_PASSWORD",
        "literal secret: api has a password in a URL",
        "redis: redis has no password (requirepass from a secret)",
        "redis: worker connects to the broker without a password",
        "root: api is built from a Dockerfile that runs as root",
        "database: worker connects as the tables' owner (crewdesk)",
        "database: api connects as the tables' owner (crewdesk)",
    ):
        assert expected in problems, f"{expected!r} not among {problems}"


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def put(compose: dict) -> None:
        *keys, last = path.split("/")
        node = compose
        for key in keys:
            node = node.setdefault(key, {})
        node[last] = value

    return put


FAULTS: dict[str, tuple[Callable[[dict], None], str]] = {
    "weaviate published": (_set("services/weaviate/ports", ["8080:8080"]), "published: weaviate port 8080"),
    "a second API port": (_set("services/api/ports", ["127.0.0.1:8000:8000", "8001:8000"]), "published: 2 ports, one allowed"),
    "postgres on the host network": (_set("services/postgres/network_mode", "host"), "published: postgres shares the host's network"),
    "weaviate anonymous": (
        _set("services/weaviate/environment/AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED", "true"),
        "anonymous access: weaviate AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED=true",
    ),
    "weaviate without api keys": (
        _set("services/weaviate/environment/AUTHENTICATION_APIKEY_ENABLED", "false"),
        "anonymous access: weaviate (Weaviate) without API-key authentication",
    ),
    "grafana anonymous": (_set("services/grafana/environment/GF_AUTH_ANONYMOUS_ENABLED", "true"), "anonymous access: grafana GF_AUTH_ANONYMOUS_ENABLED=true"),
    "postgres trust": (_set("services/postgres/environment/POSTGRES_HOST_AUTH_METHOD", "trust"), "anonymous access: postgres POSTGRES_HOST_AUTH_METHOD=trust"),
    "a literal password": (_set("services/postgres/environment/POSTGRES_PASSWORD", "hunter2"), "literal secret: postgres POSTGRES_PASSWORD"),
    "a literal key": (_set("services/api/environment/CREWDESK_JIRA_API_TOKEN", "abc123"), "literal secret: api CREWDESK_JIRA_API_TOKEN"),
    "a variable's literal default": (
        _set("services/api/environment/CREWDESK_MEMORY_KEY_SECRET", "${MEMORY_KEY:-changeme}"),
        "literal secret: api CREWDESK_MEMORY_KEY_SECRET",
    ),
    "a password in a URL": (
        _set("services/worker/environment/CREWDESK_BROKER_URL", "redis://:hunter2@redis:6379/0"),
        "literal secret: worker has a password in a URL",
    ),
    "a password on a command line": (
        _set("services/flower/command", ["celery", "flower", "--basic-auth=admin:hunter2"]),
        "literal secret: flower passes a password on its command line",
    ),
    "a _FILE that is not a secret": (
        _set("services/api/environment/CREWDESK_DATABASE_PASSWORD_FILE", "/app/password.txt"),
        "secret file: api CREWDESK_DATABASE_PASSWORD_FILE is not a Docker secret (/app/password.txt)",
    ),
    "a secret not mounted": (
        _set("services/api/secrets", ["crewdesk_db_password"]),
        "secret file: api reads /run/secrets/redis_password but does not mount it",
    ),
    "a secret inside the repository": (
        _set("secrets/redis_password/file", "./redis_password"),
        "secret file: redis_password is not a file under ./deploy/secrets/ (kept out of git)",
    ),
    "redis without a password": (
        _set("services/redis/command", ["redis-server", "--appendonly", "yes"]),
        "redis: redis has no password (requirepass from a secret)",
    ),
    "a broker URL without the password": (
        lambda compose: compose["services"]["worker"].__setitem__(
            "environment", {k: v for k, v in compose["services"]["worker"]["environment"].items() if not k.startswith("CREWDESK_BROKER_PASSWORD")}
        ),
        "redis: worker connects to the broker without a password",
    ),
    "a container as root": (_set("services/redis/user", "root"), "root: redis runs as root"),
    "the API as the tables' owner": (
        _set("services/api/environment/CREWDESK_DATABASE_URL", "postgresql+psycopg://crewdesk@postgres:5432/crewdesk"),
        "database: api connects as the tables' owner (crewdesk)",
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_check_catches_its_fault(fault):
    compose = copy.deepcopy(load("docker-compose.yml"))
    for service in compose["services"].values():  # the anchors' maps are shared: give each service its own
        if isinstance(service.get("environment"), dict):
            service["environment"] = dict(service["environment"])
    change, expected = FAULTS[fault]
    change(compose)
    assert expected in compose_problems(compose, (ROOT / "Dockerfile").read_text())


def test_a_dockerfile_without_a_user_is_caught():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert not _runs_as_root(dockerfile)
    assert "root: api is built from a Dockerfile that runs as root" in compose_problems(
        load("docker-compose.yml"), "\n".join(line for line in dockerfile.splitlines() if not line.startswith("USER "))
    )


def _compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_shows_one_published_port():
    """The acceptance's own check: the file as Compose itself reads it (anchors, merge keys, `$$`) publishes one port."""
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose plugin or docker-compose here")
    shown = subprocess.run([*command, "-f", "docker-compose.yml", "config"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    config = yaml.safe_load(shown.stdout)
    published = [(name, port) for name, service in config["services"].items() for port in service.get("ports") or []]
    assert len(published) == 1 and published[0][0] == "api", published
    assert compose_problems(config, (ROOT / "Dockerfile").read_text()) == []


def test_the_secret_files_are_kept_out_of_git():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    compose = load("docker-compose.yml")
    for name, secret in compose["secrets"].items():
        ignored = subprocess.run(["git", "check-ignore", "-q", secret["file"]], cwd=ROOT)
        assert ignored.returncode == 0, f"{secret['file']} ({name}) would be committed"
    assert subprocess.run(["git", "check-ignore", "-q", "deploy/secrets/README.md"], cwd=ROOT).returncode == 1  # its README is


def test_the_console_secret_comes_from_a_secret_file():
    """The support console (issue 22) signs its sessions with a key from a Docker secret, never a literal in the file,
    and no service turns on its development mode (a key made per process, cookies without Secure)."""
    services = load("docker-compose.yml")["services"]
    api = _environment(services["api"])
    assert api["CREWDESK_CONSOLE_SECRET_KEY_FILE"] == "/run/secrets/console_secret_key" and "console_secret_key" in services["api"]["secrets"]
    assert load("docker-compose.yml")["secrets"]["console_secret_key"] == {"file": "./deploy/secrets/console_secret_key"}
    for name, service in services.items():
        env = _environment(service)
        assert "CREWDESK_CONSOLE_SECRET_KEY" not in env and env.get("CREWDESK_CONSOLE_DEV", "false").lower() not in TRUE, name
