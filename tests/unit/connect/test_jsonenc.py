"""The one JSON form of run-time values that every export writes."""

from __future__ import annotations

import json
import math
import types
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from lhpipe.core.errors import PermanentError
from lhpipe.core.jsonenc import dumps, dumps_text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2024, 5, 1, 12, 30, tzinfo=UTC), '"2024-05-01T12:30:00.000Z"'),
        (
            datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
            '"2024-05-01T12:30:00.000Z"',
        ),
        (datetime(2024, 5, 1, 12, 30), '"2024-05-01T12:30:00.000Z"'),
        (datetime(2024, 5, 1, 12, 30, 0, 250_000, tzinfo=UTC), '"2024-05-01T12:30:00.250Z"'),
        (datetime(2024, 5, 1, 12, 30, 0, 250_999, tzinfo=UTC), '"2024-05-01T12:30:00.250Z"'),
        (date(2024, 5, 1), '"2024-05-01"'),
        (time(13, 45), '"13:45:00"'),
        (b"\x00\xffhi", '"AP9oaQ=="'),
        (Decimal("12.50"), '"12.50"'),
        (uuid.UUID(int=1), '"00000000-0000-0000-0000-000000000001"'),
        (math.nan, "null"),
        (math.inf, "null"),
        ((1, "two"), '[1,"two"]'),
        (types.MappingProxyType({"a": 1}), '{"a":1}'),
        ({"é": "ü", "n": None, "ok": True}, '{"é":"ü","n":null,"ok":true}'),
    ],
)
def test_values_have_one_json_form(value: object, text: str) -> None:
    assert dumps_text(value) == text
    json.loads(dumps(value))


def test_the_output_is_compact_utf8_bytes() -> None:
    assert dumps({"name": "Zoë", "tags": [1, 2]}) == '{"name":"Zoë","tags":[1,2]}'.encode()


@pytest.mark.parametrize("value", [{1: "a"}, object(), 2**64, {"nested": [{"x": {1, 2}}]}])
def test_a_value_without_json_form_is_a_permanent_encode_error(value: object) -> None:
    with pytest.raises(PermanentError) as caught:
        dumps(value)
    assert caught.value.code == "ENCODE"
