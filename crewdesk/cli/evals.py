"""`crewdesk eval`: the example tickets, and tau2-bench retail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crewdesk.cli.common import console, load_config, migrate, sessions
from crewdesk.cli.interrupts import same_command, stoppable
from crewdesk.db import transaction
from crewdesk.llm.local import local_model
from crewdesk.store.service import DEFAULT_DB_JSON, load_store, read_store

app = typer.Typer(help="Evaluations.", no_args_is_help=True)


@app.command("examples")
def eval_examples(
    path: Annotated[Path, typer.Argument(help="A ticket set: JSON lines with `body`, and `actions` (expected writes) and/or `expect`.")] = Path(
        "examples/tickets.jsonl"
    ),
    limit: Annotated[int, typer.Option(help="Only the first N tickets (0 = all).")] = 0,
    only: Annotated[str, typer.Option("--ids", help="Only these ticket ids, comma-separated.")] = "",
    provider: Annotated[str | None, typer.Option(help="Model provider (default CREWDESK_LLM_PROVIDER).")] = None,
    approvals: Annotated[
        bool | None,
        typer.Option("--approvals/--no-approvals", help="Writes above the threshold wait for a person (default: off when every ticket states its `actions`)."),
    ] = None,
    report: Annotated[Path | None, typer.Option(help="HTML report path (a .json beside it, and a .trials.jsonl journal, one line per ticket).")] = None,
    resume: Annotated[bool, typer.Option(help="Skip tickets already in the report's journal (after Ctrl-C or a crash); needs --report.")] = False,
) -> None:
    """Run a ticket set on the demo store and score each ticket by the store it leaves (and its `expect`); exit 1 if any differs."""
    from crewdesk.llm.factory import LLMFactory
    from crews.eval_examples import read_set, run_set
    from crews.evaluation import journal_for, write_report
    from crews.interruption import put_back_store
    from crews.pipeline import Pipeline

    rows = read_set(path)
    if only:
        wanted = {t.strip() for t in only.split(",") if t.strip()}
        rows = [row for row in rows if str(row["id"]) in wanted]
    rows = rows[:limit] if limit else rows
    if approvals is None:
        approvals = not (rows and all("actions" in row for row in rows))  # the set states the writes a customer asked for
    # one ticket, one run, scored by the store it leaves: writes are made at once, not stated for a yes that no one sends
    # (the confirmation turn is measured by `eval tau2-retail --protocol conversation`)
    overrides: dict = {"llm_provider": provider, "log_json": False, "log_level": "ERROR", "memory_backend": "off", "confirm_writes": "off"}
    if not approvals:
        overrides["approval_threshold_usd"] = -1.0
    settings = load_config(**overrides)
    migrate(settings)
    factory = sessions(settings)
    if resume and report is None:
        raise typer.BadParameter("--resume needs --report (the journal lives beside it)")
    journal = journal_for(report) if report is not None else None
    if journal is not None and not resume and journal.exists():
        journal.unlink()
    with transaction(factory) as db:
        load_store(db=db, data=read_store(DEFAULT_DB_JSON))
    with stoppable() as work, local_model(settings):  # Ctrl-C / SIGTERM: crewdesk/cli/interrupts.py
        work.guard(factory)
        work.on_stop(partial(put_back_store, session_factory=factory))
        if report is not None:
            work.resume = same_command(report=str(report), resume=True)
        pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings))
        outcome = work.run(
            partial(
                run_set,
                pipeline=pipeline,
                session_factory=factory,
                rows=rows,
                name=path.stem,
                journal=journal,
                progress=lambda t: console.print(
                    f"{t.task_id}: {t.status} ({t.seconds:.1f} s) {'ok' if t.success else '; '.join(t.problems) or 'wrong'}", highlight=False, markup=False
                ),
            )
        )
    console.print(_summary_table(f"{path} ({len(outcome.trials)} tickets)", outcome, None))
    if report is not None:
        console.print(f"report: {write_report(outcome, report)}")
    passed = sum(t.success for t in outcome.trials)
    console.print(f"{passed}/{len(outcome.trials)} tickets got their expected outcome")
    raise typer.Exit(1 if passed < len(outcome.trials) else 0)


@app.command("tau2-retail")
def eval_tau2_retail(
    split: Annotated[str, typer.Option(help="Task split.")] = "train",
    trials: Annotated[int, typer.Option(help="Independent trials per task (for pass^k).")] = 1,
    limit: Annotated[int, typer.Option(help="Only the first N tasks (0 = all).")] = 0,
    only: Annotated[str, typer.Option("--tasks", help="Only these task ids, comma-separated (e.g. 0,1,10).")] = "",
    process: Annotated[str | None, typer.Option(help="sequential | hierarchical (default CREWDESK_CREW_PROCESS).")] = None,
    provider: Annotated[str | None, typer.Option(help="Model provider (default CREWDESK_LLM_PROVIDER).")] = None,
    oracle_: Annotated[
        bool, typer.Option("--oracle", help="A scripted crew that follows each task's reference actions (checks tools, store and scorer).")
    ] = False,
    report: Annotated[Path | None, typer.Option(help="HTML report path (a .json beside it, and a .trials.jsonl journal of finished trials).")] = None,
    resume: Annotated[bool, typer.Option(help="Skip trials already in the report's journal (after Ctrl-C or a crash); needs --report.")] = False,
    protocol: Annotated[
        str,
        typer.Option(
            help="ticket: each task is one ticket written from its instructions; conversation: a simulated customer (an LLM) writes "
            "the first message and answers each question in the thread, as upstream's protocol."
        ),
    ] = "ticket",
    user_model: Annotated[
        str | None,
        typer.Option("--user-model", help="OpenAI-compatible base URL of the simulated customer's model (default: the local model on a port of its own)."),
    ] = None,
    max_turns: Annotated[int, typer.Option(help="Conversation protocol: the customer's answers at most.")] = 4,
    first_message: Annotated[
        str,
        typer.Option(help="Conversation protocol: who writes the first message: simulator (upstream's way) or ticket (the ticket protocol's ticket)."),
    ] = "simulator",
    compare: Annotated[
        Path | None,
        typer.Option(help="Another run's journal (.trials.jsonl) or report of the same tasks, e.g. the ticket protocol's: shown beside this one."),
    ] = None,
) -> None:
    """Run the crew on tau2-bench retail tasks and score end states the upstream way."""
    if protocol not in ("ticket", "conversation"):
        raise typer.BadParameter("--protocol is ticket or conversation")
    if first_message not in ("simulator", "ticket"):
        raise typer.BadParameter("--first-message is simulator or ticket")
    beside = _beside(compare) if compare is not None else None
    with stoppable() as work:  # Ctrl-C / SIGTERM: crewdesk/cli/interrupts.py
        overrides = {
            "llm_provider": "scripted" if oracle_ else provider,
            "crew_process": process,
            "log_json": False,
            "log_level": "ERROR",
            "approval_threshold_usd": -1.0,  # no human in the loop: the benchmark scores the customer's conversation
            # the ticket protocol is one message: its writes are made at once; the conversation protocol states each write
            # and waits for the simulated customer's yes, as the store's policy asks
            "confirm_writes": "policy" if protocol == "conversation" else "off",
            **({"procedures": False} if oracle_ else {}),
        }  # the oracle replays reference tool calls through the crew
        settings = load_config(**overrides)
        from crewdesk.llm.factory import LLMFactory  # after load_config: it keeps CrewAI's telemetry off before CrewAI loads
        from crews.evaluation import journal_for, load_tasks, per_intent, read_journal, run_eval, write_report
        from crews.interruption import put_back_store
        from crews.pipeline import Pipeline

        migrate(settings)
        tasks = load_tasks(split)
        tasks = tasks[:limit] if limit else tasks
        if only:
            wanted = {t.strip() for t in only.split(",") if t.strip()}
            tasks = [t for t in tasks if str(t["id"]) in wanted]
        factory = work.guard(sessions(settings))
        tag = time.strftime("%Y%m%d%H%M%S")
        if resume and report is None:
            raise typer.BadParameter("--resume needs --report (the journal lives beside it)")
        report = report or settings.home / "reports" / f"tau2-retail-{split}-{tag}.html"
        journal = journal_for(report)
        if not resume and journal.exists():
            journal.unlink()
        work.on_stop(partial(put_back_store, session_factory=factory))
        work.resume = same_command(report=str(report), resume=True)
        with local_model(settings), simulated_customer(settings, protocol, user_model) as simulator:
            pipeline = Pipeline(settings=settings, session_factory=factory, llm_factory=LLMFactory(settings))
            with Progress(
                TextColumn("[bold]tasks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"), console=console
            ) as bar:
                handle = bar.add_task("", total=len(tasks) * trials, completed=len(read_journal(journal)))
                outcome = work.run(
                    partial(
                        run_eval,
                        pipeline=pipeline,
                        tasks=tasks,
                        trials=trials,
                        split=split,
                        use_oracle=oracle_,
                        run_tag=tag,
                        journal=journal,
                        progress=lambda t: bar.update(handle, advance=1, description=f"task {t.task_id}: {'pass' if t.success else 'fail'}"),
                        simulator=simulator,
                        max_turns=max_turns,
                        first_message=first_message,
                    )
                )
        summary = outcome.summary()
        table = _summary_table(f"tau2-bench retail ({split}), {protocol} protocol, {summary['process']}, {summary['model']}", outcome, beside)
        theirs = per_intent(beside[1], tasks) if beside else {}
        for kind, (passed, total) in per_intent(outcome, tasks).items():
            table.add_row(f"pass^1, {kind}", f"{passed}/{total}", *([f"{theirs[kind][0]}/{theirs[kind][1]}" if kind in theirs else ""] if beside else []))
        console.print(table)
        path = write_report(outcome, report, beside=beside)
        console.print(f"report: {path}")


def _beside(path: Path) -> tuple[str, Any]:
    """Another run's journal (or the report it sits beside), to show next to this run."""
    from crews.eval_report import EvalReport
    from crews.evaluation import journal_for, read_journal

    journal = path if path.name.endswith(".trials.jsonl") else journal_for(path)
    if not journal.is_file():
        raise typer.BadParameter(f"{journal}: no such journal")
    trials = read_journal(journal)
    if not trials:
        raise typer.BadParameter(f"{journal}: no trials in it")
    return journal.name.removesuffix(".trials.jsonl"), EvalReport(split="", process="", model="", trials=trials)


def _summary_table(title: str, outcome: Any, beside: tuple[str, Any] | None) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value")
    theirs = beside[1].summary() if beside else {}
    if beside:
        table.add_column(beside[0])
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    for key, value in outcome.summary().items():
        table.add_row(key, cell(value), *([cell(theirs.get(key, ""))] if beside else []))
    return table


@app.command("report")
def eval_report(
    journal: Annotated[Path, typer.Argument(help="A run's journal (.trials.jsonl), as `eval` writes it beside its report.")],
    compare: Annotated[Path | None, typer.Option(help="Another run's journal of the same tasks, shown beside it.")] = None,
    out: Annotated[Path | None, typer.Option(help="The HTML report to write (default: beside the journal, .html).")] = None,
) -> None:
    """Write the HTML report of a finished run again from its journal, with another run beside it: e.g. a conversation
    run and the ticket protocol's, from the journals committed under bench/results/, without running either again."""
    from crews.eval_report import write_report

    name, report = _beside(journal)
    report.split = name
    beside = _beside(compare) if compare is not None else None
    console.print(_summary_table(name, report, beside))
    path = write_report(report, out or journal.with_name(name + ".html"), beside=beside)
    console.print(f"report: {path}")


@contextmanager
def simulated_customer(settings, protocol: str, user_model: str | None) -> Iterator[Any]:
    """The conversation protocol's simulated customer: on --user-model, or the packaged local model served on its own
    port (the next one after the agent's), stopped at the end. None for the ticket protocol."""
    if protocol != "conversation":
        yield None
        return
    from crews.eval_conversation import ChatSimulator

    if user_model:
        yield ChatSimulator(base_url=user_model)
        return
    from crewdesk.llm.local import LocalModelServer, ensure_model

    server = LocalModelServer(
        model_path=settings.local_model_path or ensure_model(settings.models_dir),
        host=settings.local_host,
        port=settings.local_port + 1,
        n_ctx=settings.local_ctx,
        threads=settings.local_threads,
        parallel=1,
        binary=settings.local_server_bin,
        start_timeout=settings.local_start_timeout,
        log_path=settings.home / "logs" / "llama-server-customer.log",
    )
    try:
        yield ChatSimulator(base_url=server.start())
    finally:
        server.stop()
