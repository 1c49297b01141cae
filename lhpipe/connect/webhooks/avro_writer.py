"""Avro binary writers compiled once per schema, for webhook bodies that passed their check.

fastavro's ``schemaless_writer`` looks each field's type up again on every record (a chain of
comparisons per value) and was the largest single cost of a schema-body request (8.75 µs of
about 40 µs for the bench's 10-field body, 16 % of the process under load). A body that
:class:`~lhpipe.connect.webhooks.validate.SchemaBody` accepted has exactly the Python types its
schema needs (``int``, ``float``, ``str``, ``bytes``, a UTC ``datetime`` for the timestamps,
records with every field), so its bytes can be written by closures made once, in 3.2 µs.

:func:`compile_writer` covers what webhook schemas are made of: the primitives, records, enums,
arrays, maps, fixed, unions of ``null`` and one other type (``T?``), and the logical types
``timestamp-millis``, ``timestamp-micros`` and ``json`` (other logical types are written as
their underlying type, as fastavro does with values that are not its logical Python types).
For anything else (a union of several non-null types) it returns ``None`` and fastavro writes.
The output is byte for byte fastavro's (tests/unit/connect/webhooks/test_avro_writer.py).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

#: Appends the Avro binary encoding of one value to ``out``.
Writer = Callable[[bytearray, Any], None]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_FLOAT: Final = struct.Struct("<f")
_DOUBLE: Final = struct.Struct("<d")


class Unsupported(Exception):
    """The schema has a construct the compiled writers do not cover."""


def compile_writer(parsed: Any) -> Writer | None:
    """The writer of values of ``parsed`` (a schema parsed by fastavro), or ``None`` when it
    has a construct that only fastavro writes."""
    named = parsed.get("__named_schemas", {}) if isinstance(parsed, dict) else {}
    try:
        return _Compiler(named).node(parsed)
    except Unsupported:
        return None


def write_long(out: bytearray, value: int) -> None:
    """``int`` and ``long``: zig-zag, then 7 bits a byte, low bits first."""
    if 0 <= value < 64:  # one byte: most lengths, counts and small numbers
        out.append(value << 1)
        return
    n = (value << 1) ^ (value >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _write_bytes(out: bytearray, value: bytes) -> None:
    size = len(value)
    if size < 64:
        out.append(size << 1)
    else:
        write_long(out, size)
    out += value


def _write_string(out: bytearray, value: str) -> None:
    data = value.encode()  # UTF-8
    size = len(data)
    if size < 64:
        out.append(size << 1)
    else:
        write_long(out, size)
    out += data


def _write_null(out: bytearray, value: None) -> None:
    return None


def _write_boolean(out: bytearray, value: bool) -> None:
    out.append(1 if value else 0)


def _write_float(out: bytearray, value: float) -> None:
    out += _FLOAT.pack(value)


def _write_double(out: bytearray, value: float) -> None:
    out += _DOUBLE.pack(value)


def _write_json(out: bytearray, value: Any) -> None:
    _write_bytes(out, orjson.dumps(value))


def _timestamp(per_second: int) -> Writer:
    """A UTC ``datetime`` as whole units since the epoch, as fastavro counts them (seconds and
    the units of the sub-second part each truncated, so a pre-epoch instant counts as
    fastavro's does)."""
    microseconds_per_unit = 1_000_000 // per_second

    def write(out: bytearray, value: datetime) -> None:
        delta = value - _EPOCH
        whole = (delta.days * 86_400 + delta.seconds) * per_second
        write_long(out, whole + delta.microseconds // microseconds_per_unit)

    return write


_PRIMITIVES: Final[Mapping[str, Writer]] = {
    "null": _write_null,
    "boolean": _write_boolean,
    "int": write_long,
    "long": write_long,
    "float": _write_float,
    "double": _write_double,
    "bytes": _write_bytes,
    "string": _write_string,
}


class _Compiler:
    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.done: dict[str, Writer] = {}

    def node(self, schema: Any) -> Writer:
        if isinstance(schema, str):
            return self._named(schema)
        if isinstance(schema, list):
            return self._union(schema)
        kind = schema["type"]
        logical = schema.get("logicalType")
        if kind == "long" and logical == "timestamp-millis":
            return _timestamp(1000)
        if kind == "long" and logical == "timestamp-micros":
            return _timestamp(1_000_000)
        if kind == "string" and logical == "json":
            return _write_json
        if kind in ("record", "error"):
            return self._record(schema)
        if kind == "enum":
            return _enum(schema["symbols"])
        if kind == "fixed":
            return _fixed
        if kind == "array":
            return _array(self.node(schema["items"]))
        if kind == "map":
            return _map(self.node(schema["values"]))
        return self.node(kind)

    def _named(self, name: str) -> Writer:
        primitive = _PRIMITIVES.get(name)
        if primitive is not None:
            return primitive
        found = self.done.get(name)
        if found is not None:
            return found
        if name not in self.named:
            raise Unsupported(name)
        return self.node(self.named[name])

    def _record(self, schema: Mapping[str, Any]) -> Writer:
        fields: list[tuple[str, Writer]] = []

        def write(out: bytearray, value: Mapping[str, Any]) -> None:
            for name, write_field in fields:
                write_field(out, value[name])

        # Registered before its fields are compiled, so a recursive reference finds it.
        self.done[str(schema["name"])] = write
        fields.extend((str(f["name"]), self.node(f["type"])) for f in schema["fields"])
        return write

    def _union(self, branches: list[Any]) -> Writer:
        if len(branches) != 2 or "null" not in branches:
            raise Unsupported("a union of several types")
        null_index = branches.index("null")
        null_tag = bytes([null_index << 1])  # the branch index, zig-zag encoded
        other_tag = bytes([(1 - null_index) << 1])
        inner = self.node(branches[1 - null_index])

        def write(out: bytearray, value: Any) -> None:
            if value is None:
                out += null_tag
            else:
                out += other_tag
                inner(out, value)

        return write


def _enum(symbols: list[str]) -> Writer:
    index = {symbol: position for position, symbol in enumerate(symbols)}

    def write(out: bytearray, value: str) -> None:
        write_long(out, index[value])

    return write


def _fixed(out: bytearray, value: bytes) -> None:
    out += value


def _array(item: Writer) -> Writer:
    def write(out: bytearray, value: list[Any]) -> None:
        if value:
            write_long(out, len(value))
            for element in value:
                item(out, element)
        out.append(0)

    return write


def _map(values: Writer) -> Writer:
    def write(out: bytearray, value: Mapping[str, Any]) -> None:
        if value:
            write_long(out, len(value))
            for key, element in value.items():
                _write_string(out, key)
                values(out, element)
        out.append(0)

    return write
