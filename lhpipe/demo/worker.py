"""The demo's task workers: the littlehorse client's workers, in a thread of their own.

The engine owns the main thread's event loop (and its signal handlers), so the workers get a
second loop in a daemon thread. The client's own ``littlehorse.worker.start`` is not used: it
installs signal handlers, which only the main thread may do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from littlehorse.config import LHConfig
from littlehorse.worker import LHTaskWorker

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 15.0


class _SpuriousPollerWakeups(logging.Filter):
    """Drops asyncio's report of grpc's ``BlockingIOError`` in
    ``PollerCompletionQueue._handle_events``.

    grpc.aio wakes every event loop bound to its one completion queue; with the engine's loop
    and the workers' loop in one process, the loop that finds the wake-up byte already read
    reports this error, although every call completes (grpc/grpc#25364).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (
            isinstance(error, BlockingIOError) and "PollerCompletionQueue" in record.getMessage()
        )


class TaskWorkers:
    """One littlehorse task worker per TaskDef of ``tasks``, run from :meth:`start` until
    :meth:`stop`."""

    def __init__(self, config: LHConfig, tasks: Mapping[str, Callable[..., Any]]) -> None:
        self._workers = [LHTaskWorker(task, name, config) for name, task in tasks.items()]
        self._loop = asyncio.new_event_loop()
        self._main: asyncio.Future[Any] | None = None
        self._thread = threading.Thread(target=self._serve, name="lhpipe-demo-tasks", daemon=True)

    def start(self) -> None:
        logging.getLogger("asyncio").addFilter(_SpuriousPollerWakeups())
        self._thread.start()

    def stop(self) -> None:
        """Stop polling for tasks and wait for the thread (a task running now is abandoned;
        LittleHorse gives it to a worker again after its timeout)."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop already closed by itself
            self._loop.call_soon_threadsafe(self._shut_down)
        self._thread.join(STOP_TIMEOUT_SECONDS)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._main = asyncio.gather(*(worker.start() for worker in self._workers))
            self._loop.run_until_complete(self._main)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("the demo's task workers stopped")
        finally:
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    def _shut_down(self) -> None:
        # A worker's heartbeat sleeps between beats: stopping it only ends the loop at the
        # next beat, so the gathered starts are cancelled too.
        for worker in self._workers:
            # A worker that has not fetched its TaskDef yet fails to name itself in stop().
            with contextlib.suppress(AttributeError):
                worker.stop()
        if self._main is not None:
            self._main.cancel()
