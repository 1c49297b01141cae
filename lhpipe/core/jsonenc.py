"""JSON encoding of run-time values, shared by every export (``to topic``, ``to http``,
``to file``, ``to log``) so that one value looks the same wherever it is sent.

Run-time values are plain Python (:mod:`lhpipe.core.plans`); those JSON has no form for are
written as follows:

============================  ============================================================
``datetime``                  ``2024-05-01T12:00:00.000Z`` (:mod:`lhpipe.core.timestamps`)
``date`` / ``time``           ISO-8601 (``2024-05-01``, ``13:45:00``)
``bytes``                     standard base64 with padding
``Decimal`` (Avro decimal)    a JSON string, so that no digit is lost to a float
``UUID`` (Avro uuid)          its canonical text
NaN and infinities            ``null`` (JSON has no such numbers)
============================  ============================================================

The output is compact UTF-8 (no spaces, non-ASCII characters as is). A value that cannot be
written (an object of another type, a non-string object key, an integer beyond 64 bits) raises
:class:`~lhpipe.core.errors.PermanentError` with code ``ENCODE``: the same record would fail
the same way on every attempt.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import orjson

from lhpipe.core.errors import PermanentError
from lhpipe.core.timestamps import timestamp_text

# Datetimes go through `_default`, so that every one is written as lhpipe writes timestamps
# everywhere, not as orjson would (with the value's own offset and microseconds).
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return timestamp_text(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"a {type(value).__name__} has no JSON form")


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON; raises :class:`PermanentError` (code ``ENCODE``)."""
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise PermanentError(f"cannot encode the value as JSON: {exc}", code="ENCODE") from exc


def dumps_text(value: Any) -> str:
    """:func:`dumps` as a ``str``, for text sinks such as log lines."""
    return dumps(value).decode("utf-8")
