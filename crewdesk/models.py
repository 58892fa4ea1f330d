"""Every table, in one place: importing this module registers each domain's models on `metadata` (Base.metadata),
so that Alembic (migrations/env.py: autogenerate, `alembic check`) and anything that creates a schema see all of them.
It imports every domain that has tables, so it sits above them and nothing in crewdesk imports it: a domain imports
only the models it refers to, and crewdesk.db, the core, none."""

from __future__ import annotations

from crewdesk import pii
from crewdesk.approvals import models as approvals
from crewdesk.audit import models as audit
from crewdesk.auth import models as auth
from crewdesk.db import Base
from crewdesk.effects import models as effects
from crewdesk.inbound import models as inbound
from crewdesk.runs import models as runs
from crewdesk.store import models as store
from crewdesk.tickets import models as tickets

MODULES = (approvals, audit, auth, effects, inbound, pii, runs, store, tickets)
metadata = Base.metadata
