"""The one text form of a timestamp, wherever lhpipe turns one into text or JSON.

A timestamp is written as RFC 3339 in UTC with exactly three fractional digits and ``Z``:
``2024-05-01T12:00:00.000Z``. The same text comes out of ``str(ts)``, ``"${ts}"``, the JSON of
every export (``to topic``, ``to http``, ``to file``, ``to log``), a LittleHorse ``STR``
variable, the fields of a ``from lh_output`` event (``payload`` included), the dead-letter
envelope and lhpipe's own log lines.

Decisions:

* Milliseconds, always three digits: an Avro ``timestamp-millis`` field and LittleHorse's
  timestamps hold milliseconds, so a value read from either renders as it was written, and
  text of one fixed width sorts as the times do. A whole second is ``.000``, not left out.
* Finer input (a ``timestamp-micros`` field, ``now()``, a protobuf ``Timestamp`` with nanos)
  is cut to the millisecond, never rounded: rounding up could name a later second, minute
  or day than the value's own, and cutting is what writing it as ``timestamp-millis`` does.
* Any zone is converted to UTC; a naive datetime is taken as UTC (the engine makes only
  aware ones, so a naive one comes from a test or an extension that meant UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_FORMAT: Final = "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ"


def timestamp_text(moment: datetime) -> str:
    """``moment`` as ``2024-05-01T12:00:00.123Z``: UTC, cut to the millisecond."""
    if moment.tzinfo is not UTC:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    # %-formatting of the fields: a third of the time of `isoformat(timespec=...)`, and it is
    # on the path of every exported timestamp. `// 1000` cuts the microseconds.
    return _FORMAT % (
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond // 1000,
    )


def epoch_ms_text(epoch_ms: int) -> str:
    """Epoch milliseconds as :func:`timestamp_text` writes them (integer arithmetic, so no
    float rounding can move the value)."""
    return timestamp_text(_EPOCH + timedelta(milliseconds=epoch_ms))
