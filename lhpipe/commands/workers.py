"""`lhpipe run --workers N`: N engine processes on one port, and the parent that keeps them.

The parent checks the program exactly as ``lhpipe run`` does (errors print in lint's text
format and exit 1 before anything starts), then starts N workers: each is ``python -m lhpipe
run PATHS --port P [--watch]`` with ``LHPIPE_WORKER_INDEX`` (0 to N-1) and ``LHPIPE_WORKERS``
(N) in its environment (:mod:`lhpipe.core.worker`). Each worker is a whole engine: it binds
the port itself with ``SO_REUSEPORT`` (the kernel spreads new connections over the workers),
joins the same consumer groups (the same files, so the same groups: Kafka spreads the
partitions), and answers ``/readyz`` for itself. The parent binds nothing, connects to nothing
and serves nothing; it only starts, signals, restarts and waits for the workers.

Signals: the first SIGTERM or SIGINT is forwarded to every worker, which drains as a single
``lhpipe run`` does; a second one is forwarded again, and the workers abandon their drain. The
workers run in their own process group, so a Ctrl-C on a terminal reaches only the parent (the
workers would otherwise each get it twice: from the terminal and from the parent); on Linux each
worker gets SIGTERM when the parent dies, so that a parent killed with SIGKILL leaves no worker
holding the port. A service manager that signals every process of the unit (systemd's default
``KillMode=control-group``) makes each worker see the first signal twice within milliseconds:
a worker takes a signal that repeats the first within a second for the same one, and the parent
spaces its own forwards further apart than that.

The parent exits once every worker has exited, with the worst of their exit codes (0 when all
are 0; a worker ended by a signal counts as 128 + its number, as a shell reports it, except one
ended by the SIGTERM or SIGINT the parent forwarded: that one only came before the worker's
engine handled signals, while it read its files, or after, while it exited, and stopped it as
asked).

A worker that exits while the parent is not stopping is restarted, as the one-process
deployment would be by its orchestrator: after :data:`FIRST_BACKOFF_SECONDS`, doubling with each
restart of that worker within :data:`RESTART_WINDOW_SECONDS` up to :data:`MAX_BACKOFF_SECONDS`.
Its partitions go to the other workers meanwhile (a rebalance) and its connections are refused
only while no worker listens, which never happens while another one runs. Two cases stop every
worker instead, and the parent then exits with the worst code: a worker that exits 2 (the port
cannot be bound, a setting is wrong: a restart would meet the same problem), and a worker that
has been restarted :data:`MAX_RESTARTS` times within :data:`RESTART_WINDOW_SECONDS` (a crash
loop; the orchestrator above the parent decides what happens next).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TextIO

from lhpipe.check.formats import wants_color
from lhpipe.check.outcome import ExitCode
from lhpipe.core.worker import DUPLICATE_SIGNAL_SECONDS, worker_environment

log = logging.getLogger("lhpipe.workers")

#: The first restart of a worker waits this long; each further one within the window twice as
#: long, up to :data:`MAX_BACKOFF_SECONDS`.
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0
#: A worker restarted this many times within :data:`RESTART_WINDOW_SECONDS` is not restarted
#: again: every worker is stopped and the parent exits.
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
#: How often the parent looks at its workers and at the signals it received.
TICK_SECONDS = 0.05
#: The parent's forwards of two signals are at least this far apart (see the module docstring).
FORWARD_SPACING_SECONDS = DUPLICATE_SIGNAL_SECONDS + 0.2


def worker_command(paths: Sequence[str], *, port: int, watch: bool) -> list[str]:
    """The command line of one worker: ``lhpipe run`` without ``--workers``."""
    command = [sys.executable, "-m", "lhpipe", "run", *paths, "--port", str(port)]
    if watch:
        command.append("--watch")
    return command


def exit_status(returncode: int) -> int:
    """A worker's exit status as a shell reports it: 128 + N for one ended by signal N."""
    return returncode if returncode >= 0 else 128 - returncode


def _parent_death_signal() -> Callable[[], None] | None:
    """What a worker runs before ``exec`` so that it gets SIGTERM when the parent dies (Linux's
    ``PR_SET_PDEATHSIG``); ``None`` elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def die_with_parent() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return die_with_parent


@dataclass
class _Slot:
    """One worker index and the process that runs it now."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    returncode: int | None = None  # of the last process that ran this index
    restart_at: float | None = None
    restarts: list[float] = field(default_factory=list)  # when, within the window


class WorkerParent:
    """Starts ``count`` workers of ``command``, forwards signals, restarts crashed workers and
    waits for them all (see the module docstring). :meth:`run` returns the exit code."""

    def __init__(self, command: Sequence[str], count: int) -> None:
        self.command = list(command)
        self.count = count
        self.slots = [_Slot(index) for index in range(count)]
        self.stopping = False
        self._signals: list[int] = []  # received, not handled yet
        self._received = 0
        self._forward_at: float | None = None  # a second signal's forward, when it is due
        self._forward_signal = signal.SIGTERM
        self._last_forward = -FORWARD_SPACING_SECONDS
        self._before_exec = _parent_death_signal()

    def run(self) -> int:
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for slot in self.slots:
                self._start(slot, time.monotonic())
            while True:
                now = time.monotonic()
                self._handle_signals(now)
                for slot in self.slots:
                    self._look_after(slot, now)
                if self.stopping and all(slot.process is None for slot in self.slots):
                    break
                time.sleep(TICK_SECONDS)
        finally:
            for slot in self.slots:  # only when the parent itself fails: no worker outlives it
                if slot.process is not None and slot.process.poll() is None:
                    slot.process.kill()
                    slot.process.wait()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        code = max(exit_status(slot.returncode or 0) for slot in self.slots)
        log.info("every worker has exited; exit code %d", code)
        return code

    # -- signals ---------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only noted here; the loop acts on it within a tick (no logging inside a handler).
        self._signals.append(signum)

    def _handle_signals(self, now: float) -> None:
        while self._signals:
            signum = signal.Signals(self._signals.pop(0))
            self._received += 1
            if self._received == 1 and not self.stopping:
                log.info(
                    "%s: stopping %d workers; they drain (a second signal stops them at once)",
                    signum.name,
                    self.count,
                )
                self._stop(signum, now)
            else:
                log.warning("%s again: the workers abandon their drain", signum.name)
                self._forward_signal = signum
                self._forward_at = max(now, self._last_forward + FORWARD_SPACING_SECONDS)
        if self._forward_at is not None and now >= self._forward_at:
            self._forward_at = None
            self._forward(self._forward_signal, now)

    def _stop(self, signum: signal.Signals, now: float) -> None:
        self.stopping = True
        for slot in self.slots:
            slot.restart_at = None
        self._forward(signum, now)

    def _forward(self, signum: signal.Signals, now: float) -> None:
        self._last_forward = now
        for slot in self.slots:
            if slot.process is not None:
                slot.process.send_signal(signum)  # nothing when it has exited: the loop reaps it

    # -- workers ---------------------------------------------------------------------------------

    def _start(self, slot: _Slot, now: float) -> None:
        slot.restart_at = None
        try:
            slot.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **worker_environment(slot.index, self.count)},
                process_group=0,  # a terminal's Ctrl-C reaches only the parent
                preexec_fn=self._before_exec,
            )
        except OSError as exc:
            log.error("worker %d could not be started: %s", slot.index, exc)
            slot.process = None
            self._exited(slot, 127, None, now)
            return
        log.info("worker %d of %d started (pid %d)", slot.index, self.count, slot.process.pid)

    def _look_after(self, slot: _Slot, now: float) -> None:
        if slot.process is not None:
            returncode = slot.process.poll()
            if returncode is not None:
                pid = slot.process.pid
                slot.process = None
                self._exited(slot, returncode, pid, now)
        elif slot.restart_at is not None and now >= slot.restart_at and not self.stopping:
            self._start(slot, now)

    def _exited(self, slot: _Slot, returncode: int, pid: int | None, now: float) -> None:
        slot.returncode = returncode
        what = f"worker {slot.index}" + ("" if pid is None else f" (pid {pid})")
        how = f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
        if self.stopping:
            if returncode in (-signal.SIGTERM, -signal.SIGINT):
                # The signal the parent forwarded, before the worker's engine handled signals
                # (still reading its files) or after (already exiting): stopped as asked.
                log.info("%s stopped by the forwarded %s", what, signal.Signals(-returncode).name)
                slot.returncode = 0
                return
            log.info("%s stopped with %s", what, how)
            return
        if returncode == ExitCode.USAGE:
            log.error("%s stopped with %s (a usage error): stopping every worker", what, how)
            self._stop(signal.SIGTERM, now)
            return
        slot.restarts = [t for t in slot.restarts if now - t < RESTART_WINDOW_SECONDS]
        if len(slot.restarts) >= MAX_RESTARTS:
            log.error(
                "%s stopped with %s after %d restarts within %.0f s: stopping every worker",
                what,
                how,
                len(slot.restarts),
                RESTART_WINDOW_SECONDS,
            )
            self._stop(signal.SIGTERM, now)
            return
        backoff = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** len(slot.restarts))
        slot.restarts.append(now)
        slot.restart_at = now + backoff
        log.warning("%s stopped unexpectedly with %s: restarting it in %.1f s", what, how, backoff)


def run_workers(
    paths: Sequence[str],
    *,
    port: int,
    watch: bool = False,
    workers: int,
    stderr: TextIO | None = None,
) -> int:
    """Check the program of ``paths``, then run it in ``workers`` processes on ``port`` until a
    signal; return the exit code (see the module docstring)."""
    from lhpipe.core.logs import configure_logging
    from lhpipe.engine.reload import ProgramRejected, load_program

    err = stderr or sys.stderr
    try:
        load_program(paths, color=wants_color(err))
    except ProgramRejected as exc:
        err.write(exc.report)
        err.flush()
        return exc.exit_code
    # Warnings are printed by worker 0, once; errors would have stopped everything above.
    configure_logging(err)
    log.info("starting %d workers on port %d", workers, port)
    parent = WorkerParent(worker_command(paths, port=port, watch=watch), workers)
    return parent.run()
