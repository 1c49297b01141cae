"""Logging for ``lhpipe run``: one JSON object a line when stderr is not a terminal (for log
collectors), readable text on a terminal (cli.md).

A JSON line has ``time`` (UTC, ISO-8601 with milliseconds), ``level``, ``logger``, ``message``
and, for an exception, ``exception`` (the traceback as text); a line logged with
``extra={"event": {...}}`` (a reload) also carries that mapping's fields::

    {"time": "2026-11-28T06:33:15.123Z", "level": "WARNING", "logger": "lhpipe.engine.delivery",
     "message": "pipeline orders: record orders-0-41 dead-lettered to 'orders-dlq': ..."}
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonLineFormatter(logging.Formatter):
    """Formats a log record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        line = {
            "time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if isinstance(event, dict):
            line.update({k: v for k, v in event.items() if k not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Send every ``lhpipe`` (and library) log line to ``stream`` (default stderr), as JSON
    lines unless ``stream`` is a terminal. Replaces handlers set up earlier."""
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    if out.isatty():
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    else:
        handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Library chatter (per-request HTTP lines, the LittleHorse client's plain-text warning on
    # every stub) would drown the engine's own lines.
    for noisy in ("httpx", "httpcore", "LHConfig", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
