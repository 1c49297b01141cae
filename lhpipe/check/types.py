"""The static types of `.lhp` expressions and the rules that relate them.

Types mirror Avro, the language of the schemas: the primitives ``string int long float double
boolean bytes timestamp``, arrays, maps with string keys, optional types (an Avro union with
``null``) and records. Two more kinds exist only in the checker:

* :data:`JSON` (and :data:`UNKNOWN`) are *dynamic*: any field, any operator, any argument is
  accepted and gives a dynamic result. ``json`` values, schemas ``from registry`` (until fetched)
  and every expression that already had an error are dynamic; the last is what keeps one mistake
  from causing a flood of follow-up diagnostics.
* ``null``, ``duration`` and ``size`` are the types of the literals ``null``, ``5s`` and
  ``1MiB``; no schema field has them.

Rules decided here (the spec leaves them open):

* Numbers widen ``int < long < float < double``; any two numbers compare and combine.
* An optional ``T?`` may be compared with ``==``/``!=`` to a ``T``, to another ``T?`` and to
  ``null``; ordering, arithmetic, boolean logic and string interpolation need a value, so an
  optional operand there is an error whose hint suggests ``??``.
* A field of an optional record can be read: the result is optional (null propagates, the way
  ``?.`` does in other languages), so ``value.address.city`` is ``string?`` when ``address`` is
  ``Address?``.
* ``a ?? b`` is the type of ``a`` without its optional, widened to ``b``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

# ---------------------------------------------------------------------------------------------
# The types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Primitive:
    """A scalar: ``string int long float double boolean bytes timestamp`` and the literal-only
    ``null duration size``."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Dynamic:
    """A value whose shape is only known at run time (``json``, a registry schema), or the
    type of an expression that already has an error (``reason == "error"``), which is
    silently accepted everywhere."""

    reason: str = "json"

    def __str__(self) -> str:
        return "json"


@dataclass(frozen=True, slots=True)
class ArrayType:
    item: Type

    def __str__(self) -> str:
        return f"[{self.item}]"


@dataclass(frozen=True, slots=True)
class MapType:
    """A map from strings to ``values`` (Avro maps have string keys)."""

    values: Type

    def __str__(self) -> str:
        return f"map<{self.values}>"


@dataclass(frozen=True, slots=True)
class OptionalType:
    """``T?``: ``inner`` or null. Never nested, never around a dynamic type."""

    inner: Type

    def __str__(self) -> str:
        return f"{self.inner}?"


@dataclass(frozen=True, eq=False)
class RecordType:
    """A record with named fields, in declaration order.

    ``name`` is the schema name (``None`` for the type of an object literal). ``fields`` is
    filled after construction when schemas refer to each other (or to themselves), so two
    record types are the same type exactly when they are the same object. ``defaults`` names
    the fields that have a default value, which a record written by hand may leave out (the
    Avro writer fills them in).
    """

    name: str | None
    fields: dict[str, Type] = field(default_factory=dict)
    defaults: set[str] = field(default_factory=set)

    def __str__(self) -> str:
        if self.name is not None:
            return self.name
        inner = ", ".join(f"{k}: {v}" for k, v in self.fields.items())
        return "{" + inner + "}"


Type = Primitive | Dynamic | ArrayType | MapType | OptionalType | RecordType

STRING: Final = Primitive("string")
INT: Final = Primitive("int")
LONG: Final = Primitive("long")
FLOAT: Final = Primitive("float")
DOUBLE: Final = Primitive("double")
BOOLEAN: Final = Primitive("boolean")
BYTES: Final = Primitive("bytes")
TIMESTAMP: Final = Primitive("timestamp")
NULL: Final = Primitive("null")
DURATION: Final = Primitive("duration")
SIZE: Final = Primitive("size")
JSON: Final = Dynamic("json")
UNKNOWN: Final = Dynamic("error")

#: The type names a schema field may use, besides schema names.
PRIMITIVE_TYPES: Final[Mapping[str, Type]] = {
    "string": STRING,
    "int": INT,
    "long": LONG,
    "float": FLOAT,
    "double": DOUBLE,
    "boolean": BOOLEAN,
    "bytes": BYTES,
    "timestamp": TIMESTAMP,
    "json": JSON,
}

_NUMERIC_RANK: Final[Mapping[Type, int]] = {INT: 0, LONG: 1, FLOAT: 2, DOUBLE: 3}
_SCALARS: Final = frozenset({STRING, INT, LONG, FLOAT, DOUBLE, BOOLEAN, TIMESTAMP})


def optional(t: Type) -> Type:
    """``t?``, without nesting and leaving dynamic types and ``null`` as they are."""
    if isinstance(t, OptionalType | Dynamic) or t == NULL:
        return t
    return OptionalType(t)


def unwrap(t: Type) -> Type:
    """``T`` for ``T?``, else ``t``."""
    return t.inner if isinstance(t, OptionalType) else t


def is_dynamic(t: Type) -> bool:
    return isinstance(t, Dynamic)


def is_numeric(t: Type) -> bool:
    return t in _NUMERIC_RANK


def is_scalar(t: Type) -> bool:
    """A value that renders as text in ``"${...}"``: strings, numbers, booleans, timestamps
    and dynamic values."""
    return t in _SCALARS or isinstance(t, Dynamic)


def is_string_like(t: Type) -> bool:
    """``string`` or dynamic (checked at run time)."""
    return t == STRING or isinstance(t, Dynamic)


def wider_number(a: Type, b: Type) -> Type:
    """The result type of arithmetic on two numbers."""
    return a if _NUMERIC_RANK[a] >= _NUMERIC_RANK[b] else b


def same(a: Type, b: Type) -> bool:
    """Structural equality; records are the same when they are the same schema."""
    if isinstance(a, RecordType) or isinstance(b, RecordType):
        return a is b
    if isinstance(a, ArrayType) and isinstance(b, ArrayType):
        return same(a.item, b.item)
    if isinstance(a, MapType) and isinstance(b, MapType):
        return same(a.values, b.values)
    if isinstance(a, OptionalType) and isinstance(b, OptionalType):
        return same(a.inner, b.inner)
    return a == b


def comparable(a: Type, b: Type) -> bool:
    """Whether ``a == b`` makes sense: same kind of value after removing optionals (numbers
    with numbers); ``null`` with anything optional; dynamic with anything."""
    if isinstance(a, Dynamic) or isinstance(b, Dynamic):
        return True
    if a == NULL or b == NULL:
        return True
    a, b = unwrap(a), unwrap(b)
    if is_numeric(a) and is_numeric(b):
        return True
    if isinstance(a, ArrayType) and isinstance(b, ArrayType):
        return comparable(a.item, b.item) or a.item == NULL or b.item == NULL
    if isinstance(a, MapType) and isinstance(b, MapType):
        return comparable(a.values, b.values)
    if isinstance(a, RecordType) and isinstance(b, RecordType):
        if a is b:
            return True
        # An object literal compares with a record when its fields exist there and fit.
        lit, rec = (a, b) if a.name is None else (b, a)
        if lit.name is not None:
            return False
        return all(k in rec.fields and comparable(v, rec.fields[k]) for k, v in lit.fields.items())
    return same(a, b)


def orderable(a: Type, b: Type) -> bool:
    """Whether ``a < b`` makes sense: two numbers, two strings or two timestamps (no optionals)."""
    if isinstance(a, Dynamic) or isinstance(b, Dynamic):
        return True
    if is_numeric(a) and is_numeric(b):
        return True
    return a == b and a in (STRING, TIMESTAMP)


def assignable(source: Type, target: Type) -> bool:
    """Whether a value of type ``source`` fits where ``target`` is expected: numbers widen,
    ``T`` and ``null`` fit ``T?``, dynamic fits anything and anything fits dynamic, an empty
    list fits any array and an object literal fits a record whose required fields it gives."""
    if isinstance(source, Dynamic) or isinstance(target, Dynamic):
        return True
    if isinstance(target, OptionalType):
        if source == NULL:
            return True
        return assignable(unwrap(source), target.inner)
    if isinstance(source, OptionalType):
        return False
    if is_numeric(source) and is_numeric(target):
        return _NUMERIC_RANK[source] <= _NUMERIC_RANK[target]
    if isinstance(target, ArrayType) and isinstance(source, ArrayType):
        return source.item == NULL or assignable(source.item, target.item)
    if isinstance(target, MapType):
        if isinstance(source, MapType):
            return assignable(source.values, target.values)
        # An object literal is also a map when all its values fit.
        if isinstance(source, RecordType) and source.name is None:
            return all(assignable(v, target.values) for v in source.fields.values())
        return False
    if isinstance(target, RecordType) and isinstance(source, RecordType):
        if source is target:
            return True
        if source.name is not None:
            return False
        return not missing_fields(source, target) and all(
            k in target.fields and assignable(v, target.fields[k]) for k, v in source.fields.items()
        )
    return same(source, target)


def missing_fields(literal: RecordType, target: RecordType) -> list[str]:
    """Fields of ``target`` that an object literal must give but does not: those that are
    neither optional nor have a default."""
    return [
        k
        for k, v in target.fields.items()
        if k not in literal.fields
        and k not in target.defaults
        and not isinstance(v, OptionalType | Dynamic)
    ]


def common(types: list[Type]) -> Type:
    """The element type of a list literal: the widest of same-kind items, ``null`` for an
    empty list, and ``json`` when the items do not agree."""
    if not types:
        return NULL
    result = types[0]
    for t in types[1:]:
        if isinstance(result, Dynamic):
            return result
        if isinstance(t, Dynamic):
            return t
        if t == NULL:
            result = optional(result)
        elif result == NULL:
            result = optional(t)
        elif is_numeric(unwrap(t)) and is_numeric(unwrap(result)):
            wide = wider_number(unwrap(t), unwrap(result))
            either_optional = isinstance(t, OptionalType) or isinstance(result, OptionalType)
            result = optional(wide) if either_optional else wide
        elif assignable(t, result):
            continue
        elif assignable(result, t):
            result = t
        else:
            return JSON
    return result
