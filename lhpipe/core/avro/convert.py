"""Schema-directed conversion between fastavro's values and the engine's plain values.

fastavro already gives what the evaluator wants for almost everything (records as dicts,
``timestamp-millis`` as UTC-aware datetimes, bytes as bytes). Two logical types need a hand:

* ``{"type": "string", "logicalType": "json"}`` is how an inline ``json`` field is written
  (lhpipe.check.schemas): Avro sees a string, lhpipe sees the parsed JSON value. Reading parses
  it, writing serialises it.
* ``uuid`` strings come out of fastavro as :class:`uuid.UUID`; the checker types them
  ``string``, so reading turns them back into text.

A converter is compiled once per schema and is ``None`` when the schema has nothing to convert,
so most records pay nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Convert = Callable[[Any], Any]
#: What to do with a logical type (``"json"``, ``"uuid"``...): a converter, or ``None``.
LeafRule = Callable[[str], Convert | None]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def converter(schema: Any, leaf: LeafRule) -> Convert | None:
    """A function applying ``leaf``'s conversions wherever ``schema`` (parsed by fastavro)
    has a logical type it names; ``None`` when there is none."""
    named: Mapping[str, Any] = {}
    if isinstance(schema, dict):
        named = schema.get("__named_schemas", {})
    return _Builder(named, leaf).build(schema)


class _Builder:
    def __init__(self, named: Mapping[str, Any], leaf: LeafRule) -> None:
        self.named = named
        self.leaf = leaf
        # Named types by full name: their converter, or the marker while being built (a
        # recursive type refers to itself through a lookup at call time).
        self.done: dict[str, Convert | object | None] = {}

    def build(self, schema: Any) -> Convert | None:
        if isinstance(schema, str):
            return self._named(schema)
        if isinstance(schema, list):
            return self._union(schema)
        if not isinstance(schema, dict):
            return None
        kind = schema.get("type")
        logical = schema.get("logicalType")
        if isinstance(logical, str):
            rule = self.leaf(logical)
            if rule is not None:
                return rule
        if kind == "record" or kind == "error":
            return self._record(schema)
        if kind == "array":
            return _each(self.build(schema.get("items")))
        if kind == "map":
            return _each_value(self.build(schema.get("values")))
        if isinstance(kind, dict | list):
            return self.build(kind)
        return None

    def _named(self, name: str) -> Convert | None:
        if name in _PRIMITIVES:
            return None
        if name in self.done:
            found = self.done[name]
            if found is _BUILDING:
                return self._later(name)
            return found  # type: ignore[return-value]
        definition = self.named.get(name)
        return None if definition is None else self.build(definition)

    def _later(self, name: str) -> Convert:
        def deferred(value: Any) -> Any:
            found = self.done[name]
            return found(value) if callable(found) else value

        return deferred

    def _record(self, schema: Mapping[str, Any]) -> Convert | None:
        name = str(schema.get("name", ""))
        self.done[name] = _BUILDING
        fields = [
            (str(f["name"]), conv)
            for f in schema.get("fields", [])
            if (conv := self.build(f.get("type"))) is not None
        ]
        result = _fields(fields) if fields else None
        self.done[name] = result
        return result

    def _union(self, branches: list[Any]) -> Convert | None:
        converters = [self.build(b) for b in branches if b != "null"]
        if len(converters) == 1 and converters[0] is not None:
            inner = converters[0]
            return lambda value: None if value is None else inner(value)
        # Several branches: lhpipe types the value `json`; it is passed on as fastavro reads it.
        return None


_BUILDING = object()


def _each(inner: Convert | None) -> Convert | None:
    if inner is None:
        return None
    return lambda items: [inner(item) for item in items]


def _each_value(inner: Convert | None) -> Convert | None:
    if inner is None:
        return None
    return lambda entries: {k: inner(v) for k, v in entries.items()}


def _fields(fields: list[tuple[str, Convert]]) -> Convert:
    def convert(record: Any) -> Any:
        if not isinstance(record, dict):
            return record
        converted = dict(record)
        for name, conv in fields:
            if name in converted:
                converted[name] = conv(converted[name])
        return converted

    return convert
