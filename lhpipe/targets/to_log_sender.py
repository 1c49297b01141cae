"""``to log``: one log line per record, through the process's logging setup.

The line's message is the value as compact JSON (:mod:`lhpipe.core.jsonenc`), logged at INFO
by the ``lhpipe.to_log`` logger, so it comes out wherever and however the engine's other lines
do (one JSON object a line off a terminal). That logger is set to INFO itself, so a quieter
level elsewhere does not swallow what a pipeline was written to log.
"""

from __future__ import annotations

import logging

from lhpipe.core.jsonenc import dumps_text
from lhpipe.core.plans import LogPlan, Plan

LOGGER_NAME = "lhpipe.to_log"


class LogSender:
    """Logs :class:`~lhpipe.core.plans.LogPlan` values; never fails but for a value with
    no JSON form (a permanent error, code ``ENCODE``)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(LOGGER_NAME)
        self._log.setLevel(logging.INFO)

    async def send(self, plan: Plan) -> None:
        """Write the line; the logging handlers have it when this returns."""
        if not isinstance(plan, LogPlan):
            raise TypeError(f"the log sender cannot send a {type(plan).__name__}")
        self._log.info("%s", dumps_text(plan.value))

    async def close(self) -> None:
        """Nothing to release: the handlers belong to the logging setup."""

    def connected(self) -> bool:
        """Always: logging has no other side to lose."""
        return True
