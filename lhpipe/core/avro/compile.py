"""Compiling a parsed Avro schema into functions, once per schema: the walk over the schema that
the value checks and the writer share, and the checks the two value checks share.

Three things are compiled from a schema: the check of a webhook's JSON body
(:mod:`lhpipe.gateway.validate`: JSON only, every problem named), the check of a
``to topic`` value (:mod:`lhpipe.core.avro.encode`: the engine's values, datetimes and bytes
too, the first misfit named) and the binary writer (:mod:`lhpipe.core.avro.writer`). Each is
a :class:`SchemaWalker` that says what to make of each kind of type; the walk (named types,
logical types first, a recursive record found by its name) is here once. The checks differ in
what they accept where JSON and the engine's values differ (bytes, timestamps, ``json``,
``date``) and in their words (a JSON "object" is a pipeline "map"), so those stay in each
module; what is the same (numbers, booleans, null, text, enums) is made here from each
module's ``describe``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, NoReturn, TypeVar

T = TypeVar("T")

#: A compiled check: the value as the caller keeps it, or :class:`Misfit`.
Check = Callable[[Any], Any]
#: How a check shows a value in a message.
Describe = Callable[[Any], str]
#: A step of a path into a value: a field or map key, or a list index.
Segment = str | int

INT_RANGE: Final = (-(2**31), 2**31 - 1)
LONG_RANGE: Final = (-(2**63), 2**63 - 1)
#: The largest magnitude of a 32-bit ``float``.
FLOAT_MAX: Final = 3.4028234663852886e38
PRIMITIVE_TYPES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)


class Misfit(Exception):
    """Problems found under one value: (path from that value, message) pairs. Raised only on
    the failure path, so a value that fits pays for no paths."""

    def __init__(self, found: list[tuple[list[Segment], str]]) -> None:
        super().__init__()
        self.found = found

    def under(self, segment: Segment) -> list[tuple[list[Segment], str]]:
        """The same problems, seen from the parent that holds this value at ``segment``."""
        for path, _ in self.found:
            path.insert(0, segment)
        return self.found


def fail(message: str) -> NoReturn:
    """One problem, at the value being checked."""
    raise Misfit([([], message)])


class SchemaWalker(Generic[T]):
    """Compiles a schema parsed by fastavro into a ``T`` for each of its types; subclasses say
    what each kind of type becomes. A record registers what it becomes in :attr:`done` before
    its fields are compiled, so a recursive reference finds it."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.done: dict[str, T] = {}

    def node(self, schema: Any) -> T:
        if isinstance(schema, str):
            if schema in PRIMITIVE_TYPES:
                return self.primitive(schema)
            found = self.done.get(schema)
            return found if found is not None else self.node(self.named[schema])
        if isinstance(schema, list):
            return self.union(schema)
        kind = schema["type"]
        logical = schema.get("logicalType")
        if isinstance(logical, str):
            special = self.logical(kind, logical, schema)
            if special is not None:
                return special
        if kind in ("record", "error"):
            return self.record(schema)
        if kind == "enum":
            return self.enum(schema)
        if kind == "fixed":
            return self.fixed(int(schema["size"]))
        if kind == "array":
            return self.array(self.node(schema["items"]))
        if kind == "map":
            return self.map(self.node(schema["values"]))
        return self.node(kind)

    def primitive(self, name: str) -> T:
        raise NotImplementedError

    def logical(self, kind: Any, logical: str, schema: Mapping[str, Any]) -> T | None:
        """A logical type handled apart from its underlying type, or ``None``."""
        return None

    def record(self, schema: Mapping[str, Any]) -> T:
        raise NotImplementedError

    def union(self, branches: list[Any]) -> T:
        raise NotImplementedError

    def enum(self, schema: Mapping[str, Any]) -> T:
        raise NotImplementedError

    def fixed(self, size: int) -> T:
        raise NotImplementedError

    def array(self, items: T) -> T:
        raise NotImplementedError

    def map(self, values: T) -> T:
        raise NotImplementedError


class CheckWalker(SchemaWalker[Check]):
    """A :class:`SchemaWalker` that compiles checks: unions, enums and fixed are checked the
    same way by both value checks, in their own words (``describe``; ``fixed_what`` follows
    "expected N bytes" in a message)."""

    def __init__(self, named: Mapping[str, Any], describe: Describe, fixed_what: str) -> None:
        super().__init__(named)
        self.describe = describe
        self.fixed_what = fixed_what

    def union(self, branches: list[Any]) -> Check:
        others = [b for b in branches if b != "null"]
        if len(others) == 1 and len(branches) == 2:
            return or_null(self.node(others[0]))
        checks = [self.node(b) for b in branches]
        names = ", ".join(branch_name(b) for b in branches)
        describe = self.describe

        def first_match(value: Any) -> Any:
            for check in checks:
                try:
                    return check(value)
                except Misfit:
                    continue
            fail(f"expected one of {names}, got {describe(value)}")

        return first_match

    def enum(self, schema: Mapping[str, Any]) -> Check:
        return enum_check(tuple(schema["symbols"]), self.describe)

    def fixed(self, size: int) -> Check:
        as_bytes = self.primitive("bytes")
        what = f"expected {size} bytes{self.fixed_what}"

        def check(value: Any) -> Any:
            data = as_bytes(value)
            if len(data) != size:
                fail(f"{what}, got {len(data)} bytes")
            return data

        return check


def named_types(parsed: Any) -> Mapping[str, Any]:
    """The named types fastavro found while parsing ``parsed``."""
    return parsed.get("__named_schemas", {}) if isinstance(parsed, dict) else {}


def branch_name(schema: Any) -> str:
    """A union branch as a message names it."""
    if isinstance(schema, str):
        return schema.rsplit(".", 1)[-1]
    if isinstance(schema, dict):
        return str(schema.get("logicalType") or schema.get("name") or schema.get("type"))
    return "a union"


def or_null(inner: Check) -> Check:
    """The check of a union of null and one other type."""
    return lambda value: None if value is None else inner(value)


# -- the checks both value checks share ---------------------------------------------------------


def integer_check(what: str, low: int, high: int, describe: Describe) -> Check:
    """An ``int`` (not a ``bool``, not ``1.0``) within ``low`` and ``high``."""

    def check(value: Any) -> Any:
        if type(value) is not int:
            fail(f"expected {what}, got {describe(value)}")
        if not low <= value <= high:
            fail(f"expected {what} between {low} and {high}, got {value}")
        return value

    return check


def number_check(what: str, limit: float | None, describe: Describe) -> Check:
    """An ``int`` or ``float`` (as a ``float``), within ±``limit`` when there is one."""

    def check(value: Any) -> Any:
        kind = type(value)
        if kind is not float and kind is not int:
            fail(f"expected {what}, got {describe(value)}")
        if limit is not None and abs(value) > limit:
            fail(f"expected {what} within ±{limit:.4g}, got {value}")
        return float(value)

    return check


def simple_checks(describe: Describe, text: str) -> dict[str, Check]:
    """The checks of the primitive types but ``bytes``; ``text`` names a string in messages."""

    def string(value: Any) -> Any:
        if type(value) is not str:
            fail(f"expected {text}, got {describe(value)}")
        return value

    def boolean(value: Any) -> Any:
        if value is not True and value is not False:
            fail(f"expected true or false, got {describe(value)}")
        return value

    def null(value: Any) -> Any:
        if value is not None:
            fail(f"expected null, got {describe(value)}")
        return None

    return {
        "null": null,
        "boolean": boolean,
        "int": integer_check("an int", *INT_RANGE, describe),
        "long": integer_check("a long", *LONG_RANGE, describe),
        "float": number_check("a number (float)", FLOAT_MAX, describe),
        "double": number_check("a number", None, describe),
        "string": string,
    }


def enum_check(symbols: tuple[str, ...], describe: Describe) -> Check:
    """One of ``symbols``."""
    allowed = frozenset(symbols)
    listed = ", ".join(symbols)

    def check(value: Any) -> Any:
        if type(value) is not str or value not in allowed:
            fail(f"expected one of {listed}, got {describe(value)}")
        return value

    return check
