"""The crewdesk command line. Bad input gets one clear line, never a traceback (crewdesk/cli/exits.py).

One module per area, each with its Typer app: tickets (submit, run, show, kpi) and worker (init, worker, api, status)
at the top level; model, evals, intake (email, backlog), knowledge (kb, memory), approvals (approvals, audit) and demo
as groups; common holds the consoles, settings and sessions they share.

Start-up stays light: `crewdesk --help` must not import CrewAI (crews.*, crewdesk.llm.factory, crewdesk.api), torch,
presidio or Celery (workers.*), so the commands import those inside their function bodies, where they are used. Every
other import sits at the top of its module.
"""

from __future__ import annotations

import sys

import typer
from typer.models import CommandInfo

from crewdesk.cli import apikeys, approvals, demo, evals, intake, knowledge, model, tickets, users, worker
from crewdesk.cli.exits import exit_code
from crewdesk.cli.intake import BAD_ROWS_SHOWN

__all__ = ["BAD_ROWS_SHOWN", "app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="crewdesk: agentic customer-support worker service.")

# Top-level commands are the root's own (`crewdesk submit`, not `crewdesk tickets submit`; docker-compose's commands
# are checked against app.registered_commands), listed by --help in this order.
HELP_ORDER = ("init", "submit", "worker", "api", "kpi", "run", "status", "show")


def _rank(command: CommandInfo) -> int:
    name = command.name or getattr(command.callback, "__name__", "")
    return HELP_ORDER.index(name) if name in HELP_ORDER else len(HELP_ORDER)


app.registered_commands.extend(sorted([*worker.app.registered_commands, *tickets.app.registered_commands], key=_rank))
app.add_typer(demo.app, name="demo")
app.add_typer(apikeys.app, name="apikey")
app.add_typer(users.app, name="user")
app.add_typer(approvals.app, name="approvals")
app.add_typer(evals.app, name="eval")
app.add_typer(intake.backlog_app, name="backlog")
app.add_typer(approvals.audit_app, name="audit")
app.add_typer(model.app, name="model")
app.add_typer(intake.email_app, name="email")
app.add_typer(knowledge.kb_app, name="kb")
app.add_typer(knowledge.memory_app, name="memory")


def main() -> None:
    """Entry point (`crewdesk`): the exit code and the one line on stderr come from exits.exit_code, by the error's type."""
    try:
        code = app(standalone_mode=False)  # click returns typer.Exit's code here instead of raising
    except Exception as exc:
        code = exit_code(exc)
        if code is None:
            raise
    sys.exit(code if isinstance(code, int) else 0)
