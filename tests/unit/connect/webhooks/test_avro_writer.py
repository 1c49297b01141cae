"""The compiled Avro writers of webhook bodies write exactly fastavro's bytes, for every kind of
value a checked body holds, and leave to fastavro the schemas they do not cover."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lhpipe.core.avro.wire import encode, parse_avro_schema
from lhpipe.core.avro.writer import AVRO_DATUM, JSON_BODY, compile_writer, wire_record, write_long
from lhpipe.core.errors import PermanentError
from lhpipe.gateway.validate import BodyRejected, SchemaBody

SCHEMA_ID = 41

EVERYTHING: dict[str, Any] = {
    "type": "record",
    "name": "Everything",
    "namespace": "lhpipe.test",
    "fields": [
        {"name": "s", "type": "string"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "b", "type": "boolean"},
        {"name": "raw", "type": "bytes"},
        {"name": "nothing", "type": "null"},
        {"name": "maybe", "type": ["null", "string"]},
        {"name": "maybe_last", "type": ["long", "null"], "default": 7},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
        {"name": "tag", "type": {"type": "fixed", "name": "Tag", "size": 4}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "counts", "type": {"type": "map", "values": "long"}},
        {
            "name": "at_ms",
            "type": {"type": "long", "logicalType": "timestamp-millis"},
        },
        {
            "name": "at_us",
            "type": {"type": "long", "logicalType": "timestamp-micros"},
        },
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "extra", "type": {"type": "string", "logicalType": "json"}},
        {
            "name": "address",
            "type": {
                "type": "record",
                "name": "Address",
                "fields": [
                    {"name": "city", "type": "string"},
                    {"name": "zip", "type": ["null", "string"], "default": None},
                ],
            },
        },
        {"name": "previous", "type": ["null", "Address"], "default": None},
        {"name": "color_again", "type": "Color"},
        {
            "name": "chain",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Link",
                    "fields": [
                        {"name": "n", "type": "int"},
                        {"name": "next", "type": ["null", "Link"], "default": None},
                    ],
                },
            ],
            "default": None,
        },
    ],
}

BODY: dict[str, Any] = {
    "s": "grüße, 日本",
    "i": -2147483648,
    "l": 9223372036854775807,
    "f": 1.5,
    "d": -0.1,
    "b": True,
    "raw": "AAEC/w==",
    "nothing": None,
    "maybe": None,
    "color": "GREEN",
    "tag": "3q2+7w==",
    "tags": ["a", "", "x" * 200],
    "counts": {"k": 1, "big": -(2**40)},
    "at_ms": "1969-12-31T23:59:59.9995+00:00",
    "at_us": "2024-05-01T12:30:00.123456+02:00",
    "day": 19845,
    "id": "0b9e0f3c-6f5e-4a8e-9d8c-0d0e1f2a3b4c",
    "extra": {"nested": [1, 2.5, None, "t"]},
    "address": {"city": "Berlin"},
    "previous": {"city": "Bonn", "zip": "53111"},
    "color_again": "RED",
    "chain": {"n": 1, "next": {"n": 2, "next": None}},
}


def fastavro_bytes(body: SchemaBody, value: Any) -> bytes:
    return encode(SCHEMA_ID, body.parsed, body.to_avro(value))


def checked(schema: dict[str, Any], body: dict[str, Any]) -> tuple[SchemaBody, Any]:
    decoder = SchemaBody("Everything", schema)
    return decoder, decoder.decode("application/json", orjson.dumps(body))


def test_every_kind_of_value_is_written_as_fastavro_writes_it() -> None:
    decoder, value = checked(EVERYTHING, BODY)
    assert compile_writer(decoder.parsed, JSON_BODY) is not None

    written = decoder.encode(SCHEMA_ID, value)

    assert written == fastavro_bytes(decoder, value)
    # and it reads back as the body it was written from
    assert written[:5] == b"\x00\x00\x00\x00\x29"
    back = fastavro.schemaless_reader(io.BytesIO(written[5:]), decoder.parsed, None)
    assert back["s"] == BODY["s"] and back["chain"]["next"]["n"] == 2
    assert back["maybe_last"] == 7 and back["address"]["zip"] is None


def test_empty_collections_and_the_other_branch_of_each_union() -> None:
    body = {
        **BODY,
        "maybe": "here",
        "maybe_last": None,
        "tags": [],
        "counts": {},
        "previous": None,
        "chain": None,
        "at_ms": -1,
        "at_us": 0,
    }
    decoder, value = checked(EVERYTHING, body)

    assert decoder.encode(SCHEMA_ID, value) == fastavro_bytes(decoder, value)


@pytest.mark.parametrize(
    "number",
    [0, 1, -1, 63, 64, -64, -65, 127, 128, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)],
)
def test_long_encoding_matches_fastavro_at_the_edges(number: int) -> None:
    out = bytearray()
    write_long(out, number)

    expected = io.BytesIO()
    fastavro.schemaless_writer(expected, "long", number)
    assert bytes(out) == expected.getvalue()


SMALL: dict[str, Any] = {
    "type": "record",
    "name": "Small",
    "fields": [
        {"name": "l", "type": "long"},
        {"name": "d", "type": "double"},
        {"name": "s", "type": "string"},
        {"name": "items", "type": {"type": "array", "items": ["null", "long"]}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
SMALL_BODY = SchemaBody("Small", SMALL)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), max_size=80),
    st.integers(-62_135_596_800_000, 253_402_300_799_999),  # years 1 to 9999
)
def test_generated_values_match_fastavro(
    number: int, real: float, text: str, items: list[int | None], millis: int
) -> None:
    body = {"l": number, "d": real, "s": text, "items": items, "at": millis}
    value = SMALL_BODY.decode("application/json", orjson.dumps(body))

    assert SMALL_BODY.encode(SCHEMA_ID, value) == fastavro_bytes(SMALL_BODY, value)


def test_a_union_of_several_types_is_left_to_fastavro() -> None:
    schema = {
        "type": "record",
        "name": "Either",
        "fields": [{"name": "v", "type": ["null", "long", "string"]}],
    }
    decoder = SchemaBody("Either", schema)
    assert compile_writer(parse_avro_schema(schema), AVRO_DATUM) is None

    for v in (None, 5, "five"):
        value = decoder.decode("application/json", orjson.dumps({"v": v}))
        assert decoder.encode(SCHEMA_ID, value) == fastavro_bytes(decoder, value)


def test_a_value_that_does_not_fit_is_refused_by_fastavro_naming_the_field() -> None:
    value = {"l": "seven", "d": 1.0, "s": "", "items": [], "at": 0}

    with pytest.raises(PermanentError) as refused:
        SMALL_BODY.encode(SCHEMA_ID, value)

    assert refused.value.code == "ENCODE"
    assert "l" in str(refused.value)


# -- the one-pass path: the body's JSON checked while it is written -------------------------------

FULL_BODY: dict[str, Any] = {
    **BODY,
    "maybe_last": 3,
    "address": {"city": "Berlin", "zip": None},
}


def test_a_body_written_in_one_pass_has_the_bytes_of_the_check_then_write_path() -> None:
    decoder = SchemaBody("Everything", EVERYTHING)
    for body in (BODY, FULL_BODY, {**FULL_BODY, "maybe": "x", "chain": None, "at_ms": -1}):
        raw = orjson.dumps(body)
        slow = decoder.encode(SCHEMA_ID, decoder.decode("application/json", raw))
        assert decoder.record("application/json", raw, SCHEMA_ID) == slow
    # the full body needs no default of the check: the writer takes the JSON as it is
    out = bytearray()
    writer = compile_writer(decoder.parsed, JSON_BODY)
    assert writer is not None
    writer(out, orjson.loads(orjson.dumps(FULL_BODY)))
    assert (
        bytes(out)
        == decoder.encode(SCHEMA_ID, decoder.decode("application/json", orjson.dumps(FULL_BODY)))[
            5:
        ]
    )


@pytest.mark.parametrize(
    "change",
    [
        {"i": 2**31},
        {"i": True},
        {"i": 1.0},
        {"l": "1"},
        {"f": 1e39},
        {"d": "x"},
        {"b": 1},
        {"s": 5},
        {"raw": "not base64!"},
        {"raw": 5},
        {"nothing": 0},
        {"maybe": 3},
        {"color": "BLUE"},
        {"color": ["RED"]},
        {"tag": "AAE="},
        {"tags": "a"},
        {"tags": ["a", 1]},
        {"counts": []},
        {"counts": {"k": "1"}},
        {"at_ms": "yesterday"},
        {"at_ms": 2**62},
        {"at_us": 1.5},
        {"day": "2024-05-01"},
        {"address": {"town": "Bonn"}},
        {"address": {"city": "Bonn", "street": "x"}},
        {"previous": "Bonn"},
        {"chain": {"n": 1, "next": {"n": "2"}}},
        {"unknown": 1},
    ],
)
def test_a_body_the_one_pass_writer_refuses_gets_the_checks_problems(
    change: dict[str, Any],
) -> None:
    decoder = SchemaBody("Everything", EVERYTHING)
    raw = orjson.dumps({**FULL_BODY, **change})

    with pytest.raises(BodyRejected) as checked_:
        decoder.decode("application/json", raw)
    with pytest.raises(BodyRejected) as written:
        decoder.record("application/json", raw, SCHEMA_ID)

    assert written.value.problem == checked_.value.problem
    assert written.value.problem.status == 400 and written.value.problem.errors


@settings(max_examples=200, deadline=None)
@given(
    st.integers(-(2**64), 2**64) | st.floats(allow_nan=False) | st.text(max_size=5) | st.none(),
    st.lists(st.none() | st.integers(-(2**64), 2**64) | st.booleans(), max_size=4),
    st.integers(-(2**63), 2**63) | st.text(max_size=30),
)
def test_generated_bodies_take_the_same_way_through_both_paths(
    number: Any, items: list[Any], at: Any
) -> None:
    raw = json.dumps({"l": number, "d": 0.5, "s": "", "items": items, "at": at}).encode()
    try:
        slow: bytes | BodyRejected = SMALL_BODY.encode(
            SCHEMA_ID, SMALL_BODY.decode("application/json", raw)
        )
    except BodyRejected as rejected:
        slow = rejected
    try:
        fast: bytes | BodyRejected = SMALL_BODY.record("application/json", raw, SCHEMA_ID)
    except BodyRejected as rejected:
        fast = rejected
    if isinstance(slow, BodyRejected):
        assert isinstance(fast, BodyRejected) and fast.problem == slow.problem
    else:
        assert fast == slow


# -- the record writer made from source (lhpipe/core/avro/writer.py: _record_writer) ------------

INLINE: dict[str, Any] = {
    "type": "record",
    "name": "Inline",
    "fields": [
        {"name": "s", "type": "string"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "b", "type": "boolean"},
        {"name": "n", "type": "null"},
        {"name": "maybe", "type": ["null", "long"]},
        {"name": "strings", "type": {"type": "array", "items": "string"}},
        {"name": "holes", "type": {"type": "array", "items": ["long", "null"]}},
        {"name": "odd name-é", "type": ["string", "null"], "default": "x"},
    ],
}
INLINE_VALUE: dict[str, Any] = {
    "s": "ä" * 70,
    "i": 63,
    "l": 64,
    "f": 2.5,
    "d": 3,
    "b": False,
    "n": None,
    "maybe": -1,
    "strings": ["", "x" * 64],
    "holes": [None, 2**40],
    "odd name-é": None,
}


def test_the_record_writer_made_from_source_writes_fastavros_bytes() -> None:
    parsed = parse_avro_schema(INLINE)
    writer = compile_writer(parsed, AVRO_DATUM)
    for value in (
        INLINE_VALUE,
        {**INLINE_VALUE, "maybe": None, "strings": [], "holes": [], "i": -(2**31)},
    ):
        assert wire_record(writer, SCHEMA_ID, value) == encode(SCHEMA_ID, parsed, value)


@pytest.mark.parametrize(
    "change",
    [
        {"s": b"bytes"},
        {"i": 2**31},
        {"i": True},
        {"l": 1.0},
        {"f": 1e39},
        {"d": "1"},
        {"b": 1},
        {"n": 0},
        {"maybe": "1"},
        {"strings": ("a",)},
        {"strings": [1]},
        {"holes": ["x"]},
        {"extra": 1},
    ],
)
def test_the_record_writer_made_from_source_refuses_what_does_not_fit(
    change: dict[str, Any],
) -> None:
    writer = compile_writer(parse_avro_schema(INLINE), AVRO_DATUM)

    assert wire_record(writer, SCHEMA_ID, {**INLINE_VALUE, **change}) is None


def test_the_record_writer_made_from_source_fills_only_what_may_be_absent() -> None:
    parsed = parse_avro_schema(INLINE)
    writer = compile_writer(parsed, AVRO_DATUM)
    without_optional = {k: v for k, v in INLINE_VALUE.items() if k != "maybe"}
    without_required = {k: v for k, v in INLINE_VALUE.items() if k != "s"}

    assert wire_record(writer, SCHEMA_ID, without_optional) == encode(
        SCHEMA_ID, parsed, {**without_optional, "maybe": None}
    )
    assert wire_record(writer, SCHEMA_ID, without_required) is None
