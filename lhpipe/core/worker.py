"""Which engine process this is: one of the workers of ``lhpipe run --workers N``, or the only
one (operations.md).

The parent process of ``--workers N`` (:mod:`lhpipe.commands.workers`) starts each worker with
``LHPIPE_WORKER_INDEX`` (``0`` to ``N-1``) and ``LHPIPE_WORKERS`` (``N``) in its environment.
A process with neither is worker 0 of 1. Only a worker of more than one binds its port with
``SO_REUSEPORT`` (:func:`lhpipe.gateway.server.listening_socket`), tags its log lines with its
index (:mod:`lhpipe.core.logs`) and takes a signal that repeats the one before within
:data:`DUPLICATE_SIGNAL_SECONDS` for the same one (:mod:`lhpipe.commands.run`); ``/readyz`` and
the status page name the worker in every case.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

INDEX_VARIABLE: Final = "LHPIPE_WORKER_INDEX"
COUNT_VARIABLE: Final = "LHPIPE_WORKERS"

#: A worker's second signal within this time of its first is the same stop delivered twice (a
#: service manager that signals every process of the unit, and the parent that forwards its own
#: copy), not an operator's second signal; the parent spaces its own forwards further apart.
DUPLICATE_SIGNAL_SECONDS: Final = 1.0


class WorkerEnvironmentError(ValueError):
    """``LHPIPE_WORKER_INDEX`` or ``LHPIPE_WORKERS`` is set to something that is no worker."""


@dataclass(frozen=True)
class Worker:
    """This process's place among the engine processes that share one port."""

    index: int
    count: int
    pid: int

    @property
    def one_of_many(self) -> bool:
        """Whether other workers share the port (``LHPIPE_WORKERS`` > 1)."""
        return self.count > 1

    def to_json(self) -> dict[str, int]:
        """The ``worker`` field of ``/readyz``."""
        return {"index": self.index, "count": self.count, "pid": self.pid}

    def describe(self) -> str:
        """``worker 1 of 4 (pid 12345)``, for the status page."""
        return f"worker {self.index} of {self.count} (pid {self.pid})"


def this_worker(environ: Mapping[str, str] | None = None) -> Worker:
    """The worker this process is, from the environment (``os.environ`` by default).

    Raises :class:`WorkerEnvironmentError` for a count below 1, an index outside ``0`` to
    ``count - 1``, a value that is not a whole number, or an index without a count.
    """
    env = os.environ if environ is None else environ
    raw_index = env.get(INDEX_VARIABLE, "").strip()
    raw_count = env.get(COUNT_VARIABLE, "").strip()
    if not raw_count:
        if raw_index not in ("", "0"):
            raise WorkerEnvironmentError(f"{INDEX_VARIABLE}={raw_index} needs {COUNT_VARIABLE}")
        return Worker(0, 1, os.getpid())
    try:
        count = int(raw_count)
        index = int(raw_index or "0")
    except ValueError:
        raise WorkerEnvironmentError(
            f"{COUNT_VARIABLE}={raw_count!r} and {INDEX_VARIABLE}={raw_index!r} "
            "must be whole numbers"
        ) from None
    if count < 1:
        raise WorkerEnvironmentError(f"{COUNT_VARIABLE}={count}: at least 1")
    if not 0 <= index < count:
        raise WorkerEnvironmentError(
            f"{INDEX_VARIABLE}={index}: must be from 0 to {count - 1} ({COUNT_VARIABLE}={count})"
        )
    return Worker(index, count, os.getpid())


def worker_environment(index: int, count: int) -> dict[str, str]:
    """The variables the parent gives worker ``index`` of ``count``."""
    return {INDEX_VARIABLE: str(index), COUNT_VARIABLE: str(count)}
