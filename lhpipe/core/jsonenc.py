"""JSON encoding of run-time values, shared by every export (``to topic``, ``to http``,
``to file``, ``to log``) so that one value looks the same wherever it is sent.

Run-time values are plain Python (:mod:`lhpipe.core.plans`); those JSON has no form for are
written as follows:

============================  ============================================================
``datetime``                  ISO-8601 in UTC with a ``Z`` (a naive one is taken as UTC)
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
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import orjson

from lhpipe.core.errors import PermanentError

# Datetimes go through `_default` so that every one is written in UTC, whatever its zone.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
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
