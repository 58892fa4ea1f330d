"""Run Alembic migrations programmatically (crewdesk init, tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from crewdesk.settings import project_path


def alembic_config(url: str) -> Config:
    config = Config(str(project_path("alembic.ini")))
    config.set_main_option("script_location", str(project_path("migrations")))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)
