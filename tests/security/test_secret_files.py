"""Secrets reach crewdesk from files, not from the compose file (issue 20): CREWDESK_<NAME>_FILE names a file (a Docker
secret under /run/secrets/) whose stripped content is the setting <NAME>; the database's and the broker's passwords
are put into their URLs, so docker-compose.yml carries URLs without passwords."""

from __future__ import annotations

import pytest
from pydantic_settings import SettingsError
from sqlalchemy.engine import make_url

from crewdesk.memory.service import open_backend
from crewdesk.settings import load_settings


def secret(tmp_path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")  # as `openssl rand -hex 32 > file` writes it
    return str(path)


def test_passwords_from_secret_files_go_into_the_database_and_broker_urls(tmp_path, monkeypatch):
    monkeypatch.setenv("CREWDESK_DATABASE_URL", "postgresql+psycopg://crewdesk_app@postgres:5432/crewdesk")
    monkeypatch.setenv("CREWDESK_DATABASE_PASSWORD_FILE", secret(tmp_path, "db", "p@ss:w/rd"))
    monkeypatch.setenv("CREWDESK_BROKER_URL", "redis://redis:6379/0")
    monkeypatch.setenv("CREWDESK_BROKER_PASSWORD_FILE", secret(tmp_path, "redis", "r3dis"))
    settings = load_settings()
    url = make_url(settings.database_url)
    assert (url.username, url.password, url.host, url.database) == ("crewdesk_app", "p@ss:w/rd", "postgres", "crewdesk")
    assert settings.broker_url == "redis://:r3dis@redis:6379/0"
    assert settings.database_password.get_secret_value() == "p@ss:w/rd"


def test_the_weaviate_key_from_a_secret_file_reaches_the_client(tmp_path, monkeypatch):
    monkeypatch.setenv("CREWDESK_WEAVIATE_API_KEY_FILE", secret(tmp_path, "weaviate", "wv-key"))
    settings = load_settings(memory_backend="weaviate", weaviate_url="http://weaviate:8080", home=tmp_path)
    backend = open_backend(settings=settings)
    assert backend is not None and backend.api_key == "wv-key"  # sent as Auth.api_key (Weaviate itself is not run here)


def test_a_setting_and_its_file_both_set_or_a_missing_file_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CREWDESK_SMTP_PASSWORD", "literal")
    monkeypatch.setenv("CREWDESK_SMTP_PASSWORD_FILE", secret(tmp_path, "smtp", "from-file"))
    with pytest.raises(SettingsError, match="CREWDESK_SMTP_PASSWORD and CREWDESK_SMTP_PASSWORD_FILE are both set"):
        load_settings()
    monkeypatch.delenv("CREWDESK_SMTP_PASSWORD")
    assert load_settings().smtp_password.get_secret_value() == "from-file"
    monkeypatch.setenv("CREWDESK_SMTP_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match="CREWDESK_SMTP_PASSWORD_FILE: cannot read"):
        load_settings()


def test_a_url_that_already_has_a_password_is_not_given_a_second(tmp_path, monkeypatch):
    monkeypatch.setenv("CREWDESK_BROKER_PASSWORD_FILE", secret(tmp_path, "redis", "r3dis"))
    with pytest.raises(ValueError, match="already carries a password"):
        load_settings(broker_url="redis://:other@redis:6379/0")
