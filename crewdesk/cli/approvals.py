"""`crewdesk approvals` (writes waiting for a person) and `crewdesk audit` (the audit trail)."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.table import Table

from crewdesk.approvals import service as approvals
from crewdesk.audit import service as audit
from crewdesk.cli.common import console, err, load_config, sessions

app = typer.Typer(help="Writes waiting for a person.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)

BY_HELP = (
    "Who decides (recorded in the audit trail; the default is your login). The command runs with the database's "
    "credentials, as an operator; nobody decides a write of a ticket they submitted, and a second approval needs a different name."
)


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name in this environment (a container without USER or a passwd entry)
        return "cli"


OPERATOR = _operator()


@app.command("list")
def approvals_list(all_: Annotated[bool, typer.Option("--all", help="Also decided ones.")] = False) -> None:
    """List approvals (pending by default)."""
    settings = load_config(log_json=False)
    with sessions(settings)() as db:
        rows = approvals.listing(db=db, status=None if all_ else "pending")
        table = Table(title="approvals")
        for column in ("id", "ticket", "action", "arguments", "refund", "requested by", "status", "approved by", "reason"):
            table.add_column(column, overflow="fold")
        for row in rows:
            approved_by = f"{', '.join(approvals.approvers(row))} ({len(approvals.approvers(row))} of {row.approvals_needed})"
            table.add_row(
                str(row.id),
                str(row.ticket_id),
                row.action,
                str(row.arguments),
                f"${row.amount_usd:.2f}",
                row.requested_by,
                row.status,
                approved_by,
                row.reason or "",
            )
    console.print(table)


def _decide(approval_id: int, approve: bool, by: str, reason: str | None, inline: bool) -> None:
    from crewdesk.llm.factory import LLMFactory
    from crews.approvals import decide
    from crews.pipeline import Pipeline

    settings = load_config(log_json=False, log_level="WARNING")
    factory = sessions(settings)
    pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings))
    resume: Callable[[int], Any]
    if inline:
        resume = pipeline.process
    else:
        from workers.app import configure
        from workers.tasks import process_ticket

        configure(settings)
        resume = lambda ticket_id: process_ticket.apply_async(args=[ticket_id])  # noqa: E731
    approval, _result = decide(pipeline=pipeline, approval_id=approval_id, approve=approve, by=by, reason=reason, resume=resume)
    if approval.status == "pending":
        console.print(
            f"approval {approval.id} approved by {by} (1 of {approval.approvals_needed}); it waits for a different person's approval, "
            f"nothing was done; ticket {approval.ticket_id} keeps waiting"
        )
        return
    verb = "approved" if approve else "rejected"
    done = f"; {approval.action} done" if approve else ""
    console.print(f"approval {approval.id} {verb}{done}; ticket {approval.ticket_id} {'resumed' if inline else 'queued to resume'}")


@app.command("approve")
def approvals_approve(
    approval_id: int,
    by: Annotated[str, typer.Option(help=BY_HELP)] = OPERATOR,
    note: Annotated[str | None, typer.Option(help="Why.")] = None,
    inline: Annotated[bool, typer.Option(help="Resume the ticket in this process instead of on the queue.")] = False,
) -> None:
    """Approve: the write runs once, and the ticket resumes without repeating completed actions. Above the
    second-approval amount (CREWDESK_SECOND_APPROVAL_ABOVE_USD) the first approval is recorded and the write waits for
    a second one under a different --by."""
    _decide(approval_id, True, by, note, inline)


@app.command("reject")
def approvals_reject(
    approval_id: int,
    reason: Annotated[str, typer.Option(help="Why (recorded, and told to the crew).")],
    by: Annotated[str, typer.Option(help=BY_HELP)] = OPERATOR,
    inline: Annotated[bool, typer.Option(help="Resume the ticket in this process instead of on the queue.")] = False,
) -> None:
    """Reject: nothing runs; the ticket resumes and the crew answers the customer accordingly."""
    _decide(approval_id, False, by, reason, inline)


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute every ticket's audit chain and the global seal log; exit 1 and name the rows if any was edited,
    deleted or inserted, or a sealed chain is gone."""
    settings = load_config(log_json=False)
    with sessions(settings)() as db:
        report = audit.verify(db=db)
    for problem in report.problems:
        err.print(problem, highlight=False)
    if not report.ok:
        console.print(f"audit trail BROKEN: {len(report.problems)} problem(s) in {report.checked} rows, {report.chains} chains, {report.seals} seals")
        raise typer.Exit(1)
    console.print(
        f"audit trail intact: {report.checked} rows in {report.chains} chains, {report.seals} seals"
        + (f" ({report.unsealed} rows after their chain's last seal)" if report.unsealed else "")
    )
