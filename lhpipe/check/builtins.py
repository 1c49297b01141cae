"""The built-in functions of `.lhp` expressions: their arity and how they type.

The engine evaluates them; this module is the one place that says what they accept:

========================  ==========================================================
``lower(s)`` ``upper(s)``  ``string -> string``
``trim(s)``                ``string -> string`` (whitespace at both ends removed)
``len(x)``                 ``string | bytes | [T] | map<T> -> long`` (characters, bytes,
                           items, entries)
``concat(a, b, ...)``      one or more strings ``-> string``, or one or more arrays
                           ``-> [T]``
``coalesce(a, b, ...)``    the first non-null argument; optional only if the last one is
``str(x)``                 any value ``-> string`` (records, arrays and maps as JSON text)
``int(x)``                 a number, numeric string or boolean ``-> long`` (LittleHorse INT
                           is 64-bit)
``float(x)``               a number or numeric string ``-> double``
``bool(x)``                a boolean, ``"true"``/``"false"`` or a number ``-> boolean``
``json(s)``                JSON text ``-> json`` (parsed)
``now()``                  ``-> timestamp`` (when the record is processed)
``uuid()``                 ``-> string`` (a random UUID, 36 characters)
``sha256(x)``              ``string | bytes -> string`` (lower-case hex digest of the UTF-8
                           bytes)
``env(name, default?)``    ``-> string``: an environment variable, read when the program
                           starts; only as a whole setting value (see ``expressions``)
========================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lhpipe.check import types as t
from lhpipe.check.types import Type

#: A problem with one argument: (argument index, message).
ArgProblem = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Builtin:
    """One built-in function: ``max_args`` is ``None`` for a variadic one; ``signature`` is
    how messages show it; ``result`` types a call from its argument types (arity already
    checked) and reports arguments that do not fit."""

    name: str
    min_args: int
    max_args: int | None
    signature: str
    result: Callable[[Sequence[Type]], tuple[Type, list[ArgProblem]]]


def _unary(
    accepts: Callable[[Type], bool], what: str, result: Type
) -> Callable[[Sequence[Type]], tuple[Type, list[ArgProblem]]]:
    def typer(args: Sequence[Type]) -> tuple[Type, list[ArgProblem]]:
        if accepts(args[0]):
            return result, []
        return result, [(0, f"expected {what}, found {args[0]}")]

    return typer


def _is_string(a: Type) -> bool:
    return t.is_string_like(a)


def _has_length(a: Type) -> bool:
    return a in (t.STRING, t.BYTES) or isinstance(a, t.ArrayType | t.MapType | t.Dynamic)


def _converts_to_number(a: Type) -> bool:
    return t.is_numeric(a) or a in (t.STRING, t.BOOLEAN) or t.is_dynamic(a)


def _converts_to_bool(a: Type) -> bool:
    return a in (t.BOOLEAN, t.STRING) or t.is_numeric(a) or t.is_dynamic(a)


def _any(args: Sequence[Type]) -> tuple[Type, list[ArgProblem]]:
    return t.STRING, []


def _concat(args: Sequence[Type]) -> tuple[Type, list[ArgProblem]]:
    concrete = [a for a in args if not t.is_dynamic(a)]
    if not concrete:
        return t.JSON, []
    if all(isinstance(a, t.ArrayType) for a in concrete):
        items = [a.item for a in concrete if isinstance(a, t.ArrayType)]
        return t.ArrayType(t.common(items)), []
    problems = [
        (i, f"expected a string, found {a}") for i, a in enumerate(args) if not t.is_string_like(a)
    ]
    return t.STRING, problems


def _coalesce(args: Sequence[Type]) -> tuple[Type, list[ArgProblem]]:
    inner = t.common([t.unwrap(a) for a in args if a != t.NULL])
    if inner == t.NULL:
        return t.NULL, []
    last = args[-1]
    if isinstance(last, t.OptionalType) or last == t.NULL:
        return t.optional(inner), []
    return inner, []


def _fixed(result: Type) -> Callable[[Sequence[Type]], tuple[Type, list[ArgProblem]]]:
    def typer(args: Sequence[Type]) -> tuple[Type, list[ArgProblem]]:
        return result, []

    return typer


def _env(args: Sequence[Type]) -> tuple[Type, list[ArgProblem]]:
    problems = [(i, f"expected a string, found {a}") for i, a in enumerate(args) if a != t.STRING]
    return t.STRING, problems


_SIGNATURES = (
    Builtin("lower", 1, 1, "lower(string)", _unary(_is_string, "a string", t.STRING)),
    Builtin("upper", 1, 1, "upper(string)", _unary(_is_string, "a string", t.STRING)),
    Builtin("trim", 1, 1, "trim(string)", _unary(_is_string, "a string", t.STRING)),
    Builtin(
        "len",
        1,
        1,
        "len(string | bytes | array | map)",
        _unary(_has_length, "a string, bytes, an array or a map", t.LONG),
    ),
    Builtin("concat", 1, None, "concat(string, ...) or concat(array, ...)", _concat),
    Builtin("coalesce", 1, None, "coalesce(value, ...)", _coalesce),
    Builtin("str", 1, 1, "str(value)", _any),
    Builtin(
        "int",
        1,
        1,
        "int(number | string | boolean)",
        _unary(_converts_to_number, "a number, a string or a boolean", t.LONG),
    ),
    Builtin(
        "float",
        1,
        1,
        "float(number | string)",
        _unary(_converts_to_number, "a number or a string", t.DOUBLE),
    ),
    Builtin(
        "bool",
        1,
        1,
        "bool(boolean | string | number)",
        _unary(_converts_to_bool, "a boolean, a string or a number", t.BOOLEAN),
    ),
    Builtin("json", 1, 1, "json(string)", _unary(_is_string, "JSON text (a string)", t.JSON)),
    Builtin("now", 0, 0, "now()", _fixed(t.TIMESTAMP)),
    Builtin("uuid", 0, 0, "uuid()", _fixed(t.STRING)),
    Builtin(
        "sha256",
        1,
        1,
        "sha256(string | bytes)",
        _unary(lambda a: a == t.BYTES or t.is_string_like(a), "a string or bytes", t.STRING),
    ),
    Builtin("env", 1, 2, 'env("NAME") or env("NAME", "default")', _env),
)

#: Every built-in function by name.
BUILTINS: dict[str, Builtin] = {b.name: b for b in _SIGNATURES}
