"""Inline schemas compile to Avro that fastavro accepts; .avsc files give static types."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from lhpipe.check import types as t
from lhpipe.check.load import LoadResult
from lhpipe.check.schemas import SchemaFileError, read_avsc
from lhpipe.kinds import load_texts

DATA = Path(__file__).parent.parent.parent / "data"


def _load(tmp_path: Path, text: str) -> LoadResult:
    path = tmp_path / "schemas.lhp"
    path.write_text(text)
    return load_texts({str(path): text})


def _roundtrip(schema: dict[str, Any], record: dict[str, Any]) -> Any:
    parsed = fastavro.parse_schema(schema)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, record)
    buffer.seek(0)
    return fastavro.schemaless_reader(buffer, parsed)


def test_inline_schema_compiles_to_avro_in_the_lhpipe_namespace(tmp_path: Path) -> None:
    result = _load(
        tmp_path,
        """
        schema Applicant {
          applicant_id: string
          age: int
          score: double = 0.5
          note: string?
          label: string? = "none"
          tags: [string]
          meta: map<string>?
          seen: timestamp
          extra: json
        }
        """,
    )
    assert result.program is not None, result.diagnostics
    avro = result.program.schemas["Applicant"].avro
    assert avro is not None
    assert avro["namespace"] == "lhpipe"
    fields = {f["name"]: f for f in avro["fields"]}
    assert fields["age"] == {"name": "age", "type": "int"}
    assert fields["score"] == {"name": "score", "type": "double", "default": 0.5}
    assert fields["note"] == {"name": "note", "type": ["null", "string"], "default": None}
    assert fields["label"] == {"name": "label", "type": ["string", "null"], "default": "none"}
    assert fields["tags"]["type"] == {"type": "array", "items": "string"}
    assert fields["meta"]["type"] == ["null", {"type": "map", "values": "string"}]
    assert fields["seen"]["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert fields["extra"]["type"] == {"type": "string", "logicalType": "json"}
    decoded = _roundtrip(
        dict(avro),
        {"applicant_id": "a-1", "age": 30, "tags": [], "seen": 0, "extra": "{}"},
    )
    assert decoded["note"] is None and decoded["label"] == "none" and decoded["score"] == 0.5


def test_nested_and_recursive_schemas_define_each_record_once(tmp_path: Path) -> None:
    result = _load(
        tmp_path,
        """
        schema Address { city: string }
        schema Person { home: Address  work: Address?  friends: [Person] }
        """,
    )
    assert result.program is not None, result.diagnostics
    avro = result.program.schemas["Person"].avro
    assert avro is not None
    fastavro.parse_schema(dict(avro))
    text = json.dumps(avro)
    assert text.count('"name": "Address"') == 1
    fields = {f["name"]: f["type"] for f in avro["fields"]}
    assert fields["work"] == ["null", "lhpipe.Address"]
    assert fields["friends"] == {"type": "array", "items": "lhpipe.Person"}


def test_a_schema_file_is_embedded_where_an_inline_schema_uses_it(tmp_path: Path) -> None:
    (tmp_path / "verdict.avsc").write_text((DATA / "check_ok/schemas/verdict.avsc").read_text())
    result = _load(
        tmp_path,
        'schema Verdict from "verdict.avsc"\nschema Case { first: Verdict  last: Verdict? }\n',
    )
    assert result.program is not None, result.diagnostics
    avro = result.program.schemas["Case"].avro
    assert avro is not None
    fastavro.parse_schema(dict(avro))
    assert avro["fields"][1]["type"] == ["null", "com.example.kyc.Verdict"]


def test_every_compiled_schema_of_the_examples_is_valid_avro() -> None:
    from lhpipe.kinds import load

    result = load([DATA / "check_ok"])
    assert result.program is not None
    for info in result.program.schemas.values():
        assert info.avro is not None
        fastavro.parse_schema(dict(info.avro))


def test_avsc_types_follow_avro(tmp_path: Path) -> None:
    path = tmp_path / "event.avsc"
    path.write_text(
        json.dumps(
            {
                "type": "record",
                "name": "Event",
                "namespace": "com.example",
                "fields": [
                    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A"]}},
                    {"name": "again", "type": "Kind"},
                    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                    {"name": "note", "type": ["null", "string"], "default": None},
                    {"name": "either", "type": ["int", "string"]},
                    {"name": "digest", "type": {"type": "fixed", "name": "D", "size": 4}},
                    {
                        "name": "parts",
                        "type": {"type": "map", "values": {"type": "array", "items": "long"}},
                    },
                ],
            }
        )
    )
    _, record = read_avsc(path, "Incoming")
    assert record.name == "Incoming"
    assert {k: str(v) for k, v in record.fields.items()} == {
        "kind": "string",
        "again": "string",
        "at": "timestamp",
        "note": "string?",
        "either": "json",
        "digest": "bytes",
        "parts": "map<[long]>",
    }


@pytest.mark.parametrize(
    "content",
    ["not json", '"string"', '{"type": "record", "name": "X", "fields": [{"name": "a"}]}'],
)
def test_bad_avsc_files_are_reported(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.avsc"
    path.write_text(content)
    with pytest.raises(SchemaFileError):
        read_avsc(path, "Bad")


def test_registry_schemas_are_dynamic_and_not_compiled(tmp_path: Path) -> None:
    result = _load(tmp_path, 'schema Invoice from registry "invoices-value"\n')
    assert result.program is not None
    info = result.program.schemas["Invoice"]
    assert info.avro is None and info.subject == "invoices-value"
    assert t.is_dynamic(info.type)
