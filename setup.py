"""What pyproject.toml cannot say: its packages are either a list or a find directive, never the found packages plus
others from elsewhere. The wheel needs both: the packages [tool.setuptools.packages.find] finds, and the project's data
folders mapped under crewdesk._bundled, so that agents/, tasks/ and migrations/ (with alembic.ini, see package-data)
ship inside it as crewdesk/_bundled/... while here they stay top-level folders, never packages named agents or tasks.
Which files go in: [tool.setuptools.package-data]. Where they are read from at run time: crewdesk.settings.project_path.
A build without this file (the Dockerfile's editable install copies none) still gets every package, only not the copies,
which a checkout does not read."""

from setuptools import setup
from setuptools.dist import Distribution

BUNDLED = {"crewdesk._bundled.agents": "agents", "crewdesk._bundled.tasks": "tasks", "crewdesk._bundled.migrations": "migrations"}
SUBPACKAGES = ("crewdesk._bundled.migrations.versions",)  # its folder follows from its parent's


class BundlingDistribution(Distribution):
    def parse_config_files(self, *args, **kwargs):
        super().parse_config_files(*args, **kwargs)  # applies pyproject.toml, which sets the found packages
        extra = [*BUNDLED, *SUBPACKAGES]
        self.packages = [*(p for p in self.packages or () if p not in extra), *extra]
        self.package_dir = {**(self.package_dir or {}), **BUNDLED}


setup(distclass=BundlingDistribution)
