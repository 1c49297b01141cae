"""Decoding keys and values as sources declare them, and every way a record can be unreadable."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest

from lhpipe.check.program import Program
from lhpipe.core.avro.wire import parse_avro_schema, schema_id_of
from lhpipe.core.decode import Decoder, avro_writer_converter
from lhpipe.core.errors import DecodeError
from lhpipe.kinds import load_texts

SCHEMA = """
schema Order {
  id: string
  total: double
  placed: timestamp
  extra: json
  note: string?
  lines: [Line]
}
schema Line { sku: string  qty: int }
"""


def decoder(value: str = "json", key: str = "string", text: str = SCHEMA) -> Decoder:
    program = _program(
        f'{text}\npipeline p {{ from topic "t" {{ value = {value}  key = {key} }}  to log }}\n'
    )
    return Decoder(program.pipelines["p"].source, program)


def _program(text: str, tmp: Path | None = None) -> Program:
    result = load_texts({str(tmp / "p.lhp") if tmp else "p.lhp": text})
    assert result.program is not None, [d.message for d in result.diagnostics]
    return result.program


def wire(schema_id: int, schema: Any, value: Any) -> bytes:
    out = io.BytesIO()
    out.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), value)
    return out.getvalue()


# --- text formats -------------------------------------------------------------------------


def test_json_value_and_key() -> None:
    json_decoder = decoder("json", "json")
    assert json_decoder.decode_value(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    assert json_decoder.decode_key(b'{"id": 7}') == {"id": 7}
    assert json_decoder.decode_value(None) is None
    assert json_decoder.decode_key(None) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"a": 1,}', "the value is not JSON: "),
        (b"", "the value is not JSON: "),
        (b"\xff", "the value is not JSON: "),
    ],
)
def test_json_errors_say_where(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decoder("json").decode_value(raw)
    assert caught.value.code == "DECODE"
    assert caught.value.message.startswith(message)
    assert "at offset" in caught.value.message


def test_string_and_bytes_values() -> None:
    assert decoder("string").decode_value("héllo".encode()) == "héllo"
    assert decoder("bytes").decode_value(b"\x00\xff") == b"\x00\xff"
    assert decoder().decode_key("clé".encode()) == "clé"


def test_text_that_is_not_utf8() -> None:
    with pytest.raises(DecodeError, match="not UTF-8 text: byte 0xff at offset 2"):
        decoder("string").decode_value(b"ab\xffcd")
    with pytest.raises(DecodeError, match="the key is not UTF-8"):
        decoder().decode_key(b"\xc3")


# --- the wire format ----------------------------------------------------------------------


def test_schema_id_of() -> None:
    assert schema_id_of(b"\x00\x00\x00\x01\x2a rest") == 256 + 42
    assert schema_id_of(None) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            b'{"id": 1}',
            "unknown magic byte 0x7b: the value is not in the registry wire format "
            "(it looks like JSON)",
        ),
        (b"\x01\x00\x00\x00\x01", "unknown magic byte 0x01"),
        (b"\x00\x00\x01", "the value is 3 bytes long, too short for the registry wire format"),
    ],
)
def test_schema_id_of_rejects_other_formats(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as caught:
        schema_id_of(raw)
    assert caught.value.message.startswith(message)


# --- Avro ---------------------------------------------------------------------------------

PLACED = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
ORDER = {
    "id": "o-1",
    "total": 9.5,
    "placed": PLACED,
    "extra": '{"gift": true}',
    "note": None,
    "lines": [{"sku": "s-1", "qty": 2}],
}


def test_avro_values_are_plain_python() -> None:
    avro = decoder("Order")
    raw = wire(7, avro.reader_schema, ORDER)
    assert schema_id_of(raw) == 7
    value = avro.decode_value(raw, avro.reader_schema)
    assert value == {**ORDER, "extra": {"gift": True}}
    assert value["placed"].tzinfo is not None


def test_avro_without_a_writer_schema_reads_with_the_pipeline_schema() -> None:
    avro = decoder("Order")
    assert avro.decode_value(wire(7, avro.reader_schema, ORDER))["id"] == "o-1"


def test_avro_resolves_an_older_writer_schema() -> None:
    # The writer did not have `note` yet, and wrote `total` as a float: the reader's default
    # fills `note`, and the float is widened to the reader's double.
    avro = decoder("Order")
    writer = json.loads(json.dumps(_strip(avro.reader_schema)))
    writer["fields"] = [f for f in writer["fields"] if f["name"] != "note"]
    next(f for f in writer["fields"] if f["name"] == "total")["type"] = "float"
    parsed_writer = parse_avro_schema(writer)
    raw = wire(8, writer, {k: v for k, v in ORDER.items() if k != "note"})
    value = avro.decode_value(raw, parsed_writer)
    assert value["note"] is None
    assert value["total"] == 9.5
    assert value["extra"] == {"gift": True}


def test_avro_writer_schema_that_cannot_be_resolved() -> None:
    avro = decoder("Order")
    other = {"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]}
    with pytest.raises(DecodeError, match="schema id 9 cannot be read as `Order`"):
        avro.decode_value(wire(9, other, {"x": 1}), parse_avro_schema(other))


def test_avro_truncated_and_trailing_bytes() -> None:
    avro = decoder("Order")
    raw = wire(7, avro.reader_schema, ORDER)
    with pytest.raises(DecodeError, match="the Avro body ends early: truncated"):
        avro.decode_value(raw[:-3], avro.reader_schema)
    with pytest.raises(DecodeError, match="2 bytes left after the Avro value"):
        avro.decode_value(raw + b"\x00\x00", avro.reader_schema)


def test_avro_json_field_that_is_not_json() -> None:
    avro = decoder("Order")
    raw = wire(7, avro.reader_schema, {**ORDER, "extra": "{oops"})
    with pytest.raises(DecodeError, match="a `json` field holds text that is not JSON"):
        avro.decode_value(raw, avro.reader_schema)


def test_avro_value_in_another_format() -> None:
    with pytest.raises(DecodeError, match="unknown magic byte 0x7b"):
        decoder("Order").decode_value(b'{"id": "o-1"}')


def test_registry_schema_reads_as_written_and_needs_the_writer() -> None:
    avro = decoder("Remote", text='schema Remote from registry "remote-value"')
    assert avro.reader_schema is None
    writer = {
        "type": "record",
        "name": "Remote",
        "fields": [
            {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
        ],
    }
    uid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    value = avro.decode_value(wire(3, writer, {"id": uid, "at": PLACED}), parse_avro_schema(writer))
    assert value == {"id": uid, "at": PLACED}
    assert type(value["id"]) is str
    with pytest.raises(DecodeError, match="no writer schema for schema id 3"):
        avro.decode_value(wire(3, writer, {"id": uid, "at": None}))


def test_recursive_schema(tmp_path: Path) -> None:
    (tmp_path / "node.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "Node",
                "fields": [
                    {"name": "meta", "type": {"type": "string", "logicalType": "json"}},
                    {"name": "next", "type": ["null", "Node"], "default": None},
                ],
            }
        )
    )
    program = _program(
        'schema Node from "node.avsc"\npipeline p { from topic "t" { value = Node }  to log }\n',
        tmp_path,
    )
    avro = Decoder(program.pipelines["p"].source, program)
    chain = {"meta": "[1]", "next": {"meta": '{"a": 2}', "next": None}}
    value = avro.decode_value(wire(1, avro.reader_schema, chain), avro.reader_schema)
    assert value == {"meta": [1], "next": {"meta": {"a": 2}, "next": None}}


def _strip(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip(v) for k, v in schema.items() if not k.startswith("__")}
    if isinstance(schema, list):
        return [_strip(v) for v in schema]
    return schema


def test_writer_converter_round_trips_engine_values() -> None:
    avro = decoder("Order")
    convert = avro_writer_converter(avro.reader_schema)
    assert convert is not None
    engine_value = {**ORDER, "extra": {"gift": True}, "placed": "2024-05-01T12:30:00Z"}
    raw = wire(7, avro.reader_schema, convert(engine_value))
    assert avro.decode_value(raw) == {**ORDER, "extra": {"gift": True}}
    assert engine_value["extra"] == {"gift": True}  # the caller's value is left as it was


def test_schemas_without_logical_types_need_no_conversion() -> None:
    plain = parse_avro_schema(
        {"type": "record", "name": "P", "fields": [{"name": "a", "type": "int"}]}
    )
    assert avro_writer_converter(plain) is None


@pytest.mark.parametrize(
    "extra", ["abc", '{"looks": "like JSON"}', "", 7, None, [1, "two"], {"gift": True}]
)
def test_a_json_field_reads_back_as_it_was_written(extra: Any) -> None:
    avro = decoder("Order")
    convert = avro_writer_converter(avro.reader_schema)
    assert convert is not None
    raw = wire(7, avro.reader_schema, convert({**ORDER, "extra": extra}))
    assert avro.decode_value(raw) == {**ORDER, "extra": extra}
