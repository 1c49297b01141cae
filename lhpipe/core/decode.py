"""Decoding a record's key and value as its pipeline's source declares them.

``value`` decodes by the source's ``value`` (delivery.md, "Kafka sources"):

* ``json``: JSON text (orjson: about 3x the standard library on a typical record, see
  docs/runtime.md); a tombstone (no value) is null;
* ``string``: UTF-8 text; ``bytes``: passed through as they are;
* a schema name: the registry wire format, magic byte ``0``, a 4-byte big-endian schema id,
  then the Avro body. The runtime looks the writer schema up by :func:`schema_id_of` (E2's
  registry client, cached) and passes it to :meth:`Decoder.decode_value`. When the pipeline's
  schema is known offline (inline or ``.avsc``) it is the reader schema, so Avro schema
  resolution applies (a field added with a default, a widened number...); a registry schema
  is read as written.

``key`` decodes as ``string`` (UTF-8) or ``json``.

Avro values come out as the evaluator wants them: records are dicts, ``timestamp-millis`` and
``-micros`` are UTC-aware datetimes, bytes are bytes, inline ``json`` fields are parsed, ``uuid``
is text. Every failure is a :class:`~lhpipe.core.errors.DecodeError` (permanent: the record
goes to the dead-letter topic with its original bytes) saying what is wrong and where.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import orjson

from lhpipe.check.program import Program, SourceInfo
from lhpipe.core.avro import convert as _avro
from lhpipe.core.avro.wire import WIRE_HEADER_SIZE, parse_avro_schema, schema_id_of
from lhpipe.core.errors import DecodeError

_TEXT_FORMATS = ("json", "string", "bytes")


def _read_rule(logical: str) -> _avro.Convert | None:
    if logical == "json":
        return _parse_json_field
    if logical == "uuid":
        return str
    return None


def _parse_json_field(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(
            f"a `json` field holds text that is not JSON: {exc.msg} at offset {exc.pos}"
        ) from exc


def _write_rule(logical: str) -> _avro.Convert | None:
    if logical == "json":
        return _json_field_text
    if logical in ("timestamp-millis", "timestamp-micros"):
        return _timestamp_of_text
    return None


def _timestamp_of_text(value: Any) -> Any:
    """ISO-8601 text for a timestamp field (what a test literal can write) as a datetime."""
    if not isinstance(value, str):
        return value
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value  # the Avro writer reports the value that does not fit
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _json_field_text(value: Any) -> Any:
    """Any engine value as the JSON text a ``json`` field holds. Text is a JSON string too
    (``abc`` is written with its quotes, ``"abc"``), so reading gives back what was written,
    as with the Gateway's writer for a webhook body's ``json`` fields."""
    from lhpipe.core.evaluate import json_text

    return json_text(value)


def avro_writer_converter(schema: Any) -> _avro.Convert | None:
    """What turns an engine value into what fastavro writes for ``schema`` (parsed): inline
    ``json`` fields become JSON text (always encoded, text included), ISO-8601 text in a
    timestamp field a datetime. ``None`` when nothing needs converting."""
    return _avro.converter(schema, _write_rule)


class Decoder:
    """Decodes the keys and values of one source (see the module docstring)."""

    def __init__(self, source: SourceInfo, program: Program) -> None:
        self.value_format = source.value
        self.key_format = source.key
        self.is_avro = source.value not in _TEXT_FORMATS
        self.schema_name: str | None = source.value if self.is_avro else None
        self.reader_schema: Any = None
        self._reader_convert: _avro.Convert | None = None
        # Per writer schema (kept alive here, so ids are not reused): whether it reads as the
        # reader schema without resolution, and the converter of the values it gives.
        self._writers: dict[int, tuple[Any, bool, _avro.Convert | None]] = {}
        if self.is_avro:
            info = program.schemas.get(source.value)
            if info is not None and info.avro is not None:
                self.reader_schema = parse_avro_schema(info.avro)
                self._reader_convert = _avro.converter(self.reader_schema, _read_rule)
        text_decoders: dict[str, Callable[[bytes], Any]] = {
            "json": _decode_json,
            "string": _decode_string,
            "bytes": _pass_through,
        }
        self._decode_text = text_decoders.get(self.value_format, _pass_through)

    def decode_key(self, raw: bytes | None) -> Any:
        """The key as expressions see it: text (``key = string``) or parsed JSON."""
        if raw is None:
            return None
        if self.key_format == "json":
            return _decode_json(raw, "key")
        return _decode_string(raw, "key")

    def decode_value(self, raw: bytes | None, writer_schema: Any = None) -> Any:
        """The value as expressions see it. For an Avro source ``writer_schema`` is the parsed
        schema that :func:`schema_id_of` names (``None``: the pipeline's own schema)."""
        if raw is None:
            return None
        if not self.is_avro:
            return self._decode_text(raw)
        return self._decode_avro(raw, writer_schema)

    def _decode_avro(self, raw: bytes, writer_schema: Any) -> Any:
        import fastavro
        from fastavro.read import SchemaResolutionError

        schema_id = schema_id_of(raw)
        if writer_schema is None:
            if self.reader_schema is None:
                raise DecodeError(
                    f"no writer schema for schema id {schema_id} (schema `{self.schema_name}` "
                    "comes from the registry)"
                )
            writer_schema = self.reader_schema
        identical, convert = self._writer(writer_schema)
        body = io.BytesIO(raw)
        body.seek(WIRE_HEADER_SIZE)
        reader = None if identical else self.reader_schema
        try:
            value = fastavro.schemaless_reader(body, writer_schema, reader)
        except SchemaResolutionError as exc:
            raise DecodeError(
                f"schema id {schema_id} cannot be read as `{self.schema_name}`: {exc}"
            ) from exc
        except EOFError as exc:
            raise DecodeError(
                f"the Avro body ends early: truncated, or not written with schema id {schema_id}"
            ) from exc
        except Exception as exc:  # fastavro raises many kinds on bytes that do not fit
            raise DecodeError(
                f"the Avro body does not match schema id {schema_id}: {type(exc).__name__}: {exc}"
            ) from exc
        left = len(raw) - body.tell()
        if left:
            raise DecodeError(
                f"{left} byte{'' if left == 1 else 's'} left after the Avro value: the body "
                f"was not written with schema id {schema_id}"
            )
        return value if convert is None else convert(value)

    def _writer(self, writer_schema: Any) -> tuple[bool, _avro.Convert | None]:
        known = self._writers.get(id(writer_schema))
        if known is not None:
            return known[1], known[2]
        if self.reader_schema is None or writer_schema is self.reader_schema:
            identical = True
        else:
            identical = _essence(writer_schema) == _essence(self.reader_schema)
        if self.reader_schema is not None:
            # The value has the reader's shape (resolution), so the reader's logical types.
            convert = self._reader_convert
        else:
            convert = _avro.converter(writer_schema, _read_rule)
        self._writers[id(writer_schema)] = (writer_schema, identical, convert)
        return identical, convert


def _essence(schema: Any) -> Any:
    """A schema without documentation and fastavro's bookkeeping: two schemas with the same
    essence read the same bytes into the same values, so no resolution is needed."""
    if isinstance(schema, dict):
        return {k: _essence(v) for k, v in schema.items() if k != "doc" and not k.startswith("__")}
    if isinstance(schema, list):
        return [_essence(item) for item in schema]
    return schema


def _pass_through(raw: bytes) -> bytes:
    return raw


def _decode_json(raw: bytes, what: str = "value") -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"the {what} is not JSON: {exc.msg} at offset {exc.pos}") from exc


def _decode_string(raw: bytes, what: str = "value") -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            f"the {what} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        ) from exc
