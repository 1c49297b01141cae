"""Avro binary writers compiled once per schema: the one writer of webhook bodies and of
``to topic { schema = ... }`` values.

fastavro's ``schemaless_writer`` looks each field's type up again on every record (a chain of
comparisons per value); a writer made of closures once per schema does the same work in about
a third of the time. The writers are also strict: a value of the wrong Python type, out of its
range, a record with a member that is not a field, or an absent field the writer cannot fill
raises one of :data:`WRITE_ERRORS`. So a webhook's JSON body can be written straight from the
parsed JSON, the writing itself checking it (:data:`JSON_BODY`), and only a body that fails
goes through the slower check that names every problem.

Values arrive in one of two forms, :class:`Inputs`, that differ only for the types JSON has no
value of:

=====================  ===============================  =====================================
type                   :data:`JSON_BODY` (parsed JSON)  :data:`AVRO_DATUM` (fastavro's types)
=====================  ===============================  =====================================
``bytes`` / ``fixed``  base64 text                      ``bytes``
``timestamp-*``        epoch units, or ISO-8601 text    an aware ``datetime``, or epoch units
``date``               days since the epoch             a ``date``, or days since the epoch
``json``               any parsed JSON value            its JSON text
``decimal``            as ``bytes``                     not covered (fastavro writes it)
=====================  ===============================  =====================================

The rest is the same for both: ``int``/``long`` an ``int`` (not a ``bool``) in range,
``float``/``double`` an ``int`` or ``float`` (a ``float`` within 32 bits), ``string`` a ``str``
(``enum``: one of its symbols), records a ``dict`` (an absent field is written only when it is
optional with no default or a null default), arrays a ``list``, maps a ``dict``, unions of
``null`` and one other type. A union of several non-null types makes :func:`compile_writer`
return ``None`` (fastavro writes those). The output is byte for byte fastavro's
(tests/unit/connect/webhooks/test_avro_writer.py).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, NamedTuple

import orjson

from lhpipe.core.avro.compile import FLOAT_MAX, INT_RANGE, LONG_RANGE, SchemaWalker, named_types
from lhpipe.core.avro.wire import WIRE_HEADER

#: Appends the Avro binary encoding of one value to ``out``.
Writer = Callable[[bytearray, Any], None]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_DAY: Final = date(1970, 1, 1)

_FLOAT: Final = struct.Struct("<f")
_DOUBLE: Final = struct.Struct("<d")


class NotWritable(ValueError):
    """The value is not of the form the writer takes (the caller falls back to a slower path
    that says why)."""


#: What a compiled writer raises for a value it does not take.
WRITE_ERRORS: Final = (ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error)


class Unsupported(Exception):
    """The schema has a construct the compiled writers do not cover."""


class Inputs(NamedTuple):
    """How values of the types JSON has no value of arrive (see the module docstring)."""

    #: The bytes of a ``bytes`` or ``fixed`` value.
    bytes_of: Callable[[Any], bytes]
    #: The writer of a timestamp with this many units a second.
    timestamp: Callable[[int], Writer]
    json: Writer
    date: Writer
    decimal: bool


def compile_writer(parsed: Any, inputs: Inputs) -> Writer | None:
    """The writer of values of ``parsed`` (a schema parsed by fastavro) given as ``inputs``
    says, or ``None`` when it has a construct that only fastavro writes."""
    try:
        return _Compiler(named_types(parsed), inputs).node(parsed)
    except (Unsupported, KeyError):  # KeyError: a name fastavro did not resolve
        return None


def wire_record(writer: Writer | None, schema_id: int, value: Any) -> bytes | None:
    """``value`` written by ``writer`` behind the registry wire header (magic byte 0, the
    4-byte schema id), or ``None`` when there is no writer or it does not take the value."""
    if writer is None:
        return None
    out = bytearray(WIRE_HEADER.pack(0, schema_id))
    try:
        writer(out, value)
    except WRITE_ERRORS:
        return None
    return bytes(out)


def write_long(out: bytearray, value: int) -> None:
    """``int`` and ``long``: zig-zag, then 7 bits a byte, low bits first (unchecked)."""
    if 0 <= value < 64:  # one byte: most lengths, counts and small numbers
        out.append(value << 1)
        return
    n = (value << 1) ^ (value >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _not_writable(value: Any) -> NotWritable:
    return NotWritable(type(value).__name__)


def _integer(low: int, high: int) -> Writer:
    def write(out: bytearray, value: Any) -> None:
        if type(value) is not int or not low <= value <= high:
            raise _not_writable(value)
        write_long(out, value)

    return write


def _write_bytes(out: bytearray, value: bytes) -> None:
    size = len(value)
    if size < 64:
        out.append(size << 1)
    else:
        write_long(out, size)
    out += value


def _write_string(out: bytearray, value: Any) -> None:
    # Of the values either input holds, only a str has encode(): no type check needed.
    data = value.encode()  # UTF-8
    size = len(data)
    if size < 64:
        out.append(size << 1)
    else:
        write_long(out, size)
    out += data


def _write_null(out: bytearray, value: Any) -> None:
    if value is not None:
        raise _not_writable(value)


def _write_boolean(out: bytearray, value: Any) -> None:
    if value is True:
        out.append(1)
    elif value is False:
        out.append(0)
    else:
        raise _not_writable(value)


def _write_float(out: bytearray, value: Any) -> None:
    kind = type(value)
    if (kind is not float and kind is not int) or abs(value) > FLOAT_MAX:
        raise _not_writable(value)
    out += _FLOAT.pack(value)


def _write_double(out: bytearray, value: Any) -> None:
    kind = type(value)
    if kind is not float and kind is not int:
        raise _not_writable(value)
    out += _DOUBLE.pack(value)


def _units(per_second: int, value: datetime) -> int:
    """An aware datetime as whole units since the epoch, as fastavro counts them (seconds and
    the units of the sub-second part each truncated)."""
    delta = value - EPOCH
    whole = (delta.days * 86_400 + delta.seconds) * per_second
    return whole + delta.microseconds // (1_000_000 // per_second)


def _unit_range(per_second: int) -> tuple[int, int]:
    """The epoch units a ``datetime`` can hold (years 1 to 9999)."""
    per_unit = 1_000_000 // per_second
    low = (datetime.min.replace(tzinfo=UTC) - EPOCH) // _MICROSECOND
    high = (datetime.max.replace(tzinfo=UTC) - EPOCH) // _MICROSECOND
    return -(-low // per_unit), high // per_unit


def _json_timestamp(per_second: int) -> Writer:
    low, high = _unit_range(per_second)

    def write(out: bytearray, value: Any) -> None:
        kind = type(value)
        if kind is int:
            if not low <= value <= high:
                raise _not_writable(value)
            write_long(out, value)
        elif kind is str:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            write_long(out, _units(per_second, parsed))
        else:
            raise _not_writable(value)

    return write


def _datum_timestamp(per_second: int) -> Writer:
    def write(out: bytearray, value: Any) -> None:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise _not_writable(value)
            write_long(out, _units(per_second, value))
        elif type(value) is int and LONG_RANGE[0] <= value <= LONG_RANGE[1]:
            write_long(out, value)
        else:
            raise _not_writable(value)

    return write


def _base64(value: Any) -> bytes:
    if type(value) is not str:
        raise _not_writable(value)
    return base64.b64decode(value, validate=True)


def _exact_bytes(value: Any) -> bytes:
    if type(value) is not bytes:
        raise _not_writable(value)
    return value


def _write_any_json(out: bytearray, value: Any) -> None:
    _write_bytes(out, orjson.dumps(value))


def _write_datum_date(out: bytearray, value: Any) -> None:
    if type(value) is date:
        write_long(out, (value - EPOCH_DAY).days)
    else:
        _INT(out, value)


_INT: Final = _integer(*INT_RANGE)
_LONG: Final = _integer(*LONG_RANGE)
_MICROSECOND: Final = timedelta(microseconds=1)

#: Webhook bodies, straight from the parsed JSON.
JSON_BODY: Final = Inputs(
    bytes_of=_base64, timestamp=_json_timestamp, json=_write_any_json, date=_INT, decimal=True
)
#: Values as fastavro takes them (a checked ``to topic`` value, a checked webhook body after
#: ``to_avro``).
AVRO_DATUM: Final = Inputs(
    bytes_of=_exact_bytes,
    timestamp=_datum_timestamp,
    json=_write_string,
    date=_write_datum_date,
    decimal=False,
)

_PRIMITIVES: Final[Mapping[str, Writer]] = {
    "null": _write_null,
    "boolean": _write_boolean,
    "int": _INT,
    "long": _LONG,
    "float": _write_float,
    "double": _write_double,
    "string": _write_string,
}


class _Compiler(SchemaWalker[Writer]):
    def __init__(self, named: Mapping[str, Any], inputs: Inputs) -> None:
        super().__init__(named)
        self.inputs = inputs

    def primitive(self, name: str) -> Writer:
        if name == "bytes":
            return _bytes(self.inputs.bytes_of)
        return _PRIMITIVES[name]

    def logical(self, kind: Any, logical: str, schema: Mapping[str, Any]) -> Writer | None:
        if kind == "long" and logical == "timestamp-millis":
            return self.inputs.timestamp(1000)
        if kind == "long" and logical == "timestamp-micros":
            return self.inputs.timestamp(1_000_000)
        if kind == "int" and logical == "date":
            return self.inputs.date
        if kind == "string" and logical == "json":
            return self.inputs.json
        if logical == "decimal" and not self.inputs.decimal:
            raise Unsupported("decimal")
        return None  # written as its underlying type

    def record(self, schema: Mapping[str, Any]) -> Writer:
        # (name, writer, what an absent field is written as: None when it cannot be absent)
        fields: list[tuple[str, Writer, bytes | None]] = []

        def write(out: bytearray, value: Any) -> None:
            if type(value) is not dict:
                raise _not_writable(value)
            missing = 0
            for name, write_field, absent in fields:
                try:
                    field_value = value[name]
                except KeyError:
                    if absent is None:
                        raise NotWritable(f"no {name}") from None
                    out += absent
                    missing += 1
                    continue
                write_field(out, field_value)
            if len(value) != len(fields) - missing:
                raise NotWritable("a member that is not a field")

        self.done[str(schema["name"])] = write
        fields.extend(
            (str(f["name"]), self.node(f["type"]), _absent_null(f)) for f in schema["fields"]
        )
        return write

    def union(self, branches: list[Any]) -> Writer:
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

    def enum(self, schema: Mapping[str, Any]) -> Writer:
        index = {symbol: position for position, symbol in enumerate(schema["symbols"])}

        def write(out: bytearray, value: Any) -> None:
            write_long(out, index[value])

        return write

    def fixed(self, size: int) -> Writer:
        bytes_of = self.inputs.bytes_of

        def write(out: bytearray, value: Any) -> None:
            data = bytes_of(value)
            if len(data) != size:
                raise NotWritable(f"{len(data)} bytes")
            out += data

        return write

    def array(self, items: Writer) -> Writer:
        def write(out: bytearray, value: Any) -> None:
            if type(value) is not list:
                raise _not_writable(value)
            if value:
                write_long(out, len(value))
                for element in value:
                    items(out, element)
            out.append(0)

        return write

    def map(self, values: Writer) -> Writer:
        def write(out: bytearray, value: Any) -> None:
            if type(value) is not dict:
                raise _not_writable(value)
            if value:
                write_long(out, len(value))
                for key, element in value.items():
                    _write_string(out, key)
                    values(out, element)
            out.append(0)

        return write


def _absent_null(field: Mapping[str, Any]) -> bytes | None:
    """The bytes of an optional field (a union with null) that is absent and has no default or
    a null one; ``None`` for every other field (an absent one is not written here)."""
    schema = field["type"]
    if not isinstance(schema, list) or "null" not in schema:
        return None
    if "default" in field and field["default"] is not None:
        return None
    return bytes([schema.index("null") << 1])


def _bytes(bytes_of: Callable[[Any], bytes]) -> Writer:
    def write(out: bytearray, value: Any) -> None:
        _write_bytes(out, bytes_of(value))

    return write
