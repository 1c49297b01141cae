"""``to topic { schema = NAME }``: the Avro bytes a consumer of the topic reads, the schema
registered under ``<topic>-value``, and the values that do not fit (permanent errors)."""

from __future__ import annotations

import asyncio
import copy
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import fastavro
import pytest

from lhpipe.clients.registry import RegistryPermanentError, RegistryTransientError
from lhpipe.core.avro.encode import AvroValueEncoder, TopicSchemas
from lhpipe.core.avro.wire import WIRE_HEADER, parse_avro_schema
from lhpipe.core.avro.writer import AVRO_DATUM, compile_writer
from lhpipe.core.errors import PermanentError, TransientError
from lhpipe.core.plans import TopicPlan, TopicSchema
from lhpipe.targets.to_topic_sender import TopicSender

SUMMARY: dict[str, Any] = {
    "type": "record",
    "name": "Summary",
    "namespace": "lhpipe",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "count", "type": "long"},
        {"name": "score", "type": "double"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "level", "type": "int", "default": 3},
        {"name": "extra", "type": {"type": "string", "logicalType": "json"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {
            "name": "address",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Address",
                    "fields": [{"name": "city", "type": "string"}],
                },
            ],
            "default": None,
        },
        {"name": "raw", "type": ["null", "bytes"], "default": None},
    ],
}

VALUE: dict[str, Any] = {
    "id": "a-1",
    "count": 7,
    "score": 2,
    "at": "2024-05-01T12:00:00Z",
    "extra": {"k": [1, "two"]},
    "tags": ["x"],
    "address": {"city": "Berlin"},
}


class FakeRegistry:
    """Speaks the part of :class:`lhpipe.clients.registry.SchemaRegistry` the sender uses:
    ids by (subject, schema text), the same schema twice gives the same id."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.registered: list[tuple[str, Any]] = []
        self.subjects: dict[str, dict[str, Any]] = {}
        self.failure: Exception | None = None
        self.created = 0

    async def register(self, subject: str, avro: Mapping[str, Any] | str) -> int:
        await asyncio.sleep(0)
        if self.failure is not None:
            raise self.failure
        text = avro if isinstance(avro, str) else json.dumps(avro, sort_keys=True)
        self.registered.append((subject, json.loads(text)))
        return self.ids.setdefault(text, 100 + len(self.ids))

    async def latest(self, subject: str) -> Any:
        if subject not in self.subjects:
            raise RegistryPermanentError(f"subject {subject}", code="SUBJECT_NOT_FOUND")
        return _Latest(self.subjects[subject])


@dataclass
class _Latest:
    avro: dict[str, Any]


class FakeProducer:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> None:
        self.records.append((topic, value, key))

    def connected(self) -> bool:
        return True


def read(raw: bytes | None, avro: Mapping[str, Any]) -> tuple[int, Any]:
    """A record value in the wire format: its schema id and its value."""
    assert raw is not None
    magic, schema_id = WIRE_HEADER.unpack(raw[: WIRE_HEADER.size])
    assert magic == 0
    body = io.BytesIO(raw[WIRE_HEADER.size :])
    return schema_id, fastavro.schemaless_reader(body, fastavro.parse_schema(dict(avro)))


def sender_for(registry: FakeRegistry, producer: FakeProducer) -> TopicSender:
    def connect() -> FakeRegistry:
        registry.created += 1
        return registry

    return TopicSender(producer, connect)


def send(plans: list[TopicPlan], registry: FakeRegistry, producer: FakeProducer) -> None:
    async def work() -> None:
        sender = sender_for(registry, producer)
        for plan in plans:
            await sender.send(plan)

    asyncio.run(work())


def test_a_value_is_written_in_the_wire_format_and_the_schema_registered_once() -> None:
    registry, producer = FakeRegistry(), FakeProducer()
    schema = TopicSchema("Summary", SUMMARY)
    plans = [
        TopicPlan("summaries", "a-1", VALUE, schema=schema),
        TopicPlan("summaries", "a-2", {**VALUE, "id": "a-2", "note": "hi"}, schema=schema),
    ]
    send(plans, registry, producer)
    assert registry.registered == [("summaries-value", SUMMARY)]
    (topic, raw, key), (_, raw2, key2) = producer.records
    assert (topic, key, key2) == ("summaries", b"a-1", b"a-2")
    schema_id, value = read(raw, SUMMARY)
    assert schema_id == 100
    assert value == {
        "id": "a-1",
        "count": 7,
        "score": 2.0,
        "at": datetime(2024, 5, 1, 12, tzinfo=UTC),
        "note": None,
        "level": 3,
        "extra": '{"k":[1,"two"]}',
        "tags": ["x"],
        "address": {"city": "Berlin"},
        "raw": None,
    }
    assert read(raw2, SUMMARY)[1]["note"] == "hi"


def test_concurrent_first_uses_share_one_registration() -> None:
    registry, producer = FakeRegistry(), FakeProducer()
    schema = TopicSchema("Summary", SUMMARY)

    async def work() -> None:
        sender = sender_for(registry, producer)
        await asyncio.gather(
            *(sender.send(TopicPlan("s", None, VALUE, schema=schema)) for _ in range(5))
        )

    asyncio.run(work())
    assert len(registry.registered) == 1
    assert len(producer.records) == 5


def test_json_values_and_tombstones_need_no_registry() -> None:
    registry, producer = FakeRegistry(), FakeProducer()
    send(
        [
            TopicPlan("plain", None, {"a": 1}),
            TopicPlan("s", "k", None, schema=TopicSchema("Summary", SUMMARY)),
        ],
        registry,
        producer,
    )
    assert [raw for _, raw, _ in producer.records] == [b'{"a":1}', None]
    assert registry.created == 0


def test_a_registry_schema_is_read_from_its_subject_then_registered_for_the_topic() -> None:
    registry, producer = FakeRegistry(), FakeProducer()
    registry.subjects["shared-summary"] = SUMMARY
    send(
        [TopicPlan("out", None, VALUE, schema=TopicSchema("Remote", subject="shared-summary"))],
        registry,
        producer,
    )
    assert registry.registered == [("out-value", SUMMARY)]
    assert read(producer.records[0][1], SUMMARY)[1]["id"] == "a-1"


def test_registry_schemas_are_read_again_after_forget_but_file_schemas_stay_known() -> None:
    registry, producer = FakeRegistry(), FakeProducer()
    registry.subjects["shared-summary"] = SUMMARY
    remote = TopicSchema("Remote", subject="shared-summary")
    newer = copy.deepcopy(SUMMARY)
    newer["fields"].append({"name": "region", "type": ["null", "string"], "default": None})

    async def work() -> None:
        sender = sender_for(registry, producer)
        await sender.send(TopicPlan("out", None, VALUE, schema=remote))
        registry.subjects["shared-summary"] = newer  # a new version, then a reload
        await sender.send(TopicPlan("out", None, VALUE, schema=remote))
        sender.forget_registry_schemas()
        await sender.send(TopicPlan("out", None, VALUE, schema=remote))

    asyncio.run(work())
    assert [avro for _, avro in registry.registered] == [SUMMARY, newer]
    assert read(producer.records[2][1], newer)[1]["region"] is None


def test_a_missing_registry_subject_is_permanent() -> None:
    registry, producer = FakeRegistry(), FakeProducer()
    with pytest.raises(PermanentError) as caught:
        send(
            [TopicPlan("out", None, VALUE, schema=TopicSchema("Remote", subject="nope"))],
            registry,
            producer,
        )
    assert caught.value.code == "SUBJECT_NOT_FOUND"
    assert producer.records == []


def test_registry_failures_keep_their_class_and_are_not_remembered() -> None:
    registry, producer = FakeRegistry(), FakeProducer()
    schema = TopicSchema("Summary", SUMMARY)

    async def work() -> list[str]:
        sender = sender_for(registry, producer)
        seen = []
        registry.failure = RegistryTransientError("down", code="REGISTRY_UNAVAILABLE")
        try:
            await sender.send(TopicPlan("s", None, VALUE, schema=schema))
        except TransientError as exc:
            seen.append(exc.code)
        registry.failure = RegistryPermanentError("incompatible", code="HTTP_409")
        try:
            await sender.send(TopicPlan("s", None, VALUE, schema=schema))
        except PermanentError as exc:
            seen.append(exc.code)
        registry.failure = None
        await sender.send(TopicPlan("s", None, VALUE, schema=schema))
        return seen

    assert asyncio.run(work()) == ["REGISTRY_UNAVAILABLE", "HTTP_409"]
    assert len(producer.records) == 1


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"count": "7"}, "value.count: expected a long"),
        ({"count": 1.5}, "value.count: expected a long"),
        ({"count": True}, "value.count: expected a long"),
        ({"count": 2**63}, "value.count: expected a long between"),
        ({"score": "high"}, "value.score: expected a number"),
        ({"at": "yesterday"}, "value.at: expected a timestamp"),
        ({"tags": ["x", 2]}, "value.tags[1]: expected text"),
        ({"address": {"city": 1}}, "value.address.city: expected text"),
        ({"address": {"town": "x"}}, "value.address: missing field `city`"),
        ({"note": 5}, "value.note: expected text"),
        ({"raw": "not base64!"}, "value.raw: expected bytes"),
        ({"unknown": 1}, "value: unknown field `unknown`"),
        ({"id": None}, "value.id: expected text, got null"),
    ],
)
def test_a_value_that_does_not_fit_is_permanent_and_names_the_field(
    change: dict[str, Any], where: str
) -> None:
    encoder = AvroValueEncoder("Summary", SUMMARY)
    with pytest.raises(PermanentError) as caught:
        encoder.encode(1, {**VALUE, **change})
    assert caught.value.code == "ENCODE"
    assert f"does not fit schema Summary: {where}" in str(caught.value)


def test_a_missing_required_field_is_named() -> None:
    encoder = AvroValueEncoder("Summary", SUMMARY)
    value = dict(VALUE)
    del value["count"]
    with pytest.raises(PermanentError, match=r"missing field `count` of lhpipe\.Summary"):
        encoder.encode(1, value)


def test_a_value_that_is_not_a_record_is_permanent() -> None:
    encoder = AvroValueEncoder("Summary", SUMMARY)
    with pytest.raises(PermanentError, match=r"value: expected a record \(lhpipe.Summary\)"):
        encoder.encode(1, b"raw bytes")


def test_coercions_of_timestamps_bytes_dates_and_numbers() -> None:
    schema = {
        "type": "record",
        "name": "Kinds",
        "fields": [
            {"name": "ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "naive", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "zoned", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "blob", "type": "bytes"},
            {"name": "b64", "type": "bytes"},
            {"name": "small", "type": "float"},
            {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED"]}},
            {"name": "counts", "type": {"type": "map", "values": "long"}},
        ],
    }
    value = {
        "ms": 1_714_564_800_000,
        "us": 1_714_564_800_000_000,
        "naive": datetime(2024, 5, 1, 12),
        "zoned": "2024-05-01T14:00:00+02:00",
        "day": "2024-05-01",
        "blob": b"\x00\x01",
        "b64": "AAE=",
        "small": 2,
        "color": "RED",
        "counts": {"a": 1},
    }
    noon = datetime(2024, 5, 1, 12, tzinfo=UTC)
    _, written = read(AvroValueEncoder("Kinds", schema).encode(5, value), schema)
    assert written == {
        "ms": noon,
        "us": noon,
        "naive": noon,
        "zoned": noon.astimezone(timezone(timedelta(hours=2))),
        "day": date(2024, 5, 1),
        "blob": b"\x00\x01",
        "b64": b"\x00\x01",
        "small": 2.0,
        "color": "RED",
        "counts": {"a": 1},
    }
    for bad in ({"color": "BLUE"}, {"counts": {"a": "1"}}, {"small": 1e39}, {"day": "nope"}):
        with pytest.raises(PermanentError):
            AvroValueEncoder("Kinds", schema).encode(5, {**value, **bad})


def test_the_compiled_writer_writes_fastavros_bytes_and_leaves_it_what_it_does_not_cover() -> None:
    encoder = AvroValueEncoder("Summary", SUMMARY)
    assert compile_writer(encoder.parsed, AVRO_DATUM) is not None

    expected = io.BytesIO()
    fastavro.schemaless_writer(expected, encoder.parsed, encoder.to_avro(VALUE))
    assert encoder.encode(3, VALUE) == WIRE_HEADER.pack(0, 3) + expected.getvalue()

    # a union of several types: fastavro writes it, and the value still reads back
    either = {
        "type": "record",
        "name": "Either",
        "fields": [{"name": "v", "type": ["null", "long", "string"]}],
    }
    assert compile_writer(parse_avro_schema(either), AVRO_DATUM) is None
    for v in (None, 5, "five"):
        assert read(AvroValueEncoder("Either", either).encode(1, {"v": v}), either)[1] == {"v": v}


def test_a_recursive_schema_is_checked_all_the_way_down() -> None:
    schema = {
        "type": "record",
        "name": "Node",
        "fields": [
            {"name": "name", "type": "string"},
            {"name": "children", "type": {"type": "array", "items": "Node"}},
        ],
    }
    tree = {"name": "a", "children": [{"name": "b", "children": []}]}
    _, written = read(AvroValueEncoder("Node", schema).encode(1, tree), schema)
    assert written == tree
    bad = {"name": "a", "children": [{"name": 1, "children": []}]}
    with pytest.raises(PermanentError, match=r"value.children\[0\].name: expected text"):
        AvroValueEncoder("Node", schema).encode(1, bad)


def test_a_sender_without_a_registry_refuses_avro_plans() -> None:
    producer = FakeProducer()
    with pytest.raises(TypeError, match="no schema registry"):
        asyncio.run(
            TopicSender(producer).send(
                TopicPlan("s", None, VALUE, schema=TopicSchema("Summary", SUMMARY))
            )
        )


def test_schemas_resolve_per_topic_and_per_schema() -> None:
    registry = FakeRegistry()
    other = {**SUMMARY, "name": "Other"}

    async def work() -> list[int]:
        schemas = TopicSchemas(lambda: registry)
        ids = []
        for topic, avro in (("a", SUMMARY), ("b", SUMMARY), ("a", other), ("a", SUMMARY)):
            schema_id, _ = await schemas.resolve(topic, TopicSchema("S", avro))
            ids.append(schema_id)
        return ids

    assert asyncio.run(work()) == [100, 100, 101, 100]
    assert [subject for subject, _ in registry.registered] == ["a-value", "b-value", "a-value"]
