"""Request bodies against a webhook's ``body``: schemas compiled by the real checker from
``.lhp`` text (and hand-written Avro for what `.avsc` files add), ``json`` and ``bytes``; what
the caller reads back in the 400/415 problem, and that an accepted body survives the registry
wire format and reads back as the same value."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest

from lhpipe.check.program import Program
from lhpipe.core.decode import Decoder
from lhpipe.gateway.validate import (
    MAX_PROBLEMS,
    BodyRejected,
    SchemaBody,
    body_decoder,
    is_json_media_type,
)
from lhpipe.kinds import load_texts

SCHEMAS = """
schema Address { city: string  zip: string? }
schema Applicant {
  applicant_id: string
  age: int
  score: double
  ratio: float
  big: long
  ok: boolean
  photo: bytes?
  at: timestamp
  extra: json
  note: string?
  tags: [string]
  meta: map<string>?
  home: Address
  past: [Address]
  level: int = 3
}
schema Tree { label: string  children: [Tree] }
"""
JSON = "application/json"


def program() -> Program:
    text = SCHEMAS + '\nwebhook w { path = "/h"  auth = none  body = Applicant  topic = "t" }\n'
    text += 'pipeline p { from topic "t" { value = Applicant }  to log }\n'
    result = load_texts({"p.lhp": text})
    assert result.program is not None, [d.message for d in result.diagnostics]
    return result.program


PROGRAM = program()


def schema_body(name: str = "Applicant") -> SchemaBody:
    avro = PROGRAM.schemas[name].avro
    assert avro is not None
    decoder = body_decoder(name, avro)
    assert isinstance(decoder, SchemaBody)
    return decoder


APPLICANT = schema_body()


def applicant(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "applicant_id": "ann-1",
        "age": 30,
        "score": 0.5,
        "ratio": 2,
        "big": 2**40,
        "ok": True,
        "at": "2024-05-01T12:30:00Z",
        "extra": {"source": "web", "ids": [1, 2]},
        "tags": ["vip"],
        "home": {"city": "Berlin"},
        "past": [{"city": "Paris", "zip": "75001"}],
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def decode(body: Any, decoder: Any = APPLICANT, content_type: str | None = JSON) -> Any:
    return decoder.decode(content_type, json.dumps(body).encode())


def rejected(body: Any, decoder: Any = APPLICANT, content_type: str | None = JSON) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(BodyRejected) as caught:
        decoder.decode(content_type, raw)
    problem = caught.value.problem
    document = json.loads(problem.body())
    assert document["status"] == problem.status
    assert document["type"] == "about:blank"
    return document


def test_a_matching_body_becomes_the_value_expressions_see() -> None:
    value = decode(applicant())

    assert value == {
        "applicant_id": "ann-1",
        "age": 30,
        "score": 0.5,
        "ratio": 2.0,
        "big": 2**40,
        "ok": True,
        "photo": None,
        "at": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "extra": {"source": "web", "ids": [1, 2]},
        "note": None,
        "tags": ["vip"],
        "meta": None,
        "home": {"city": "Berlin", "zip": None},
        "past": [{"city": "Paris", "zip": "75001"}],
        "level": 3,
    }
    assert type(value["ratio"]) is float


def test_an_accepted_body_reads_back_from_the_wire_format_as_the_same_value() -> None:
    value = decode(applicant(photo=base64.b64encode(b"\x89PNG").decode(), meta={"k": "v"}))
    out = io.BytesIO()
    out.write(b"\x00\x00\x00\x00\x07")
    fastavro.schemaless_writer(out, APPLICANT.parsed, APPLICANT.to_avro(value))

    read = Decoder(PROGRAM.pipelines["p"].source, PROGRAM).decode_value(out.getvalue())

    assert read == value
    assert read["photo"] == b"\x89PNG"


@pytest.mark.parametrize(
    "extra", [{"a": 1}, [1, "x"], "just text", 42, None, True], ids=lambda v: type(v).__name__
)
def test_a_json_field_takes_any_json_and_round_trips(extra: Any) -> None:
    value = decode(applicant(extra=extra))
    out = io.BytesIO()
    fastavro.schemaless_writer(out, APPLICANT.parsed, APPLICANT.to_avro(value))
    written = fastavro.schemaless_reader(io.BytesIO(out.getvalue()), APPLICANT.parsed)

    assert value["extra"] == extra
    assert json.loads(written["extra"]) == extra


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"age": "x"}, "age", 'expected an int, got "x"'),
        ({"age": 30.0}, "age", "expected an int, got 30.0"),
        ({"age": True}, "age", "expected an int, got true"),
        (
            {"age": 2**31},
            "age",
            "expected an int between -2147483648 and 2147483647, got 2147483648",
        ),
        ({"big": 1.5}, "big", "expected a long, got 1.5"),
        ({"score": "0.5"}, "score", 'expected a number, got "0.5"'),
        ({"ratio": 1e39}, "ratio", "expected a number (float) within ±3.403e+38, got 1e+39"),
        ({"ok": "yes"}, "ok", 'expected true or false, got "yes"'),
        ({"ok": 1}, "ok", "expected true or false, got 1"),
        ({"applicant_id": 7}, "applicant_id", "expected a string, got 7"),
        ({"applicant_id": None}, "applicant_id", "expected a string, got null"),
        ({"photo": "not base64!"}, "photo", 'expected bytes as base64 text, got "not base64!"'),
        ({"note": 5}, "note", "expected a string, got 5"),
        ({"tags": "vip"}, "tags", 'expected an array, got "vip"'),
        ({"tags": ["a", 2]}, "tags[1]", "expected a string, got 2"),
        ({"meta": {"colour": 1}}, "meta.colour", "expected a string, got 1"),
        ({"meta": {"a key": 1}}, 'meta["a key"]', "expected a string, got 1"),
        ({"meta": ["x"]}, "meta", "expected an object (a map), got an array"),
        ({"home": "Berlin"}, "home", 'expected an object (Address), got "Berlin"'),
        ({"home": {"city": 1}}, "home.city", "expected a string, got 1"),
        ({"home": {}}, "home.city", "required field is missing"),
        ({"past": [{"city": "a"}, {"zip": "b"}]}, "past[1].city", "required field is missing"),
        ({"age": ...}, "age", "required field is missing"),
        ({"nte": "typo"}, "nte", "unknown field"),
        ({"home": {"city": "B", "country": "DE"}}, "home.country", "unknown field"),
        ({"level": "3"}, "level", 'expected an int, got "3"'),
    ],
)
def test_a_mismatch_is_400_naming_the_field(changes: Any, field: str, message: str) -> None:
    document = rejected(applicant(**changes))

    assert document["status"] == 400
    assert document["title"] == "Bad Request"
    assert document["field"] == field
    assert document["errors"] == [{"field": field, "message": message}]
    assert document["detail"] == f"the body does not match schema Applicant: {field}: {message}"


def test_every_mismatch_is_listed_in_schema_order() -> None:
    document = rejected(applicant(age="x", tags=[1], home={}, zzz=1, applicant_id=...))

    assert [e["field"] for e in document["errors"]] == [
        "applicant_id",
        "age",
        "tags[0]",
        "home.city",
        "zzz",
    ]
    assert document["detail"].endswith("(and 2 more)")


def test_the_list_of_mismatches_is_bounded() -> None:
    document = rejected(applicant(tags=list(range(100))))

    assert len(document["errors"]) == MAX_PROBLEMS


@pytest.mark.parametrize("body", [[applicant()], "text", 3, None], ids=repr)
def test_a_body_that_is_not_an_object_is_400_about_the_body_itself(body: Any) -> None:
    document = rejected(body)

    assert document["field"] == ""
    assert document["errors"][0]["message"].startswith("expected an object (Applicant), got")


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2024-05-01T12:30:00Z", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T12:30:00.123", datetime(2024, 5, 1, 12, 30, 0, 123000, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        (1714566600000, datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (-1000, datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_timestamps_from_iso_8601_or_epoch_millis(at: Any, expected: datetime) -> None:
    value = decode(applicant(at=at))["at"]

    assert value == expected
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0)


@pytest.mark.parametrize("at", ["yesterday", "2024-13-01T00:00:00Z", 1.5e12, True, 10**20])
def test_a_timestamp_that_is_neither_is_400(at: Any) -> None:
    document = rejected(applicant(at=at))

    assert document["field"] == "at"
    assert "expected a timestamp (ISO-8601 text or epoch milliseconds)" in document["detail"]


def test_a_recursive_schema_checks_every_level() -> None:
    tree = schema_body("Tree")
    body = {"label": "a", "children": [{"label": "b", "children": [{"label": 3, "children": []}]}]}

    assert decode({"label": "a", "children": []}, tree) == {"label": "a", "children": []}
    assert rejected(body, tree)["field"] == "children[0].children[0].label"


AVSC = {
    "type": "record",
    "name": "Event",
    "namespace": "com.example",
    "fields": [
        {
            "name": "kind",
            "type": {"type": "enum", "name": "Kind", "symbols": ["CREATED", "DELETED"]},
        },
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {"name": "at_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "either", "type": ["int", "string"]},
        {"name": "maybe", "type": ["null", "long"]},
        {"name": "blob", "type": "bytes", "default": "\u00ff\u0000"},
        {"name": "ratio", "type": "double", "default": 1},
        {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}, "default": 0},
        {"name": "labels", "type": {"type": "map", "values": "string"}, "default": {"a": "b"}},
        {"name": "again", "type": ["null", "Kind"], "default": None},
    ],
}
EVENT = body_decoder("Event", AVSC)


def event(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "CREATED",
        "digest": base64.b64encode(b"abcd").decode(),
        "at_us": 1_000_001,
        "either": 5,
        "maybe": None,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def test_avsc_types_enums_fixed_micros_unions_and_defaults() -> None:
    value = decode(event(maybe=...), EVENT)

    assert value == {
        "kind": "CREATED",
        "digest": b"abcd",
        "at_us": datetime(1970, 1, 1, 0, 0, 1, 1, tzinfo=UTC),
        "either": 5,
        "maybe": None,  # a union with null and no default: null when left out
        "blob": b"\xff\x00",  # Avro writes bytes defaults as code points
        "ratio": 1.0,
        "when": datetime(1970, 1, 1, tzinfo=UTC),
        "labels": {"a": "b"},
        "again": None,
    }
    assert decode(event(either="five"), EVENT)["either"] == "five"


def test_a_default_is_a_fresh_copy_for_every_body() -> None:
    first = decode(event(), EVENT)
    first["labels"]["changed"] = "x"

    assert decode(event(), EVENT)["labels"] == {"a": "b"}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"kind": "UPDATED"}, "kind", 'expected one of CREATED, DELETED, got "UPDATED"'),
        (
            {"digest": base64.b64encode(b"abc").decode()},
            "digest",
            "expected 4 bytes as base64 text, got 3 bytes",
        ),
        ({"either": 1.5}, "either", "expected one of int, string, got 1.5"),
        ({"again": "MAYBE"}, "again", 'expected one of CREATED, DELETED, got "MAYBE"'),
    ],
)
def test_avsc_mismatches(changes: Any, field: str, message: str) -> None:
    assert rejected(event(**changes), EVENT)["errors"] == [{"field": field, "message": message}]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        'Application/JSON;charset="UTF-8"',
        "application/cloudevents+json",
        "application/vnd.github+json",
    ],
)
def test_json_content_types(content_type: str) -> None:
    assert is_json_media_type(content_type)
    assert decode({"a": 1}, body_decoder("json"), content_type) == {"a": 1}


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
        "text/json",
        "application/jsonx",
    ],
)
def test_any_other_content_type_is_415(content_type: str | None) -> None:
    for decoder in (body_decoder("json"), APPLICANT):
        document = rejected(applicant(), decoder, content_type)

        assert document["status"] == 415
        assert document["title"] == "Unsupported Media Type"
        assert document["detail"].startswith("expected application/json, got ")


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"", "the body is empty; expected JSON"),
        (b"  \n", "the body is empty; expected JSON"),
        (b'{"a": 1', "the body is not valid JSON: "),
        (b"{'a': 1}", "the body is not valid JSON: "),
        (b'{"a": NaN}', "the body is not valid JSON: "),
        (b'"\xff"', "the body is not valid JSON: "),
    ],
)
def test_malformed_json_is_400(raw: bytes, detail: str) -> None:
    for decoder in (body_decoder("json"), APPLICANT):
        document = rejected(raw, decoder)

        assert document["status"] == 400
        assert document["detail"].startswith(detail)
        assert "errors" not in document


@pytest.mark.parametrize("body", [{"any": ["thing"]}, [1, 2], "text", 3.5, None])
def test_json_bodies_take_any_json(body: Any) -> None:
    assert decode(body, body_decoder("json")) == body


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "text/plain"])
def test_bytes_bodies_pass_through_whatever_they_are(content_type: str | None) -> None:
    raw = b"\x00\xff not json"

    assert body_decoder("bytes").decode(content_type, raw) == raw


def test_a_schema_body_needs_its_avro_schema() -> None:
    with pytest.raises(ValueError, match="schema Remote has no Avro schema yet"):
        body_decoder("Remote", None)


def test_an_offset_timestamp_is_converted_to_utc() -> None:
    value = decode(applicant(at="2024-05-01T08:30:00-04:00"))["at"]

    assert value == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert value.tzinfo == UTC


def test_an_integer_beyond_64_bits_is_refused_for_a_long() -> None:
    raw = json.dumps(applicant()).replace(f"{2**40}", "1" + "0" * 20).encode()

    with pytest.raises(BodyRejected) as caught:
        APPLICANT.decode(JSON, raw)

    assert caught.value.problem.errors[0].field == "big"
