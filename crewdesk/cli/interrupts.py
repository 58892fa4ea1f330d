"""Ctrl-C and SIGTERM for the commands that work through tickets in this process (`crewdesk run`, `crewdesk eval`).

The first SIGINT or SIGTERM stops the work at once: each run still going is marked interrupted and its ticket put back,
with an audit row (crews/interruption.py), so the same command (or a worker, or the reconciler) finishes it later; one
line on stderr says what was interrupted and how to carry on; the exit status is 130 for SIGINT, 143 for SIGTERM. A
second signal ends the process at once, without that bookkeeping (the ticket's next run marks the run interrupted).

Why it is built this way:
- A model call blocks in a socket read for up to `llm_timeout` (300 s), sometimes on a pool thread of CrewAI's that
  the interpreter joins before it exits; and CrewAI's telemetry, when it is on, turns SIGTERM into SystemExit(0). So
  the work runs on a daemon thread (`Stoppable.run`) and the main thread only waits for it and owns the signals: the
  handler raises `Stopped` out of that wait, the `with` blocks around it close (the progress bar is drawn), and the
  process ends with os._exit: a normal exit would wait for the abandoned call.
- The call is abandoned, not cut: a local model server this process started is signalled only as the process's last
  act (crewdesk.llm.local.leaving), so the call never wakes to log a failure, count it on a circuit breaker or try a
  fallback model. The server's end is sure either way: PR_SET_PDEATHSIG signals it when this process is gone.
- The abandoned work may still be running when the main thread records what it stopped. Sessions from a guarded
  factory (`Stoppable.guard`) remember the runs they begin and, once stopped, refuse to commit outside the main thread,
  so nothing the abandoned work does can land after, or over, what is recorded. A commit already under way finishes
  first (the ticket's row lock orders the two) and is then seen as it is: a run that finished is left finished.
- An evaluation's journal line is written with one write(2) of a few hundred bytes, or not at all: ending the process
  cannot tear it, and a trial whose ticket could not commit writes none.
"""

from __future__ import annotations

import contextvars
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from crewdesk.cli.common import err
from crewdesk.llm import local
from crewdesk.runs.models import CrewRun

T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
POLL_SECONDS = 0.25  # the main thread's wait for the work; a signal interrupts it at once either way


class Stopped(BaseException):
    """The first SIGINT or SIGTERM, raised in the main thread wherever it is. A BaseException, like KeyboardInterrupt:
    no `except Exception` on the way out may take it for a failure of the ticket."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Abandoned(BaseException):
    """Raised in a thread other than the main one that tries to commit after the stop: its work was abandoned, and
    what the main thread records about it stands."""


class Stoppable:
    """What a command that works through tickets shares with the signal handler."""

    def __init__(self) -> None:
        self.stopped: Stopped | None = None
        self.resume = same_command()  # how to carry on, said on the last line; a command can say better
        self._runs: set[int] = set()  # crew_runs rows begun through guarded sessions (added to from the work's threads)
        self._runs_lock = threading.Lock()
        self._factory: sessionmaker[Session] | None = None
        self._on_stop: list[Callable[[], object]] = []
        self._handler = self._handle  # one bound method, so that getsignal() can be compared with it
        # A signal the process was started with ignored stays ignored (`nohup`, a script's `cmd &` keeps Ctrl-C for
        # the job in the foreground).
        self._signals = tuple(sig for sig in SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN)

    @property
    def runs(self) -> set[int]:
        with self._runs_lock:
            return set(self._runs)

    def guard(self, factory: sessionmaker[Session]) -> sessionmaker[Session]:
        """The session factory the work uses, guarded: it remembers the runs begun through it, and after the stop only
        the main thread may commit through it."""

        @event.listens_for(factory, "after_flush")
        def _note_runs(session: Session, _context: object) -> None:
            begun = [row.id for row in session.new if isinstance(row, CrewRun) and row.id is not None]
            if begun:
                with self._runs_lock:
                    self._runs.update(begun)

        @event.listens_for(factory, "before_commit")
        def _fence(session: Session) -> None:
            if self.stopped is not None and threading.current_thread() is not threading.main_thread():
                raise Abandoned(f"{self.stopped.name}: this work was abandoned")

        self._factory = factory
        return factory

    def on_stop(self, callback: Callable[[], object]) -> None:
        """Run `callback` in the main thread after the stop, once the runs are recorded (e.g. put back the store an
        evaluation works on)."""
        self._on_stop.append(callback)

    def run(self, work: Callable[[], T]) -> T:
        """`work()` on a daemon thread, with this thread's context; its result or its exception. The first signal
        raises Stopped here, while the work goes on until the process ends."""
        self._own_signals()  # again: an import since (CrewAI's telemetry) may have put its own handlers in
        results: list[T] = []
        errors: list[BaseException] = []
        done = threading.Event()
        context = contextvars.copy_context()

        def target() -> None:
            try:
                results.append(context.run(work))
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
                errors.append(exc)
            finally:
                done.set()

        threading.Thread(target=target, name="crewdesk-work", daemon=True).start()
        while not done.wait(POLL_SECONDS):
            pass
        if errors:
            raise errors[0]
        return results[0]

    def _own_signals(self) -> None:
        for sig in self._signals:
            if signal.getsignal(sig) is not self._handler:
                signal.signal(sig, self._handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopped is not None:
            _exit(
                f"{signal.Signals(signum).name} again: exiting now, without recording what was in flight (its next run marks it interrupted)",
                128 + signum,
                server_signal=signal.SIGKILL,
            )
        self.stopped = Stopped(signum)
        local.leaving()  # the model server is ended last, by _exit: see crewdesk.llm.local.leaving
        raise self.stopped

    def wind_up(self, stop: Stopped) -> NoReturn:
        """After the first signal, in the main thread, once the `with` blocks inside have closed: record what was in
        flight, say it on one line, and end the process."""
        problems: list[str] = []
        left = []
        runs = self.runs
        if runs and self._factory is not None:
            try:
                from crews.interruption import leave_resumable

                left = leave_resumable(session_factory=self._factory, run_ids=runs, cause=f"stopped by {stop.name}")
            except Exception as exc:  # noqa: BLE001 - the line still says how to carry on, and the next run marks the run
                problems.append(f"could not record the run in flight ({_first_line(exc)}): its next run marks it interrupted")
        for callback in self._on_stop:
            try:
                callback()
            except Exception as exc:  # noqa: BLE001 - said on the line; the next evaluation starts from a fresh store anyway
                name = getattr(getattr(callback, "func", callback), "__name__", "clean-up")  # a partial names its function
                problems.append(f"{name} failed ({_first_line(exc)})")
        if left:
            what = "; ".join(f"ticket {r.ticket_id} ({r.ticket}) is {r.status.value} again, its run {r.run_id} marked interrupted" for r in left)
        else:
            what = "no ticket was mid-run" if not problems else "a ticket was mid-run"
        said = "".join(f"; {problem}" for problem in problems)
        _exit(f"interrupted by {stop.name}: {what}{said}. To carry on: {self.resume}", stop.exit_code)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def same_command(**options: str | bool) -> str:
    """This process's command line (`crewdesk ...`), with the options it lacks added: `report="r.html"` adds
    `--report r.html`, `resume=True` the flag `--resume`."""
    args = sys.argv[1:]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if not any(arg == flag or arg.startswith(flag + "=") for arg in args):
            args = [*args, flag] if value is True else [*args, flag, str(value)]
    return shlex.join(["crewdesk", *args])


@contextmanager
def stoppable() -> Iterator[Stoppable]:
    """Own SIGINT and SIGTERM for the block; see the module's docstring. Outside the main thread (a command called
    in-process by a test) signals cannot be taken: the block runs as it would without it."""
    work = Stoppable()
    if threading.current_thread() is not threading.main_thread():
        yield work
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    work._own_signals()
    try:
        yield work
    except Stopped as stop:
        work.wind_up(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit(line: str, code: int, *, server_signal: signal.Signals = signal.SIGTERM) -> NoReturn:
    """Say `line` on stderr and end the process now, without waiting for threads (see the module's docstring). The
    local model servers it started are signalled last, with no blocking call between that and the end: a server takes
    longer to go than that, so the abandoned call never wakes to run another line."""
    try:
        err.print(line, highlight=False, markup=False, soft_wrap=True)  # one line, however long: scripts read it
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    finally:
        local.end_started_servers(server_signal)
        os._exit(code)
