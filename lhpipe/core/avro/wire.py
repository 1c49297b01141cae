"""The registry wire format and what Avro needs everywhere: a magic byte 0 and a 4-byte
schema id before a schemaless Avro body (Confluent's framing, which Apicurio speaks too), the
subject a topic's values are registered under, and fastavro's parsed schemas. fastavro is
imported on first use, so that ``lhpipe lint`` of files without ``.avsc`` schemas never loads
it.
"""

from __future__ import annotations

import copy
import io
import struct
from typing import Any

from lhpipe.core.errors import DecodeError, PermanentError

#: Magic byte, then the schema id as a 4-byte big-endian unsigned int.
WIRE_HEADER = struct.Struct(">BI")
WIRE_HEADER_SIZE = WIRE_HEADER.size


def schema_id_of(raw: bytes | None) -> int | None:
    """The registry schema id of a value in the wire format; ``None`` for no value (a
    tombstone). Raises :class:`DecodeError` for a value that is not in the wire format."""
    if raw is None:
        return None
    if len(raw) < WIRE_HEADER_SIZE:
        raise DecodeError(
            f"the value is {len(raw)} byte{'' if len(raw) == 1 else 's'} long, too short for "
            "the registry wire format (a magic byte 0 and a 4-byte schema id come first)"
        )
    magic, schema_id = WIRE_HEADER.unpack_from(raw)
    if magic != 0:
        looks = " (it looks like JSON)" if raw[:1] in (b"{", b"[", b'"') else ""
        raise DecodeError(
            f"unknown magic byte 0x{raw[0]:02x}: the value is not in the registry wire "
            f"format{looks}"
        )
    return int(schema_id)


def parse_avro_schema(avro: Any) -> Any:
    """An Avro schema (JSON as a dict) parsed by fastavro, without touching the original."""
    import fastavro

    return fastavro.parse_schema(copy.deepcopy(avro))


def topic_subject(topic: str) -> str:
    """The subject a topic's values are registered under (TopicNameStrategy, as Kafka's
    serializers do by default): ``<topic>-value``."""
    return f"{topic}-value"


def encode(schema_id: int, parsed_schema: Any, value: Any) -> bytes:
    """``value`` in the registry wire format; raises :class:`PermanentError` (code
    ``ENCODE``) naming the field when the value does not fit the schema."""
    out = io.BytesIO()
    out.write(WIRE_HEADER.pack(0, schema_id))
    try:
        import fastavro

        fastavro.schemaless_writer(out, parsed_schema, value)
    except Exception as exc:  # fastavro's writer raises TypeError, ValueError, KeyError...
        raise PermanentError(
            f"the value does not fit schema id {schema_id}: {_why_not(parsed_schema, value, exc)}",
            code="ENCODE",
        ) from exc
    return out.getvalue()


def _why_not(parsed_schema: Any, value: Any, exc: Exception) -> str:
    """The validator's account (it names the field), else the writer's own error."""
    from fastavro.validation import ValidationError, validate

    try:
        validate(value, parsed_schema, raise_errors=True)
    except ValidationError as invalid:
        return "; ".join(str(error) for error in invalid.errors) or str(invalid)
    return f"{type(exc).__name__}: {exc}"
