"""Schemas: inline ``schema`` declarations compiled to Avro JSON, `.avsc` files read into
static types.

Inline schemas compile to Avro records in the namespace ``lhpipe``:

===================  ===========================================================
``.lhp`` type         Avro
===================  ===========================================================
``string`` ...        the Avro primitive of the same name (``int``, ``long``, ``float``,
                      ``double``, ``boolean``, ``bytes``)
``timestamp``         ``{"type": "long", "logicalType": "timestamp-millis"}``
``json``              ``{"type": "string", "logicalType": "json"}``: JSON text; readers that
                      do not know the logical type see a plain string (the Avro rule for
                      unknown logical types), lhpipe parses it
``[T]``               ``{"type": "array", "items": T}``
``map<T>``            ``{"type": "map", "values": T}``
``T?``                ``["null", T]`` with ``"default": null`` (``[T, "null"]`` when the field
                      has a non-null default, as Avro wants the default's branch first)
schema name           the schema's record, defined in full where first used and referred to
                      by its full name after that (``lhpipe.Address``)
===================  ===========================================================

A `.avsc` file must hold one Avro record schema; its static type follows the Avro types back:
enums are strings, fixed is bytes, ``timestamp-millis``/``-micros`` longs are timestamps, a
union with ``null`` and one other branch is optional, any other union is ``json``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lhpipe.check import types as t
from lhpipe.check.types import Type

JSONValue = Any  # a value json.dumps accepts

NAMESPACE = "lhpipe"


class _NoDefault:
    """The marker for a field written without ``= default``."""


NO_DEFAULT = _NoDefault()


@dataclass(frozen=True, slots=True)
class InlineField:
    """One field of an inline schema, resolved: its type and its default as JSON."""

    name: str
    type: Type
    default: JSONValue | _NoDefault = NO_DEFAULT


_PRIMITIVE_AVRO: Mapping[Type, JSONValue] = {
    t.STRING: "string",
    t.INT: "int",
    t.LONG: "long",
    t.FLOAT: "float",
    t.DOUBLE: "double",
    t.BOOLEAN: "boolean",
    t.BYTES: "bytes",
    t.TIMESTAMP: {"type": "long", "logicalType": "timestamp-millis"},
}
_JSON_AVRO: Mapping[str, str] = {"type": "string", "logicalType": "json"}


class AvroCompiler:
    """Compiles record types to standalone Avro JSON documents.

    ``inline`` gives the fields of each inline schema's record type, ``external`` the Avro JSON
    of each record type read from a file (embedded as it is where an inline schema uses it).
    """

    def __init__(
        self,
        inline: Mapping[int, Sequence[InlineField]],
        external: Mapping[int, Mapping[str, JSONValue]],
    ) -> None:
        self._inline = inline
        self._external = external

    def compile(self, record: t.RecordType) -> dict[str, JSONValue]:
        """The Avro record schema of ``record``, with every record it uses defined inside."""
        result = self._record(record, set())
        assert isinstance(result, dict)
        return result

    def _record(self, record: t.RecordType, defined: set[str]) -> JSONValue:
        external = self._external.get(id(record))
        if external is not None:
            full = _full_name(external)
            if full in defined:
                return full
            defined.add(full)
            return copy.deepcopy(dict(external))
        full = f"{NAMESPACE}.{record.name}"
        if full in defined:
            return full
        defined.add(full)
        fields: list[dict[str, JSONValue]] = []
        for f in self._inline[id(record)]:
            entry: dict[str, JSONValue] = {"name": f.name}
            default_first = not isinstance(f.default, _NoDefault) and f.default is not None
            entry["type"] = self._type(f.type, defined, null_last=default_first)
            if not isinstance(f.default, _NoDefault):
                entry["default"] = f.default
            elif isinstance(f.type, t.OptionalType):
                entry["default"] = None
            fields.append(entry)
        return {"type": "record", "name": record.name, "namespace": NAMESPACE, "fields": fields}

    def _type(self, typ: Type, defined: set[str], null_last: bool = False) -> JSONValue:
        if isinstance(typ, t.OptionalType):
            inner = self._type(typ.inner, defined)
            return [inner, "null"] if null_last else ["null", inner]
        if isinstance(typ, t.ArrayType):
            return {"type": "array", "items": self._type(typ.item, defined)}
        if isinstance(typ, t.MapType):
            return {"type": "map", "values": self._type(typ.values, defined)}
        if isinstance(typ, t.RecordType):
            return self._record(typ, defined)
        if isinstance(typ, t.Dynamic):
            return dict(_JSON_AVRO)
        return copy.deepcopy(_PRIMITIVE_AVRO[typ])


def _full_name(schema: Mapping[str, JSONValue]) -> str:
    name = str(schema.get("name", ""))
    namespace = schema.get("namespace")
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


class SchemaFileError(Exception):
    """A `.avsc` file that cannot be read, is not JSON, not valid Avro or not a record."""


def read_avsc(path: Path, declared_name: str) -> tuple[dict[str, JSONValue], t.RecordType]:
    """Read and validate one `.avsc` file: its Avro JSON and the static type of its record
    (named ``declared_name``, the name the `.lhp` file gives it).

    Raises :class:`SchemaFileError` with a message naming what is wrong.
    """
    from lhpipe.check.files import read_text

    try:
        text = read_text(path)
    except OSError as exc:
        raise SchemaFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SchemaFileError(f"{path} is not UTF-8 text: {exc}") from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise SchemaFileError(f"{path} is not JSON: {exc}") from exc
    except RecursionError:
        document = None  # nested far deeper than the limit below
    if document is None or _json_depth(document) > MAX_AVSC_NESTING:
        raise SchemaFileError(
            f"{path} is nested too deeply: more than {MAX_AVSC_NESTING} levels of JSON"
        )
    if not isinstance(document, dict) or document.get("type") != "record":
        raise SchemaFileError(f"{path} is not an Avro record schema")
    _validate_avro(path, document)
    record = t.RecordType(declared_name)
    names: dict[str, Type] = {}
    _fill_record(record, document, names, document.get("namespace"))
    return document, record


MAX_AVSC_NESTING = 100
"""How deep the JSON of a `.avsc` file may nest (a record inside a record is three levels:
its ``fields``, the field, its ``type``), so that reading it, compiling it into an inline
schema's Avro and encoding with it never recurse too deep."""


def _json_depth(document: JSONValue) -> int:
    """How deep a JSON value nests (a scalar 0, ``[]`` and ``{}`` 1), without recursing."""
    deepest = 0
    stack: list[tuple[JSONValue, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            deepest = max(deepest, depth + 1)
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
            deepest = max(deepest, depth + 1)
    return deepest


def _validate_avro(path: Path, document: dict[str, JSONValue]) -> None:
    # fastavro is imported here only: most runs have no .avsc file, and lint must start fast.
    import fastavro

    try:
        fastavro.parse_schema(copy.deepcopy(document))
    except Exception as exc:  # fastavro raises many exception types for malformed schemas
        raise SchemaFileError(f"{path} is not valid Avro: {exc}") from exc


def _fill_record(
    record: t.RecordType,
    schema: Mapping[str, JSONValue],
    names: dict[str, Type],
    namespace: str | None,
) -> None:
    space = schema.get("namespace", namespace)
    name = str(schema["name"])
    names[name.rsplit(".", 1)[-1]] = record
    names[name if "." in name or not space else f"{space}.{name}"] = record
    for f in schema.get("fields", []):
        record.fields[str(f["name"])] = type_from_avro(f["type"], names, space)
        if "default" in f:
            record.defaults.add(str(f["name"]))


def type_from_avro(schema: JSONValue, names: dict[str, Type], namespace: str | None) -> Type:
    """The static type of an Avro schema; ``names`` holds the named types defined so far."""
    if isinstance(schema, str):
        return _named_or_primitive(schema, names, namespace)
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        if len(branches) == 1:
            inner = type_from_avro(branches[0], names, namespace)
            return t.optional(inner) if len(branches) < len(schema) else inner
        return t.JSON
    kind = schema.get("type")
    logical = schema.get("logicalType")
    if kind == "record" or kind == "error":
        record = t.RecordType(str(schema["name"]).rsplit(".", 1)[-1])
        _fill_record(record, schema, names, namespace)
        return record
    if kind == "enum":
        return _register(schema, names, namespace, t.STRING)
    if kind == "fixed":
        return _register(schema, names, namespace, t.BYTES)
    if kind == "array":
        return t.ArrayType(type_from_avro(schema["items"], names, namespace))
    if kind == "map":
        return t.MapType(type_from_avro(schema["values"], names, namespace))
    if kind == "long" and logical in ("timestamp-millis", "timestamp-micros"):
        return t.TIMESTAMP
    if kind == "string" and logical == "json":
        return t.JSON
    return type_from_avro(kind, names, namespace)


def _register(
    schema: Mapping[str, JSONValue], names: dict[str, Type], namespace: str | None, typ: Type
) -> Type:
    name = str(schema["name"])
    space = schema.get("namespace", namespace)
    names[name.rsplit(".", 1)[-1]] = typ
    names[name if "." in name or not space else f"{space}.{name}"] = typ
    return typ


_AVRO_PRIMITIVES: Mapping[str, Type] = {
    "null": t.NULL,
    "string": t.STRING,
    "int": t.INT,
    "long": t.LONG,
    "float": t.FLOAT,
    "double": t.DOUBLE,
    "boolean": t.BOOLEAN,
    "bytes": t.BYTES,
}


def _named_or_primitive(name: str, names: dict[str, Type], namespace: str | None) -> Type:
    if name in _AVRO_PRIMITIVES:
        return _AVRO_PRIMITIVES[name]
    qualified = name if "." in name or not namespace else f"{namespace}.{name}"
    return names.get(qualified) or names.get(name) or t.JSON
