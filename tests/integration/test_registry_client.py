"""The schema registry client against Apicurio: register, look up by id and by subject, and
the wire format round trip."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import fastavro
import pytest
from lh import unique_name

from lhpipe.clients.registry import RegistryPermanentError, SchemaRegistry
from lhpipe.core.avro.wire import encode, schema_id_of
from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration


def shipment(name: str) -> dict[str, Any]:
    return {
        "type": "record",
        "name": name,
        "namespace": "lhpipe.it",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "weight", "type": "double"},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }


def test_a_registered_schema_encodes_values_that_read_back_by_its_id(
    stack: StackAddresses,
) -> None:
    subject = unique_name("it-shipments") + "-value"
    avro = shipment("Shipment")
    value = {"id": "s-1", "weight": 2.5, "at": 1_714_557_600_000}

    async def go() -> tuple[int, int, bytes, Any]:
        registry = SchemaRegistry(stack.ccompat_url)
        try:
            schema_id = await registry.register(subject, avro)
            again = await registry.register(subject, avro)
            raw = encode(schema_id, await registry.schema_by_id(schema_id), value)
            # A fresh client (another process) finds the writer schema by the id alone.
            other = SchemaRegistry(stack.ccompat_url)
            try:
                writer = await other.schema_by_id(schema_id_of(raw) or -1)
            finally:
                await other.close()
            return schema_id, again, raw, writer
        finally:
            await registry.close()

    schema_id, again, raw, writer = asyncio.run(go())
    assert again == schema_id
    assert raw[0] == 0 and int.from_bytes(raw[1:5], "big") == schema_id
    decoded = fastavro.schemaless_reader(io.BytesIO(raw[5:]), writer, None)
    assert decoded["id"] == "s-1" and decoded["weight"] == 2.5
    assert int(decoded["at"].timestamp() * 1000) == 1_714_557_600_000


def test_latest_follows_a_new_version_and_unknown_names_are_permanent(
    stack: StackAddresses,
) -> None:
    subject = unique_name("it-versions") + "-value"
    first = shipment("Parcel")
    second = {
        **first,
        "fields": [*first["fields"], {"name": "note", "type": ["null", "string"], "default": None}],
    }

    async def go() -> None:
        registry = SchemaRegistry(stack.ccompat_url)
        try:
            await registry.register(subject, first)
            newest = await registry.register(subject, second)
            await asyncio.sleep(1.1)  # past the client's own cache of "latest"
            latest = await registry.latest(subject)
            assert (latest.version, latest.schema_id) == (2, newest)
            assert [f["name"] for f in latest.avro["fields"]][-1] == "note"
            assert subject in await registry.subjects()
            with pytest.raises(RegistryPermanentError) as no_subject:
                await registry.latest(subject + "-nope")
            assert no_subject.value.code == "SUBJECT_NOT_FOUND"
            with pytest.raises(RegistryPermanentError) as no_id:
                await registry.schema_by_id(987_654_321)
            assert no_id.value.code == "SCHEMA_NOT_FOUND"
        finally:
            await registry.close()

    asyncio.run(go())
