"""``to topic { schema = NAME }`` through ``lhpipe run`` against the real stack: a consumer using
confluent-kafka's AvroDeserializer and Apicurio's Confluent-compatible API reads the values back,
under the schema registered as ``<topic>-value``; a value that does not fit is dead-lettered."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from engine_run import (
    LhpipeRun,
    create_topic,
    produce,
    read_all,
    unique,
    wait_until,
    write_pipelines,
)

from lhpipe.core.avro.wire import WIRE_HEADER
from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

PIPELINES = """
schema Summary {{
  id: string
  amount: long
  at: timestamp
  note: string?
  extra: json
}}

schema Remote from registry "{remote}"

pipeline export_summaries {{
  from topic "{source}"
  to topic "{summaries}" {{ schema = Summary  key = value.id }}
  on_error {{ dead_letter = "{dead}" }}
}}

pipeline export_ids {{
  from topic "{source}"
  to topic "{ids}" {{ schema = Remote  value = {{ id = value.id, seen = value.at }} }}
}}
"""

REMOTE = {
    "type": "record",
    "name": "IdOnly",
    "namespace": "it.avro",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "seen", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def test_values_are_avro_under_the_topics_subject_and_misfits_are_dead_lettered(
    stack: StackAddresses, tmp_path: Path
) -> None:
    source, summaries, ids, dead = (unique(f"it-avro-{n}") for n in ("in", "out", "ids", "dlq"))
    remote = unique("it-avro-remote")
    for topic in (source, summaries, ids, dead):
        create_topic(stack, topic)
    registry = SchemaRegistryClient({"url": stack.ccompat_url})
    registry.register_schema(remote, Schema(json.dumps(REMOTE), "AVRO"))
    folder = write_pipelines(
        tmp_path,
        PIPELINES.format(source=source, summaries=summaries, ids=ids, dead=dead, remote=remote),
    )
    records = [
        {"id": "a-1", "amount": 5, "at": "2024-05-01T12:00:00Z", "extra": {"x": [1, 2]}},
        {"id": "a-2", "amount": 6, "at": 1714564800000, "note": "hi", "extra": None},
        {"id": "a-3", "amount": "many", "at": "2024-05-01T12:00:00Z", "extra": 1},
        {"id": "a-4", "amount": 2**40, "at": "2024-05-01T14:00:00+02:00", "extra": "t"},
    ]
    produce(
        stack,
        source,
        [(r["id"].encode(), json.dumps(r).encode(), []) for r in records],
    )

    with LhpipeRun(folder) as run:
        run.wait_ready()
        wait_until(
            lambda: (
                run.stats("export_summaries")["acknowledged"] == 4
                and run.stats("export_ids")["acknowledged"] == 4
            ),
            90,
            "every record to be acknowledged",
        )
        assert run.terminate() == 0, run.log()

    noon = datetime(2024, 5, 1, 12, tzinfo=UTC)
    subject = registry.get_latest_version(f"{summaries}-value")
    deserialize = AvroDeserializer(registry)
    written = read_all(stack, summaries, 3)
    assert [m.key() for m in written] == [b"a-1", b"a-2", b"a-4"]
    for message in written:
        assert WIRE_HEADER.unpack(message.value()[: WIRE_HEADER.size]) == (0, subject.schema_id)
    values = [
        deserialize(m.value(), SerializationContext(summaries, MessageField.VALUE)) for m in written
    ]
    assert values == [
        {"id": "a-1", "amount": 5, "at": noon, "note": None, "extra": '{"x":[1,2]}'},
        {"id": "a-2", "amount": 6, "at": noon, "note": "hi", "extra": "null"},
        {"id": "a-4", "amount": 2**40, "at": noon, "note": None, "extra": '"t"'},
    ]
    assert json.loads(subject.schema.schema_str)["name"] == "Summary"

    (dead_letter,) = read_all(stack, dead, 1)
    assert dead_letter.key() == b"a-3"
    assert json.loads(dead_letter.value()) == records[2]
    headers = dict(dead_letter.headers())
    assert headers["lhpipe.error.class"] == b"permanent"
    assert headers["lhpipe.error.code"] == b"ENCODE"
    assert b"value.amount" in headers["lhpipe.error.message"]

    remote_subject = registry.get_latest_version(f"{ids}-value")
    assert json.loads(remote_subject.schema.schema_str)["name"] == "IdOnly"
    id_values = [
        deserialize(m.value(), SerializationContext(ids, MessageField.VALUE))
        for m in read_all(stack, ids, 4)
    ]
    assert [(v["id"], v["seen"]) for v in id_values] == [
        ("a-1", noon),
        ("a-2", noon),
        ("a-3", noon),
        ("a-4", noon),
    ]


def test_a_schema_the_registry_refuses_as_incompatible_dead_letters_the_records(
    stack: StackAddresses, tmp_path: Path
) -> None:
    source, out, dead = (unique(f"it-avro-{n}") for n in ("in", "out", "dlq"))
    for topic in (source, out, dead):
        create_topic(stack, topic)
    registry = SchemaRegistryClient({"url": stack.ccompat_url})
    existing = {"type": "record", "name": "Count", "fields": [{"name": "n", "type": "string"}]}
    registry.register_schema(f"{out}-value", Schema(json.dumps(existing), "AVRO"))
    registry.set_compatibility(f"{out}-value", "BACKWARD")
    folder = write_pipelines(
        tmp_path,
        "schema Count {\n  n: long\n}\n"
        f'pipeline counts {{\n  from topic "{source}"\n  to topic "{out}" {{ schema = Count }}\n'
        f'  on_error {{ dead_letter = "{dead}" }}\n}}\n',
    )
    produce(stack, source, [(f"k-{n}".encode(), json.dumps({"n": n}).encode(), []) for n in (1, 2)])

    with LhpipeRun(folder) as run:
        run.wait_ready()
        wait_until(
            lambda: run.stats("counts")["acknowledged"] == 2, 90, "both records to be handled"
        )
        assert run.terminate() == 0, run.log()

    letters = read_all(stack, dead, 2)
    assert [m.key() for m in letters] == [b"k-1", b"k-2"]
    for letter in letters:
        headers = dict(letter.headers())
        assert headers["lhpipe.error.class"] == b"permanent"
        assert headers["lhpipe.error.code"] == b"HTTP_409"
    assert read_all(stack, out, 0) == []
    assert registry.get_latest_version(f"{out}-value").version == 1
