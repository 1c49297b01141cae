"""Apicurio Registry on the local stack, through its Confluent-compatible API."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

PAYMENT = {
    "type": "record",
    "name": "Payment",
    "namespace": "it.lhpipe",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "amount", "type": "double"},
    ],
}


def test_an_avro_schema_registered_by_subject_is_read_back_by_id(stack: StackAddresses) -> None:
    subject = f"it-payments-{uuid.uuid4().hex[:10]}-value"
    schema_id = SchemaRegistryClient({"url": stack.ccompat_url}).register_schema(
        subject, Schema(json.dumps(PAYMENT), "AVRO")
    )

    # A second client: the first one caches what it registered and would not ask the registry.
    reader = SchemaRegistryClient({"url": stack.ccompat_url})
    fetched = reader.get_schema(schema_id)
    assert fetched.schema_type == "AVRO"
    assert json.loads(fetched.schema_str) == PAYMENT
    assert reader.get_latest_version(subject).schema_id == schema_id
