"""Logging for ``lhpipe run``: one JSON object a line when stderr is not a terminal (for log
collectors), readable text on a terminal (cli.md).

A JSON line has ``time`` (as :mod:`lhpipe.core.timestamps` writes every timestamp), ``level``,
``logger``, ``message`` and, for an exception, ``exception`` (the traceback as text); a line
logged with ``extra={"event": {...}}`` (a reload) also carries that mapping's fields (a
timestamp among them written the same way)::

    {"time": "2026-11-28T06:33:15.123Z", "level": "WARNING", "logger": "lhpipe.runtime.delivery",
     "message": "pipeline orders: record orders-0-41 dead-lettered to 'orders-dlq': ..."}

A worker of ``lhpipe run --workers N`` (N > 1) tells its lines apart from the others': a JSON
line carries ``"worker": <index>`` after ``level``, a text line ``w<index>`` before the logger's
name. A process on its own writes neither.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from lhpipe.core.timestamps import timestamp_text

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: :data:`TEXT_FORMAT` with a worker's index (``{worker}`` is replaced by it).
WORKER_TEXT_FORMAT = "%(asctime)s %(levelname)-7s w{worker} %(name)s: %(message)s"


def _json_default(value: object) -> str:
    # An event's field that JSON has no form for: a timestamp as lhpipe writes every one, the
    # rest as its text.
    if isinstance(value, datetime):
        return timestamp_text(value)
    return str(value)


class JsonLineFormatter(logging.Formatter):
    """Formats a log record as one JSON object on one line; with ``worker``, the line carries
    that worker index."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": timestamp_text(datetime.fromtimestamp(record.created, tz=UTC)),
            "level": record.levelname,
        }
        if self.worker is not None:
            line["worker"] = self.worker
        line["logger"] = record.name
        line["message"] = record.getMessage()
        event = getattr(record, "event", None)
        if isinstance(event, dict):
            line.update({k: v for k, v in event.items() if k not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=_json_default)


def configure_logging(
    stream: TextIO | None = None, level: int = logging.INFO, *, worker: int | None = None
) -> None:
    """Send every ``lhpipe`` (and library) log line to ``stream`` (default stderr), as JSON
    lines unless ``stream`` is a terminal, tagged with ``worker`` when it is given (a worker of
    several). Replaces handlers set up earlier."""
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    if out.isatty():
        text = TEXT_FORMAT if worker is None else WORKER_TEXT_FORMAT.format(worker=worker)
        handler.setFormatter(logging.Formatter(text))
    else:
        handler.setFormatter(JsonLineFormatter(worker))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Library chatter (per-request HTTP lines, the LittleHorse client's plain-text warning on
    # every stub) would drown the engine's own lines.
    for noisy in ("httpx", "httpcore", "LHConfig", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
