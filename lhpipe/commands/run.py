"""`lhpipe run`: lint, compile, then run every pipeline until SIGTERM or SIGINT.

Order of events: the files are loaded and checked (errors print in lint's text format on stderr
and exit 1, before anything connects anywhere), settings are read (environment, then
``lhpipe.toml`` beside the pipelines, then the local stack's defaults), the HTTP listener binds
``--port`` on ``--host`` (every interface unless told otherwise: docs/operations.md; ``/healthz``,
``/readyz``, ``/metrics``, ``/``), then the Supervisor starts the
pipelines. The first SIGTERM or SIGINT drains: fetching stops, records in flight get up to 30 s
to finish, what is done is committed, and the process exits 0. A second signal abandons the
drain at once (what is done is still committed by the next run's redelivery: nothing is lost).

With ``--watch`` the files are watched (:mod:`lhpipe.engine.watch`) and every saved change is
hot-reloaded (:mod:`lhpipe.engine.reload`): a program with errors prints its diagnostics and
changes nothing that runs; a good one replaces only the pipelines and webhooks that changed.

A worker of ``lhpipe run --workers N`` (:mod:`lhpipe.commands.workers` starts it with
``LHPIPE_WORKER_INDEX`` and ``LHPIPE_WORKERS``: :mod:`lhpipe.core.worker`) runs this same
command, with three differences: it binds the port with ``SO_REUSEPORT``, its log lines carry
its index, and only worker 0 prints the program's warnings (the parent printed any errors and
started no worker). A signal repeated within a second of the first counts as the same one: a
service manager that signals every process of the unit and the parent's forwarded copy arrive
together, and must not abandon the drain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from lhpipe.check.formats import wants_color
from lhpipe.check.outcome import ExitCode

if TYPE_CHECKING:
    from lhpipe.check.program import Program
    from lhpipe.core.worker import Worker
    from lhpipe.engine.watch import Stamp
    from lhpipe.graph.model import CompiledProgram
    from lhpipe.settings import Settings

log = logging.getLogger("lhpipe.run")

#: Where ``lhpipe run`` listens without ``--host`` (``lhpipe run --workers`` hands its
#: ``--host`` to the workers through it too).
HOST_VARIABLE = "LHPIPE_HOST"
#: Every interface: probes, Prometheus and webhook providers reach the process from outside
#: (docs/operations.md).
DEFAULT_HOST = "0.0.0.0"


def run_engine(
    paths: Sequence[str],
    *,
    port: int = 8080,
    host: str | None = None,
    watch: bool = False,
    drain_seconds: float | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the pipelines of ``paths`` until a signal; return the exit code. The listener
    binds ``host:port``; ``host`` defaults to ``$LHPIPE_HOST``, else ``0.0.0.0`` (every
    interface: docs/operations.md)."""
    from lhpipe.core.worker import WorkerEnvironmentError, this_worker
    from lhpipe.engine.reload import ProgramRejected, load_program

    err = stderr or sys.stderr
    try:
        worker = this_worker()
    except WorkerEnvironmentError as exc:
        err.write(f"lhpipe run: {exc}\n")
        err.flush()
        return ExitCode.USAGE
    early: dict[str, Stamp] | None = None
    if watch:
        from lhpipe.engine.watch import path_roots, snapshot

        # The files before they are read: what is saved from now until the watch begins is
        # reloaded then (lhpipe/engine/watch.py).
        early = snapshot(path_roots(paths))
    try:
        loaded = load_program(paths, color=wants_color(err))
    except ProgramRejected as exc:
        err.write(exc.report)
        err.flush()
        return exc.exit_code
    if loaded.warnings and worker.index == 0:
        err.write(loaded.warnings)
        err.flush()

    from lhpipe.core.logs import configure_logging
    from lhpipe.runtime.runner import DRAIN_SECONDS

    configure_logging(err, worker=worker.index if worker.one_of_many else None)
    return asyncio.run(
        _serve(
            loaded.compiled,
            loaded.program,
            loaded.settings,
            port,
            drain_seconds or DRAIN_SECONDS,
            host=host or os.environ.get(HOST_VARIABLE) or DEFAULT_HOST,
            watch=list(paths) if watch else None,
            early=early,
            stderr=err,
            worker=worker,
        )
    )


async def _serve(
    compiled: CompiledProgram,
    program: Program,
    settings: Settings,
    port: int,
    drain_seconds: float,
    *,
    host: str = DEFAULT_HOST,
    watch: list[str] | None = None,
    early: Mapping[str, Stamp] | None = None,
    stderr: TextIO | None = None,
    worker: Worker | None = None,
) -> int:
    """Serve until the first signal, drain, and return the exit code (1 when a second
    signal abandoned the drain). ``watch``: the paths to hot-reload from; ``early``: their
    files' snapshot taken before the program was read; ``worker``: which process this is
    (default: from the environment)."""
    from lhpipe.core import heap
    from lhpipe.core.worker import DUPLICATE_SIGNAL_SECONDS, this_worker
    from lhpipe.engine.reload import Reloader, publish_program
    from lhpipe.engine.supervisor import Supervisor
    from lhpipe.engine.watch import start_snapshot, watch_and_reload
    from lhpipe.gateway.gateway import starting_routes
    from lhpipe.gateway.http_limits import HttpLimits
    from lhpipe.gateway.server import EngineApp, HttpListener, ServerTls
    from lhpipe.settings import SettingsError

    me = worker if worker is not None else this_worker()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0
    first_signal_at = 0.0
    main = asyncio.current_task()
    assert main is not None

    def on_signal(signum: int) -> None:
        nonlocal signals, first_signal_at
        now = time.monotonic()
        if signals == 1 and me.one_of_many and now - first_signal_at < DUPLICATE_SIGNAL_SECONDS:
            # Not an operator's second signal (see the module docstring).
            log.info("%s again: the same stop delivered twice", signal.Signals(signum).name)
            return
        signals += 1
        if signals == 1:
            first_signal_at = now
            log.info("%s: draining (a second signal stops at once)", signal.Signals(signum).name)
            stop.set()
        else:
            log.warning("second signal: abandoning the drain")
            main.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    # The watched files as they were before the program was read (``early``), with those of
    # the folders only the program names (a schema's .avsc elsewhere, lhpipe.toml's folder).
    baseline = None
    if watch is not None:
        baseline = start_snapshot(watch, program, settings, early or {})

    try:
        supervisor = Supervisor(compiled, program, settings)
        # The listener's limits and timeouts (LHPIPE_HTTP_*), from the environment or
        # lhpipe.toml; a bad value stops the start with exit 2, naming the setting.
        limits = HttpLimits.from_settings(settings)
        # HTTPS (--tls-cert/--tls-key, LHPIPE_TLS_*): a bad pair stops the start, exit 2.
        tls = ServerTls.from_settings(settings)
    except SettingsError as exc:
        log.error("%s", exc)
        return ExitCode.USAGE
    app = EngineApp(supervisor.statuses, starting=True, routes=starting_routes(compiled), worker=me)
    publish_program(app, compiled)
    listener = HttpListener(
        app, host=host, port=port, reuse_port=me.one_of_many, limits=limits, tls=tls
    )
    try:
        await listener.start()
    except OSError as exc:
        log.error("cannot listen on port %d of %s: %s", port, host, exc)
        return ExitCode.USAGE
    watcher: asyncio.Task[None] | None = None
    try:
        await supervisor.start(app)
        if watch is not None:
            err = stderr or sys.stderr
            reloader = Reloader(watch, supervisor, app=app, stderr=err, color=wants_color(err))
            armed = asyncio.Event()
            watcher = loop.create_task(
                watch_and_reload(reloader, stop, armed=armed, baseline=baseline),
                name="hot-reload",
            )
            await armed.wait()  # a change saved once /readyz says 200 is never missed
        app.starting = False  # /readyz may say 200 from now on
        heap.settle()  # start-up's objects out of the collector's way (lhpipe/core/heap.py)
        log.info(
            "running %d pipeline(s) and %d webhook(s); /readyz on port %d",
            len(compiled.pipelines),
            len(compiled.routes),
            listener.port,
        )
        await stop.wait()
        if watcher is not None:
            try:
                await watcher  # a reload under way finishes before the drain
            except Exception:  # the drain below must happen whatever became of the watcher
                log.exception("hot reload: the watcher failed")
        await supervisor.stop(drain_seconds)
    except asyncio.CancelledError:
        return ExitCode.FINDINGS
    finally:
        await listener.stop()
    log.info("stopped cleanly")
    return ExitCode.OK
